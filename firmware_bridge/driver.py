"""The host's end of the link: requests to a board over any pyserial URL, resent until answered.

One request in flight, its reply matched by sequence number (training samples go through a window of
several: train_window); a request is resent when its reply does not come in time, the board answers NAK (it
received a damaged frame) or a damaged frame comes back (the reply was hit). Every request is idempotent on
the board, so resending is always safe. The link
adapts to the line (LineEstimate): the chunks of a model load, a sample and a pull are sized to the byte
error rate it observes, and the wait for a reply to the round trips it measures. When the port breaks (a
board reset, a cable pulled, a virtual board killed) or a request stays unanswered, the link reopens the
port (for up to `reconnect_s`), says HELLO again and raises LinkReset: the operation in progress goes on
from what the board reports (BoardInfo), which is how nothing is lost or applied twice. Reconnections that
follow one another with no request answered in between are bounded (LinkDead).
"""
import io
import select
import struct
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import serial

from edgeff.errors import EdgeFFError
from firmware_bridge import messages as m
from firmware_bridge.framing import Frame, FrameDecoder, crc32, encode_frame, max_encoded_size

HOST_REPLY_LIMIT = 65535          # the largest reply payload the host accepts
MAX_STAGINGS = 20                 # stagings of one record found incomplete before the firmware is blamed

# EdgeFF's own URL schemes (faults://) are found beside pyserial's, for every port a BoardLink opens or reopens
if "firmware_bridge.serial_handlers" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("firmware_bridge.serial_handlers")


class LinkReset(Exception):
    """The link was lost and reopened; the board may have rebooted. Go on from what self.info reports."""


class LinkDead(EdgeFFError):
    """The link was reopened again and again without one request getting through."""


class BoardError(EdgeFFError):
    """The board answered a request with ERROR."""

    def __init__(self, code: int, detail: int, message: str):
        name = m.ErrorCode(code).name if code in m.ErrorCode._value2member_map_ else f"code {code}"
        super().__init__(f"the board refused the request ({name}): {message}")
        self.code, self.detail, self.reason = code, detail, message
        self.sample = None                # the sample index, when the refused request was a sample's


@dataclass(frozen=True)
class BoardInfo:
    version: int
    board_versions: tuple
    max_payload: int
    sram_budget: int
    flash_budget: int
    sram_free: int
    model_format: int
    model_loaded: bool
    configured: bool
    run_id: int
    applied: int
    checkpoint_applied: int
    image_bytes: int
    image_crc: int
    name: str
    firmware: str

    @classmethod
    def parse(cls, payload: bytes) -> "BoardInfo":
        (version, low, high, max_payload, sram, flash, free, fmt, flags, run_id, applied, ckpt, image_bytes,
         image_crc, name, firmware) = m.INFO.unpack(payload)
        if not max(low, m.MIN_VERSION) <= version <= min(high, m.PROTOCOL_VERSION):
            raise ValueError(f"protocol version {version} chosen; the board speaks {low}..{high} and the host "
                             f"offered {m.MIN_VERSION}..{m.PROTOCOL_VERSION}")
        return cls(version, (low, high), max_payload, sram, flash, free, fmt, bool(flags & 1), bool(flags & 2),
                   run_id, applied, ckpt, image_bytes, image_crc, m.text_field(name), m.text_field(firmware))


class LineEstimate:
    """What the host has seen of the line, and what it makes of it.

    Each attempt of an exchange exposed some bytes to the line (the request and the reply it expects) and
    either came back whole or not. The byte error rate is the maximum-likelihood fit of the recent attempts
    (a frame of n bytes gets through with probability (1 - e)^n); the chunk size is the one that moves the
    most data per second at that rate, counting each attempt's fixed cost (frame overhead, the reply, the
    board's turnaround); the wait for a reply is the measured round trip of the request type plus four
    deviations (Jacobson/Karels, sampled from first attempts only, as Karn's rule says)."""

    WINDOW = 96
    RATES = np.geomspace(1e-6, 0.5, 96)
    LOG_KEEP = np.log1p(-RATES)       # log (1 - e) per candidate rate e
    MIN_CHUNK = 16
    MIN_WAIT_S = 0.01

    def __init__(self, byte_s: float, first_wait_s: float):
        self.byte_s, self.first_wait_s = byte_s, first_wait_s
        # The likelihood is kept per attempt (a ring of WINDOW rows, one column per candidate rate): the fit
        # runs for every chunk a damaged line sends, so an attempt adds one row and the fit is one sum.
        self.log_likelihood = np.zeros((self.WINDOW, len(self.RATES)))
        self.outcomes = deque(maxlen=self.WINDOW)     # came back whole, per recent attempt
        self.failures = 0                               # among self.outcomes
        self.next_row = 0
        self.rate_cache = None
        self.round_trips = {}                           # request type -> [smoothed turnaround, deviation]
        self.size_grid = {}                             # chunk limit -> the chunk sizes chunk_size weighs

    def record(self, exposed: int, ok: bool):
        if len(self.outcomes) == self.WINDOW:
            self.failures -= not self.outcomes[0]
        self.outcomes.append(ok)
        self.failures += not ok
        log_keep = self.LOG_KEEP * exposed                                   # log (1 - e)^n
        self.log_likelihood[self.next_row] = log_keep if ok else np.log(-np.expm1(log_keep))
        self.next_row = (self.next_row + 1) % self.WINDOW
        self.rate_cache = None

    def error_rate(self) -> float:
        if self.rate_cache is None:
            fit = self.log_likelihood.sum(axis=0) if self.failures else None
            self.rate_cache = float(self.RATES[0] if fit is None else self.RATES[np.argmax(fit)])
        return self.rate_cache

    def chunk_size(self, limit: int, fixed_bytes: int, pipelined: bool = False) -> int:
        """The chunk (up to limit) that moves the most bytes per second: each attempt carries fixed_bytes
        besides the chunk and, one request at a time, costs the board's turnaround too (pipelined, the
        next frames go out while the board works, so it costs none)."""
        if limit <= self.MIN_CHUNK:
            return limit
        if limit not in self.size_grid:
            self.size_grid[limit] = np.unique(np.geomspace(self.MIN_CHUNK, limit, 48).astype(int))
        sizes = self.size_grid[limit]
        exposed = sizes + fixed_bytes
        turnaround = 0.0 if pipelined else min((t for t, _ in self.round_trips.values()), default=0.0)
        rate = sizes * np.exp(np.log1p(-self.error_rate()) * exposed) / (turnaround + self.byte_s * exposed)
        return int(sizes[np.argmax(rate)])

    def wait_s(self, request_type: int, exposed: int) -> float:
        """How long to wait for the reply to an attempt that puts `exposed` bytes on the line."""
        wire = self.byte_s * exposed
        if request_type not in self.round_trips:
            return self.first_wait_s + wire
        turnaround, deviation = self.round_trips[request_type]
        return max(self.MIN_WAIT_S, turnaround + 4 * deviation) + wire

    def round_trip(self, request_type: int, seconds: float, exposed: int):
        sample = max(0.0, seconds - self.byte_s * exposed)
        if request_type not in self.round_trips:
            self.round_trips[request_type] = [sample, sample / 2]
            return
        entry = self.round_trips[request_type]
        entry[1] += (abs(sample - entry[0]) - entry[1]) / 4
        entry[0] += (sample - entry[0]) / 8


class BoardLink:
    FIRST_CONNECT_S = 5.0     # a first connection fails fast; a lost one is retried for reconnect_s
    MAX_STALLS = 5            # reconnections in a row with no request answered between them

    def __init__(self, url: str, timeout=0.5, retries=20, reconnect_s=30.0, baud=115200, max_payload=None):
        if timeout <= 0 or retries < 1 or reconnect_s < 0:
            raise EdgeFFError("timeout must be positive, retries at least 1 and reconnect time not negative")
        self.url, self.timeout, self.retries, self.reconnect_s, self.baud = url, timeout, retries, reconnect_s, baud
        self.payload_limit = max_payload
        self.max_payload = 256            # until HELLO tells the board's
        self.seq = 0
        self.line = LineEstimate(10 / baud, timeout)
        self.stats = {"requests": 0, "resent": 0, "naks": 0, "bad_frames": 0, "timeouts": 0, "echoes": 0,
                      "reconnects": 0, "most_in_flight": 1}
        self.answered = True              # a request other than HELLO answered since the last reconnection
        self.stalls = 0
        self.port = None
        self._open(min(reconnect_s, self.FIRST_CONNECT_S))

    # ------------------------------------------------------------------ port
    def _open(self, patience_s: float):
        """Open the port and say HELLO, retrying for patience_s (a board may be rebooting)."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                self.port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0)
                self.unsent = bytearray()
                self.decoder = FrameDecoder(HOST_REPLY_LIMIT)
                self.info = self._hello()
                return
            except ValueError as exc:
                raise EdgeFFError(f"--port {self.url!r} is not a serial port or pyserial URL: {exc}") from None
            except (serial.SerialException, OSError) as exc:    # ConnectionError is an OSError
                self.close()
                if time.monotonic() > deadline:
                    if self.stats["echoes"]:
                        raise EdgeFFError(f"at {self.url} the host's own frames come back and no board answers: "
                                          "the port is a loopback (loop://) or a line that echoes; connect a "
                                          "board, or use --port virtual://") from None
                    raise EdgeFFError(f"no board answers at {self.url}: {exc}; is it connected (or `edgeff board "
                                      "virtual` running)?") from None
                time.sleep(0.1)

    def close(self):
        if self.port is not None:
            self.port.close()
            self.port = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _hello(self) -> BoardInfo:
        reply = self._checked(m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION), m.Reply.INFO)
        info = self._parse(BoardInfo.parse, reply, "INFO")
        if not set(m.formats_in(info.model_format)) & set(m.MODEL_FORMAT_NAMES):
            raise EdgeFFError(f"the board takes {formats_text(info.model_format)}; this EdgeFF writes formats "
                              f"{' and '.join(map(str, m.MODEL_FORMAT_NAMES))}: update the firmware or EdgeFF")
        self.max_payload = min(info.max_payload, self.payload_limit or info.max_payload)
        if self.max_payload < m.DATA.size + 1 or self.max_payload < m.OFFSET.size + 1:
            raise EdgeFFError(f"frames of {self.max_payload} payload bytes are too small for the protocol")
        return info

    def _write(self, data: bytes):
        """Queue bytes for the board; they leave with _flush: a single request's at once, a window's
        together when the window has been filled and the host waits for replies (_read_some), so that they
        cost one write (a system call, and a wake-up of the board's reader) instead of one each."""
        self.unsent += data

    def _flush(self):
        if self.unsent:
            try:
                self.port.write(bytes(self.unsent))
            except (serial.SerialException, OSError) as exc:
                raise ConnectionError(str(exc)) from None
            finally:
                self.unsent.clear()

    def _read_some(self, wait_s: float) -> bytes:
        self._flush()
        try:
            fileno = self.port.fileno()
        # ports without a file descriptor (loop://, spy:// wrappers, rfc2217://) are polled instead
        except (AttributeError, NotImplementedError, io.UnsupportedOperation, serial.SerialException):
            fileno = None
        try:
            if fileno is None:
                data = self.port.read(HOST_REPLY_LIMIT)
                if not data:
                    time.sleep(min(wait_s, 0.001))
                return data
            ready, _, _ = select.select([fileno], [], [], max(wait_s, 0.0))
            if not ready:
                return b""
            return self.port.read(HOST_REPLY_LIMIT)   # pyserial raises if the port closed under us
        except (serial.SerialException, OSError) as exc:
            raise ConnectionError(str(exc)) from None

    # ------------------------------------------------------------------ requests
    def _exchange(self, request_type: int, payload, reply_fields: int) -> Frame:
        """One request, resent until its reply arrives. `payload`: its bytes, or a function giving (bytes,
        reply data bytes) anew for each attempt, so that a chunk shrinks as soon as the line turns out worse
        (any attempt is a valid request at the same offset, and requests are idempotent). ConnectionError
        when the port breaks, the board stays silent for `retries` attempts in a row, or after `retries` x 10
        attempts."""
        self.seq = (self.seq + 1) % m.NAK_SEQ       # a NAK's sequence number is never a request's
        self.stats["requests"] += 1
        silent = backoff = 0
        for attempt in range(self.retries * 10):
            if attempt:
                self.stats["resent"] += 1
            body, reply_data = payload() if callable(payload) else (payload, 0)
            frame = encode_frame(request_type, self.seq, body)
            exposed = len(frame) + max_encoded_size(reply_fields + reply_data)
            self._write(frame)
            self._flush()                 # one request at a time: on the wire before its wait starts
            sent = time.monotonic()
            wait = self.line.wait_s(request_type, exposed)
            deadline = sent + min(wait * 2 ** backoff, max(wait, self.timeout))
            heard = False
            while (left := deadline - time.monotonic()) > 0:
                reply, heard_now = self._next_reply(left)
                heard |= heard_now
                if reply == "damaged":
                    break
                if reply is not None:
                    self.line.record(exposed, True)
                    if not attempt:
                        self.line.round_trip(request_type, time.monotonic() - sent, exposed)
                    if request_type != m.Request.HELLO:
                        self.answered = True
                    return reply
            self.line.record(exposed, False)
            if heard:
                silent = 0
            else:                                    # nothing at all came back: wait longer next time
                self.stats["timeouts"] += 1
                silent += 1
                backoff += 1
                if silent == self.retries:
                    break
        raise ConnectionError(f"no answer to {m.Request(request_type).name} after {attempt + 1} tries")

    def _next_reply(self, wait_s: float):
        """(the reply to the request in flight, "damaged" or None; whether the board sent anything) within
        wait_s. A NAK or a damaged frame means this attempt is lost: resend at once rather than wait."""
        found, heard = None, False
        for item in self.decoder.feed(self._read_some(wait_s)):
            if isinstance(item, Frame) and item.type < m.Reply.OK:   # a request: the line echoes the host's own
                self.stats["echoes"] += 1
                continue
            heard = True
            if not isinstance(item, Frame):
                self.stats["bad_frames"] += 1
                found = found or "damaged"
            elif item.type == m.Reply.NAK:
                self.stats["naks"] += 1
                found = found or "damaged"
            elif item.seq == self.seq:
                return item, heard
        return found, heard

    def _checked(self, request_type: int, payload, expect: int) -> bytes:
        """The reply payload of the expected type, its length checked against the reply's layout."""
        reply = self._exchange(request_type, payload, m.REPLY_LAYOUTS[expect][0].size)
        if reply.type == m.Reply.ERROR:
            code, detail = self._parse(m.ERROR.unpack_from, reply.payload, "ERROR")
            raise BoardError(code, detail, reply.payload[m.ERROR.size:].decode("utf-8", "replace"))
        if reply.type != expect:
            raise EdgeFFError(f"the board answered {m.Request(request_type).name} with reply type "
                              f"{reply.type:#04x}, expected {m.Reply(expect).name}: a firmware bug")
        layout, more = m.REPLY_LAYOUTS[expect]
        if len(reply.payload) < layout.size or (not more and len(reply.payload) > layout.size):
            raise EdgeFFError(f"the board sent a malformed {m.Reply(expect).name} reply ({len(reply.payload)} "
                              f"bytes, expected {layout.size}{' or more' if more else ''}): a firmware bug")
        return reply.payload

    @staticmethod
    def _parse(unpack, payload: bytes, what: str):
        try:
            return unpack(payload)
        except (struct.error, ValueError) as exc:   # too short, or a value outside its range: garbage
            why = f": {exc}" if isinstance(exc, ValueError) else ""
            raise EdgeFFError(f"the board sent a malformed {what} reply ({len(payload)} bytes){why}") from None

    def request(self, request_type: int, payload, expect: int) -> bytes:
        """The reply payload of a request (payload: as _exchange takes it); BoardError if refused; LinkReset
        after the link was lost and reopened (the caller goes on from self.info)."""
        try:
            return self._checked(request_type, payload, expect)
        except ConnectionError:
            self._reconnect()

    def _reconnect(self):
        self.stats["reconnects"] += 1
        self.stalls = 0 if self.answered else self.stalls + 1
        if self.stalls >= self.MAX_STALLS:
            raise LinkDead(f"the line to {self.url} is too damaged to carry a request: {self.stalls} reconnections "
                           f"in a row with none answered (about {self.line.error_rate():.1%} of bytes arrive "
                           f"damaged; {self.stats['naks']} NAKs, {self.stats['bad_frames']} damaged and "
                           f"{self.stats['timeouts']} missing replies in {self.stats['requests']} requests); check "
                           "the cable, the baud rate and the board's power")
        self.answered = False
        self.close()
        self._open(self.reconnect_s)
        raise LinkReset()

    # ------------------------------------------------------------------ operations
    def hello(self) -> BoardInfo:
        """Ask the board again what it is and holds (also refreshes self.info)."""
        try:
            self.info = self._hello()
        except ConnectionError:
            self._reconnect()
        return self.info

    def value(self, request_type: int, payload=b"") -> int:
        """A request answered with OK(value)."""
        return m.OK.unpack(self.request(request_type, payload, m.Reply.OK))[0]

    def chunk_size(self, fields: int, pipelined: bool = False) -> int:
        """Data bytes for the next chunk of a load, a sample or a pull, whose frames carry `fields` bytes of
        fixed fields besides them (the reply's are about as many: OK for a chunk, DATA's header for READ).
        Pipelined chunks (the training window's) do not wait for the board's turnaround one by one."""
        return self.line.chunk_size(self.max_payload - fields, 2 * max_encoded_size(fields), pipelined)

    def check_format(self, image: bytes):
        """Refuse, before anything is sent, an image of a format the board's INFO does not list."""
        fmt = image[4]
        if not self.info.model_format & m.format_bit(fmt):
            raise EdgeFFError(f"the board ({self.info.name}) takes {formats_text(self.info.model_format)}; this is a "
                              f"format-{fmt} ({m.MODEL_FORMAT_NAMES.get(fmt, 'unknown')}) model: update the firmware")

    def load_image(self, image: bytes, progress=None):
        """Send a board image in chunks; the board checks it (CRC, format, memory) and keeps it. After a
        lost link the load goes on from the bytes the board holds (LOAD_BEGIN says how many). An image of a
        format the board does not take is refused first (check_format): the board keeps what it holds."""
        self.check_format(image)
        while True:
            try:
                received = self.value(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)))
                while received < len(image):
                    received = self._send_chunk(image, received)
                    if progress:
                        progress(received, len(image))
                self.value(m.Request.LOAD_END)
                return
            except LinkReset:
                continue

    def _send_chunk(self, data: bytes, offset: int) -> int:
        """One LOAD_CHUNK of data at offset, sized to the line at each attempt; returns the bytes the board
        now holds, which is where the next chunk goes. A chunk beyond them is refused with their count: go on
        from there."""
        def attempt():
            return m.OFFSET.pack(offset) + data[offset:offset + self.chunk_size(m.OFFSET.size)], 0
        try:
            held = self.value(m.Request.LOAD_CHUNK, attempt)
        except BoardError as exc:
            if exc.code != m.ErrorCode.BAD_RANGE or exc.detail >= offset:
                raise
            return exc.detail
        if not offset < held <= len(data):
            raise EdgeFFError(f"the board answered LOAD_CHUNK at {offset} with {held} bytes held of {len(data)}: "
                              "a firmware bug")
        return held

    def stage(self, index: int, record: bytes) -> tuple[int, int]:
        """Put `record` in the board's staging slot of sample `index`, one request at a time, each chunk from
        the first byte the board says it lacks; returns (the record's CRC for TRAIN or INFER, the board's
        applied count: above index, the sample was applied already and nothing was staged)."""
        missing = 0
        while True:
            def attempt(at=missing):
                return m.STAGE.pack(index, at) + record[at:at + self.chunk_size(m.STAGE.size)], 0
            reply = self.request(m.Request.STAGE, attempt, m.Reply.STAGED)
            applied, held, missing = self._parse(lambda r: _staged(r, len(record)), reply, "STAGED")
            if applied > index or held == len(record):
                return crc32(record), applied

    def _on_staged(self, index: int, record: bytes, request_type: int, expect: int, follow: bool) -> bytes:
        """Stage `record` as sample `index`, then the request (index, crc) on it (TRAIN or INFER). The board
        finds the record incomplete or another (BAD_SAMPLE) when its slot was refilled in between (another
        record staged as the same index, as INFER's is): it is staged again. follow: the index may be any
        the board stages (INFER's), so it follows the board's applied count."""
        for _ in range(MAX_STAGINGS):
            try:
                crc, applied = self.stage(index, record)
                if follow and applied > index:
                    index = applied
                    continue
                layout = m.TRAIN if request_type == m.Request.TRAIN else m.INFER
                return self.request(request_type, layout.pack(index, crc), expect)
            except BoardError as exc:
                if follow and exc.code == m.ErrorCode.SEQUENCE:
                    index = exc.detail
                elif exc.code != m.ErrorCode.BAD_SAMPLE:
                    raise
        raise EdgeFFError(f"the board found a record staged incompletely {MAX_STAGINGS} times in a row, though "
                          "every frame arrived whole: a firmware bug")

    def train(self, index: int, record: bytes) -> tuple[int, int, int]:
        """Stage `record` and TRAIN it as sample `index`: (samples applied, goodness correct, duplicate),
        one request at a time."""
        try:
            reply = self._on_staged(index, record, m.Request.TRAIN, m.Reply.TRAINED, follow=False)
        except BoardError as exc:
            exc.sample = index
            raise
        return self._parse(_trained, reply, "TRAINED")

    def train_window(self, start: int, stop: int, record_of):
        """Train samples start..stop-1 (`record_of(p)`: the record of sample p) with several requests in
        flight, selective repeat (_SelectiveWindow); yields (samples applied, goodness correct or None) as
        the board's count moves. LinkReset when the link was lost: go on from self.info."""
        window = _SelectiveWindow(self, start, stop, record_of)
        try:
            yield from window.run()
        except ConnectionError:
            self._reconnect()

    @staticmethod
    def _expect(reply: Frame, request_type: int, expect: int) -> bytes:
        if reply.type != expect:
            raise EdgeFFError(f"the board answered {m.Request(request_type).name} with reply type "
                              f"{reply.type:#04x}, expected {m.Reply(expect).name}: a firmware bug")
        return reply.payload

    def window_bytes(self) -> int:
        """Bytes of frames to keep in flight: what the board buffers while it computes (max_payload, PROTOCOL.md
        "Windows"). It does not shrink on a damaged line: a loss costs only the frame lost."""
        return self.max_payload

    def infer(self, image) -> tuple[int, int, list]:
        """(multi-pass prediction, one-pass prediction, multi-pass score per class) of one uint8 image,
        computed on the board. The record is staged as the board's next sample, a slot it always accepts."""
        record = bytes([0, m.NO_NEGATIVE]) + bytes(image)
        reply = self._on_staged(self.info.applied, record, m.Request.INFER, m.Reply.SCORES, follow=True)
        multi, one = m.SCORES.unpack_from(reply)
        scores = reply[m.SCORES.size:]
        return multi, one, [v for (v,) in struct.iter_unpack("<i", scores[:len(scores) // 4 * 4])]

    def metrics(self) -> dict:
        keys = ("applied", "correct", "recent_correct", "recent_n", "compute_us", "frames_ok", "frames_bad",
                "errors_sent")
        return dict(zip(keys, m.METRICS.unpack(self.request(m.Request.METRICS, b"", m.Reply.METRICS)), strict=True))

    def read_image(self, progress=None) -> bytes:
        """The board's current model image (weights, master weights, training step). After a lost link the
        pull goes on at the bytes already read, unless the board came back in another state."""
        out, total, state = bytearray(), None, None
        def attempt():
            want = self.chunk_size(m.DATA.size)
            return m.READ.pack(len(out), want), want

        while total is None or len(out) < total:
            try:
                if state is None:                    # what identifies the image: same run, same count
                    info = self.hello()
                    state = (info.run_id, info.applied)
                reply = self.request(m.Request.READ, attempt, m.Reply.DATA)
            except LinkReset:
                if state != (self.info.run_id, self.info.applied):
                    out, total, state = bytearray(), None, None
                continue
            offset, size = m.DATA.unpack_from(reply)
            data = reply[m.DATA.size:]
            if offset != len(out) or (total is not None and size != total) or (not data and len(out) < size):
                raise EdgeFFError("the board's DATA replies do not follow the READ requests: a firmware bug")
            total = size
            out += data
            if progress:
                progress(len(out), total)
        return bytes(out)


def formats_text(mask: int) -> str:
    """INFO's model formats mask in words: "model format 1 only", "model formats 1 and 2"."""
    formats = m.formats_in(mask)
    if not formats:
        return "no model format"
    if len(formats) == 1:
        return f"model format {formats[0]} only"
    return f"model formats {', '.join(map(str, formats[:-1]))} and {formats[-1]}"


def _trained(payload: bytes) -> tuple[int, int, int]:
    applied, correct, duplicate = m.TRAINED.unpack(payload)
    if correct > 1 or duplicate > 1:
        raise ValueError(f"goodness correct {correct} and duplicate {duplicate} must be 0 or 1")
    return applied, correct, duplicate


def _staged(payload: bytes, size: int) -> tuple[int, int, int]:
    """(samples applied, bytes held, first offset not held) of a STAGED reply for a record of `size` bytes."""
    applied, held, missing = m.STAGED.unpack(payload)
    if not missing <= held <= size or (held == size) != (missing == size):
        raise ValueError(f"{held} bytes held and the first missing at {missing} of a {size}-byte record")
    return applied, held, missing


NEEDED, FLYING, CONFIRMED = 0, 1, 2        # what the host knows of each byte of a record it stages


@dataclass
class _Sent:
    """A request of the window that is out and not yet answered."""
    p: int                    # the sample it is for
    request_type: int
    offset: int               # STAGE: the chunk's bytes; TRAIN: 0, 0
    end: int
    size: int                 # bytes of the sample's record
    frame_bytes: int
    exposed: int              # the frame and the reply it expects, on the line
    at: float
    suspect: bool = False     # a NAK or a damaged frame may have been it: its content is sent again, but its
                              # bytes stay counted until a later reply or a silence says it left the board's buffer


class _Sample:
    """The host's view of one sample in the window: each byte of its record needed, flying (in a STAGE not
    answered yet) or confirmed held by the board; whether its TRAIN is out."""

    def __init__(self, record: bytes):
        self.record, self.crc = record, crc32(record)
        self.state = np.full(len(record), NEEDED, np.uint8)
        self.sent = np.zeros(len(record), bool)     # bytes sent at least once: a chunk over them is a resend
        self.train_flying = self.train_sent = False
        self.stagings = 0                           # times the board found the whole record another's

    def next_chunk(self, chunk: int):
        """(offset, end) of the next STAGE to send, the first run of needed bytes up to `chunk`; None."""
        needed = np.flatnonzero(self.state == NEEDED)
        if not len(needed):
            return None
        start = int(needed[0])
        end = min(start + chunk, len(self.record))
        others = np.flatnonzero(self.state[start:end] != NEEDED)
        return start, start + int(others[0]) if len(others) else end

    def confirm(self, offset: int, end: int, missing: int, held: int):
        """A STAGED reply: the chunk it answers and everything before the first missing byte are held."""
        if held == len(self.record):
            self.state[:] = CONFIRMED
        self.state[:missing] = CONFIRMED
        self.state[offset:end] = CONFIRMED

    def lost(self, offset: int, end: int):
        span = self.state[offset:end]
        span[span == FLYING] = NEEDED

    def restart(self):
        """The board holds none of it (its slot was emptied): stage it all again."""
        self.state[:] = NEEDED
        self.stagings += 1
        if self.stagings > MAX_STAGINGS:
            raise EdgeFFError(f"the board found a record staged wrongly {MAX_STAGINGS} times in a row, though "
                              "every frame arrived whole: a firmware bug")


class _SelectiveWindow:
    """The training window of one BoardLink: selective repeat (PROTOCOL.md, "Windows").

    The next samples (at most STAGING_SLOTS from the board's applied count, as many as it has slots) are
    staged in chunks and trained, with up to window_bytes() of frames unanswered (what the board buffers
    while it computes). The board answers in order, so a reply also means that every request sent before it
    and still unanswered was lost (or its reply was); a NAK or a damaged frame is the oldest unanswered
    request's. Only what was lost is sent again: a chunk the board's replies do not yet show held, a TRAIN
    the board refused (its sample not whole yet: BAD_SAMPLE; an earlier one not applied: SEQUENCE). After a
    silence longer than the line's wait every unanswered request counts as lost and the oldest goes out
    alone until a reply comes (a board that was only slow may still hold the frames: a new window on top
    could overrun its buffer). ConnectionError after `retries` silences or 10 x `retries` damaged or
    unknown frames with no reply between them (noise, and no board answering)."""

    def __init__(self, link: "BoardLink", start: int, stop: int, record_of):
        self.link, self.stop, self.record_of = link, stop, record_of
        self.position = start              # the board's applied count, as its last replies said
        self.samples = {}                  # p -> _Sample, for the samples in the window
        self.out = {}                      # seq -> _Sent, in sending order
        self.gone = {}                     # seq -> _Sent of requests counted lost: their replies may come late
        self.alone = False                 # after a silence: one request at a time until a reply
        self.silences = self.noise = 0
        self.last_reply = time.monotonic()

    def run(self):
        while self.position < self.stop:
            self._fill()
            yield from self._receive()

    # ---------------------------------------------------------------- sending
    def _window(self):
        """The samples the board has slots for, from its applied count."""
        for p in range(self.position, min(self.stop, self.position + m.STAGING_SLOTS)):
            if p not in self.samples:
                self.samples[p] = _Sample(self.record_of(p))
            yield p, self.samples[p]

    def _fill(self):
        """Send what is needed, oldest sample first, while the window has room: a sample's missing chunks,
        then its TRAIN once every byte is out (the board takes frames in order, so the chunks arrive
        first), where the sample is the board's next or the TRAIN before it is out too."""
        link = self.link
        chunk = link.chunk_size(m.STAGE.size, pipelined=True)
        window = link.window_bytes()
        while chunk > 1 and max_encoded_size(m.STAGE.size + chunk) > window:
            chunk -= 1 + chunk // 16
        train_before = False                # the previous sample's TRAIN is out: this one's may follow
        for p, sample in self._window():
            while (span := sample.next_chunk(chunk)) is not None:
                offset, end = span
                body = m.STAGE.pack(p, offset) + sample.record[offset:end]
                if not self._send(p, m.Request.STAGE, body, m.STAGED.size, offset, end):
                    return
                sample.state[offset:end] = FLYING
                link.stats["resent"] += bool(sample.sent[offset:end].any())
                sample.sent[offset:end] = True
            if not sample.train_flying and (p == self.position or train_before):
                if not self._send(p, m.Request.TRAIN, m.TRAIN.pack(p, sample.crc), m.TRAINED.size, 0, 0):
                    return
                link.stats["resent"] += sample.train_sent
                sample.train_flying = sample.train_sent = True
            train_before = sample.train_flying

    def _send(self, p: int, request_type: int, body: bytes, reply_bytes: int, offset: int, end: int) -> bool:
        """Send one request if the window has room for it (at least one is always let out; one at a time after
        a silence, but for the resend of one a NAK suspects); False if not."""
        link = self.link
        seq = (link.seq + 1) % m.NAK_SEQ       # a NAK's sequence number is never a request's
        frame = encode_frame(request_type, seq, body)
        busy = sum(s.frame_bytes for s in self.out.values())
        if self.out and (busy + len(frame) > link.window_bytes()
                         or (self.alone and not all(s.suspect for s in self.out.values()))):
            return False
        link.seq = seq
        link.stats["requests"] += 1
        link._write(frame)
        self.out[seq] = _Sent(p, request_type, offset, end, len(self.samples[p].record), len(frame),
                              len(frame) + max_encoded_size(reply_bytes), time.monotonic())
        link.stats["most_in_flight"] = max(link.stats["most_in_flight"], len(self.out))
        return True

    # ---------------------------------------------------------------- receiving
    def _receive(self):
        """Wait for replies (or the end of the line's wait) and act on each; yields the board's applied count
        as it moves."""
        link = self.link
        if not self.out:
            return
        oldest = next(iter(self.out.values()))
        wait = link.line.wait_s(("window", oldest.request_type), sum(s.exposed for s in self.out.values()))
        since = max(self.last_reply, oldest.at)    # when the board could start on the oldest
        left = since + min(wait * 2 ** self.silences, max(wait, link.timeout)) - time.monotonic()
        items = link.decoder.feed(link._read_some(max(left, 0.0)))
        for item in items:
            if isinstance(item, Frame) and item.type < m.Reply.OK:     # the line echoes the host's own frames
                link.stats["echoes"] += 1
            elif isinstance(item, Frame) and item.seq in self.out:
                yield from self._answered(item)
            elif isinstance(item, Frame) and item.seq in self.gone:
                yield from self._late(item)
            else:                                                      # damaged, a NAK, or another's reply
                if not isinstance(item, Frame) or item.type == m.Reply.NAK:
                    link.stats["naks" if isinstance(item, Frame) else "bad_frames"] += 1
                    self._suspect()
                self.noise += 1
                if self.noise >= 10 * link.retries:
                    raise ConnectionError(f"{self.noise} damaged or unknown frames and no reply in the window")
        if not items and left <= 0 and self.out:                      # silence: no reply is coming
            link.stats["timeouts"] += 1
            self.silences += 1
            if self.silences >= link.retries:
                raise ConnectionError(f"no answer in the training window after {self.silences} waits")
            for seq in list(self.out):
                self._lose(seq)
            self.alone = True
            self.last_reply = time.monotonic()

    def _suspect(self):
        """A NAK or a damaged frame: most likely the oldest request not yet suspected, so its content is needed
        again. It is not certain (a frame cut in two by a lost byte makes two NAKs, line noise makes frames of
        no request), so it stays out, its bytes counted in the window: a request the board has not read yet
        still takes room in its receive buffer."""
        sent = next((s for s in self.out.values() if not s.suspect), None)
        if sent is not None:
            self._needed_again(sent)
            sent.suspect = True

    def _lose(self, seq: int):
        """A request that got no reply (a later reply passed over it, or a silence): it has left the board's
        buffer, and what it carried is needed again unless a NAK already said so."""
        sent = self.out.pop(seq)
        self.gone[seq] = sent
        self.link.line.record(sent.exposed, False)
        if not sent.suspect:
            self._needed_again(sent)

    def _needed_again(self, sent: _Sent):
        sample = self.samples.get(sent.p)
        if sample is None:
            return
        if sent.request_type == m.Request.STAGE:
            sample.lost(sent.offset, sent.end)
        else:
            sample.train_flying = False

    def _answered(self, reply: Frame):
        link = self.link
        for seq in list(self.out):               # answered in order: those before it were lost
            if seq == reply.seq:
                break
            self._lose(seq)
        sent = self.out.pop(reply.seq)
        link.line.record(sent.exposed, True)
        now = time.monotonic()
        # the gap since the board could start on it (its sending, or the reply before it); kept apart from
        # the round trips of one request at a time, which wait for the whole way there and back
        link.line.round_trip(("window", sent.request_type), now - max(sent.at, self.last_reply), sent.exposed)
        self.last_reply, self.silences, self.noise, self.alone = now, 0, 0, False
        link.answered = True
        sample = self.samples.get(sent.p)        # None: applied since it was sent
        if reply.type == m.Reply.ERROR:
            yield from self._refused(sent, sample, reply)
        else:
            yield from self._accepted(sent, sample, reply)

    def _late(self, reply: Frame):
        """The reply to a request already counted lost (its reply was slow, or a NAK was another frame's): the
        board is answering, and what it says of the sample's bytes and of its applied count still holds. A
        refusal is left to the request's resend, which hears the board's answer as it is now."""
        sent = self.gone.pop(reply.seq)
        self.silences = self.noise = 0
        self.link.answered = True
        if reply.type != m.Reply.ERROR:
            yield from self._accepted(sent, self.samples.get(sent.p), reply)

    def _accepted(self, sent: _Sent, sample, reply: Frame):
        """What a STAGED or TRAINED reply says: the bytes the board holds, its applied count."""
        link = self.link
        if sent.request_type == m.Request.STAGE:
            applied, held, missing = link._parse(
                lambda r: _staged(r, sent.size), link._expect(reply, m.Request.STAGE, m.Reply.STAGED), "STAGED")
            yield from self._advance(applied, None)
            if sample is not None and sent.p >= self.position:
                sample.confirm(sent.offset, sent.end, missing, held)
        else:
            applied, correct, duplicate = link._parse(
                _trained, link._expect(reply, m.Request.TRAIN, m.Reply.TRAINED), "TRAINED")
            if sample is not None:
                sample.train_flying = False
            yield from self._advance(applied, None if duplicate else correct)

    def _refused(self, sent: _Sent, sample, reply: Frame):
        link = self.link
        code, detail = link._parse(m.ERROR.unpack_from, reply.payload, "ERROR")
        if sample is not None:                   # what was refused is needed again
            if sent.request_type == m.Request.STAGE:
                sample.lost(sent.offset, sent.end)
            else:
                sample.train_flying = False
        if code == m.ErrorCode.SEQUENCE:         # a TRAIN ahead of an unapplied sample, or the board went back
            if detail < self.position:           # it lost samples (a reset the link did not see): follow it
                self.position, self.samples = detail, {}
                self.out.clear()
                self.gone.clear()
                yield detail, None
            else:
                yield from self._advance(detail, None)
        elif code == m.ErrorCode.BAD_SAMPLE and sent.request_type == m.Request.TRAIN and sample is not None:
            confirmed = not (sample.state != CONFIRMED).any()
            if detail == len(sample.record) or confirmed:   # the board holds another record, or none of it
                sample.restart()
        else:
            refused = BoardError(code, detail, reply.payload[m.ERROR.size:].decode("utf-8", "replace"))
            refused.sample = sent.p
            raise refused

    def _advance(self, applied: int, correct):
        """The board's applied count from a reply: the samples before it are done."""
        if applied <= self.position:
            return
        self.position = applied
        for p in [p for p in self.samples if p < applied]:
            del self.samples[p]
        for seq in [seq for seq, sent in self.gone.items() if sent.p < applied]:
            del self.gone[seq]
        yield applied, correct
