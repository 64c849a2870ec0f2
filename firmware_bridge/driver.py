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
    MIN_CHUNK = 16
    MIN_WAIT_S = 0.01

    def __init__(self, byte_s: float, first_wait_s: float):
        self.byte_s, self.first_wait_s = byte_s, first_wait_s
        self.attempts = deque(maxlen=self.WINDOW)     # (bytes exposed, came back whole)
        self.failures = 0                               # among self.attempts
        self.rate_cache = None
        self.round_trips = {}                           # request type -> [smoothed turnaround, deviation]

    def record(self, exposed: int, ok: bool):
        if len(self.attempts) == self.WINDOW:
            self.failures -= not self.attempts[0][1]
        self.attempts.append((exposed, ok))
        self.failures += not ok
        self.rate_cache = None

    def error_rate(self) -> float:
        if self.rate_cache is None:
            if not self.failures:
                self.rate_cache = float(self.RATES[0])
            else:
                n = np.array([a[0] for a in self.attempts], float)
                ok = np.array([a[1] for a in self.attempts])
                log_keep = np.log1p(-self.RATES)[:, None] * n[None, :]          # log (1 - e)^n
                fit = np.where(ok[None, :], log_keep, np.log(-np.expm1(log_keep))).sum(axis=1)
                self.rate_cache = float(self.RATES[np.argmax(fit)])
        return self.rate_cache

    def bytes_between_losses(self) -> float:
        """How many bytes arrive whole, on average, between two damaged ones."""
        return 1 / self.error_rate()

    def chunk_size(self, limit: int, fixed_bytes: int) -> int:
        """The chunk (up to limit) that moves the most bytes per second: each attempt carries fixed_bytes
        besides the chunk and costs the board's turnaround too."""
        if limit <= self.MIN_CHUNK:
            return limit
        sizes = np.unique(np.geomspace(self.MIN_CHUNK, limit, 48).astype(int))
        exposed = sizes + fixed_bytes
        turnaround = min((t for t, _ in self.round_trips.values()), default=0.0)
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
        if info.model_format != m.MODEL_FORMAT:
            raise EdgeFFError(f"the board takes model format {info.model_format}; this EdgeFF writes format "
                              f"{m.MODEL_FORMAT}: update the firmware or EdgeFF")
        self.max_payload = min(info.max_payload, self.payload_limit or info.max_payload)
        if self.max_payload < m.DATA.size + 1 or self.max_payload < m.OFFSET.size + 1:
            raise EdgeFFError(f"frames of {self.max_payload} payload bytes are too small for the protocol")
        return info

    def _write(self, data: bytes):
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionError(str(exc)) from None

    def _read_some(self, wait_s: float) -> bytes:
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

    def chunk_size(self, fields: int) -> int:
        """Data bytes for the next chunk of a load, a sample or a pull, whose frames carry `fields` bytes of
        fixed fields besides them (the reply's are about as many: OK for a chunk, DATA's header for READ)."""
        return self.line.chunk_size(self.max_payload - fields, 2 * max_encoded_size(fields))

    def load_image(self, image: bytes, progress=None):
        """Send a board image in chunks; the board checks it (CRC, format, memory) and keeps it. After a
        lost link the load goes on from the bytes the board holds (LOAD_BEGIN says how many)."""
        while True:
            try:
                received = self.value(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)))
                while received < len(image):
                    received = self._send_chunk(m.Request.LOAD_CHUNK, image, received)
                    if progress:
                        progress(received, len(image))
                self.value(m.Request.LOAD_END)
                return
            except LinkReset:
                continue

    def stage(self, record: bytes) -> int:
        """Put one sample record in the board's staging buffer; returns its CRC for TRAIN or INFER."""
        staged = 0
        while staged < len(record):
            staged = self._send_chunk(m.Request.STAGE, record, staged)
        return crc32(record)

    def _send_chunk(self, request_type: int, data: bytes, offset: int) -> int:
        """One chunk of data at offset (LOAD_CHUNK or STAGE), sized to the line at each attempt; returns the
        bytes the board now holds, which is where the next chunk goes. A chunk beyond them (the board went
        back: a late resend of an earlier offset restarted its staging) is refused with their count: go on
        from there."""
        def attempt():
            return m.OFFSET.pack(offset) + data[offset:offset + self.chunk_size(m.OFFSET.size)], 0
        try:
            held = self.value(request_type, attempt)
        except BoardError as exc:
            if exc.code != m.ErrorCode.BAD_RANGE or exc.detail >= offset:
                raise
            return exc.detail
        if not offset < held <= len(data):
            raise EdgeFFError(f"the board answered {m.Request(request_type).name} at {offset} with {held} bytes "
                              f"held of {len(data)}: a firmware bug")
        return held

    def _on_staged(self, record: bytes, request_type: int, pack, expect: int) -> bytes:
        """Stage `record`, then the request `pack(crc)` on it. The board may hold less than was staged when
        the request arrives: a late resend of a first chunk (sent again, shorter, after a slow reply) restarts
        its staging after the host moved on. It says so (BAD_SAMPLE) and the record is staged again."""
        for _ in range(MAX_STAGINGS):
            crc = self.stage(record)
            try:
                return self.request(request_type, pack(crc), expect)
            except BoardError as exc:
                if exc.code != m.ErrorCode.BAD_SAMPLE:
                    raise
        raise EdgeFFError(f"the board found a record staged incompletely {MAX_STAGINGS} times in a row, though "
                          "every frame arrived whole: a firmware bug")

    def train(self, index: int, record: bytes) -> tuple[int, int, int]:
        """Stage `record` and TRAIN it as sample `index`: (samples applied, goodness correct, duplicate),
        one request at a time."""
        try:
            reply = self._on_staged(record, m.Request.TRAIN, lambda crc: m.TRAIN.pack(index, crc),
                                    m.Reply.TRAINED)
        except BoardError as exc:
            exc.sample = index
            raise
        return self._parse(_trained, reply, "TRAINED")

    def train_window(self, start: int, stop: int, record_of):
        """Train samples start..stop-1 (`record_of(p)`: the record of sample p) with several requests in
        flight; yields (samples applied, goodness correct or None) after each sample the board confirms.

        Each round sends the STAGE chunks and TRAIN of the next samples through `_pipeline`; the board
        applies a sample only at its index, so what a round loses costs a resend, never a sample applied
        twice. The next round starts at the board's applied count from the last reply that says it, and
        goes on with the record's staging at the bytes the board last said it held (a wrong guess, after a
        lost reply, is caught by the record's CRC in TRAIN and staged from 0). One sample goes alone, as a
        stop-and-wait exchange with its backoff and limits (LinkReset when the link is lost), on a line too
        damaged for four records' bytes to arrive whole in a row, after a round that ended in silence (the
        board may still hold its frames: a new window could overrun its buffer), and after `retries` rounds
        in a row that moved no sample."""
        position, held, stalled, alone, sent_upto = start, 0, 0, False, start - 1
        records = {}

        def record(p):
            if p not in records:
                records[p] = record_of(p)
            return records[p]

        while position < stop:
            for p in [p for p in records if p < position]:
                del records[p]
            if alone or stalled >= self.retries or self.line.bytes_between_losses() < 4 * len(record(position)):
                applied, correct, duplicate = self.train(position, record(position))
                position, held, stalled, alone = applied, 0, 0, False
                yield applied, None if duplicate else correct
                continue
            requests, samples = self._window_round(position, held, stop, record)
            try:
                replies, silent, written = self._pipeline(requests)
            except ConnectionError:
                self._reconnect()
            self.stats["resent"] += sum(p <= sent_upto for p in samples[:written])   # go-back-N's resends
            sent_upto = max(sent_upto, *samples[:written])
            moved = False
            for (request_type, _, _), p, reply in zip(requests, samples, replies, strict=True):
                if reply is None:
                    continue
                if reply.type == m.Reply.ERROR:
                    code, detail = self._parse(m.ERROR.unpack_from, reply.payload, "ERROR")
                    if code == m.ErrorCode.SEQUENCE:           # the board's count: go on from there
                        moved |= detail != position
                        position, held = detail, 0
                        yield detail, None
                    elif code == m.ErrorCode.BAD_SAMPLE:       # staged wrong: from 0 again
                        held = 0
                    elif code == m.ErrorCode.BAD_RANGE and request_type == m.Request.STAGE:
                        held = detail if p == position and detail <= len(record(p)) else 0
                    else:
                        refused = BoardError(code, detail, reply.payload[m.ERROR.size:].decode("utf-8", "replace"))
                        refused.sample = p
                        raise refused
                elif request_type == m.Request.STAGE:
                    got = self._parse(m.OK.unpack, self._expect(reply, m.Request.STAGE, m.Reply.OK), "OK")[0]
                    if got > len(record(p)):
                        raise EdgeFFError(f"the board answered STAGE with {got} bytes held of a {len(record(p))}-"
                                          "byte record: a firmware bug")
                    if p == position:
                        held = got
                    elif p > position:       # the board is staging a later sample: this one goes from 0
                        held = 0
                else:
                    applied, correct, duplicate = self._parse(
                        _trained, self._expect(reply, m.Request.TRAIN, m.Reply.TRAINED), "TRAINED")
                    moved |= applied != position
                    position, held = applied, 0
                    yield applied, None if duplicate else correct
            stalled = 0 if moved else stalled + 1
            alone = silent

    def _window_round(self, position: int, held: int, stop: int, record) -> tuple[list, list]:
        """The requests of one round ((type, payload, reply bytes) each) and the sample each is for: the
        staging of samples from `position` (the first from `held` bytes) and their TRAINs, about two windows
        of bytes, each frame small enough to fit the window alone."""
        window = self.window_bytes()
        chunk = self.chunk_size(m.OFFSET.size)
        while chunk > 1 and max_encoded_size(m.OFFSET.size + chunk) > window:
            chunk -= 1 + chunk // 16
        requests, samples, p, budget = [], [], position, 2 * window
        while p < stop and budget > 0:
            data, offset = record(p), held if p == position else 0
            for at in range(offset, len(data), chunk):
                requests.append((m.Request.STAGE, m.OFFSET.pack(at) + data[at:at + chunk], m.OK.size))
                samples.append(p)
            requests.append((m.Request.TRAIN, m.TRAIN.pack(p, crc32(data)), m.TRAINED.size))
            samples.append(p)
            budget -= len(data) - offset
            p += 1
        return requests, samples

    @staticmethod
    def _expect(reply: Frame, request_type: int, expect: int) -> bytes:
        if reply.type != expect:
            raise EdgeFFError(f"the board answered {m.Request(request_type).name} with reply type "
                              f"{reply.type:#04x}, expected {m.Reply(expect).name}: a firmware bug")
        return reply.payload

    def window_bytes(self) -> int:
        """Bytes of frames to keep in flight: what the board buffers while it computes (max_payload), less on a
        damaged line, where one loss voids every frame sent after it (the board takes them in order)."""
        return int(min(self.max_payload, self.line.bytes_between_losses() / 2))

    def _pipeline(self, requests: list) -> tuple[list, bool]:
        """Send `requests` ((type, payload, reply bytes) each) with several in flight: at most window_bytes()
        of frames that the board has not answered yet, no more than a board buffers while it computes
        (PROTOCOL.md, "Windows"). The board answers in order, so a reply means every request before it
        arrived or was lost. Sending stops at the first sign of a loss (a NAK, a damaged frame, an ERROR
        reply, a request passed over by a later reply, a silence longer than the line's wait after the
        last reply); what was sent is then waited for. Returns (the reply Frame or None for each request,
        whether the round ended in silence, how many requests were sent). ConnectionError when the port
        breaks or the line brings `retries` x 10 damaged or unknown frames in a round (noise, and no board
        answering)."""
        replies, window = [None] * len(requests), self.window_bytes()
        by_seq, outstanding = {}, deque()     # outstanding: (index, frame bytes, bytes exposed, sent at)
        following, lost, noise = 0, False, 0
        last_reply = time.monotonic()
        while (following < len(requests) and not lost) or outstanding:
            while following < len(requests) and not lost:
                request_type, body, reply_bytes = requests[following]
                seq = (self.seq + 1) % m.NAK_SEQ
                frame = encode_frame(request_type, seq, body)
                if outstanding and sum(o[1] for o in outstanding) + len(frame) > window:
                    break
                self.seq = seq
                self.stats["requests"] += 1
                self._write(frame)
                by_seq[seq] = following
                outstanding.append((following, len(frame), len(frame) + max_encoded_size(reply_bytes),
                                    time.monotonic()))
                self.stats["most_in_flight"] = max(self.stats["most_in_flight"], len(outstanding))
                following += 1
            oldest_type = requests[outstanding[0][0]][0]
            left = last_reply + self.line.wait_s(("window", oldest_type), sum(o[2] for o in outstanding)) \
                - time.monotonic()
            matched = False
            for item in self.decoder.feed(self._read_some(max(left, 0.0))):   # read what came before giving up
                if isinstance(item, Frame) and item.type < m.Reply.OK:   # the line echoes the host's own
                    self.stats["echoes"] += 1
                    continue
                index = by_seq.get(item.seq) if isinstance(item, Frame) and item.type != m.Reply.NAK else None
                if index is None or not outstanding or index < outstanding[0][0] or replies[index] is not None:
                    if not isinstance(item, Frame) or item.type == m.Reply.NAK:
                        self.stats["naks" if isinstance(item, Frame) else "bad_frames"] += 1
                        lost = True
                    noise += 1                              # damaged, or a late reply of an earlier round
                    if noise >= 10 * self.retries:
                        raise ConnectionError(f"{noise} damaged or unknown frames and no reply in a round")
                    continue
                replies[index], matched, self.answered = item, True, True
                lost |= item.type == m.Reply.ERROR
                while outstanding and outstanding[0][0] <= index:   # answered in order: these are done
                    done, _, exposed, sent = outstanding.popleft()
                    self.line.record(exposed, replies[done] is not None)
                    lost |= replies[done] is None                   # passed over: lost on the way
                # the gap since the board could start on it (its sending, or the reply before it); kept apart
                # from the round trips of one request at a time, which wait for the whole way there and back
                now = time.monotonic()
                self.line.round_trip(("window", requests[index][0]), now - max(sent, last_reply), exposed)
                last_reply = now
            if not matched and left <= 0:                   # silence: the oldest is lost, the rest unknown
                self.stats["timeouts"] += 1
                self.line.record(outstanding[0][2], False)
                return replies, True, following
        return replies, False, following

    def infer(self, image) -> tuple[int, int, list]:
        """(multi-pass prediction, one-pass prediction, multi-pass score per class) of one uint8 image,
        computed on the board."""
        record = bytes([0, m.NO_NEGATIVE]) + bytes(image)
        reply = self._on_staged(record, m.Request.INFER, m.INFER.pack, m.Reply.SCORES)
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


def _trained(payload: bytes) -> tuple[int, int, int]:
    applied, correct, duplicate = m.TRAINED.unpack(payload)
    if correct > 1 or duplicate > 1:
        raise ValueError(f"goodness correct {correct} and duplicate {duplicate} must be 0 or 1")
    return applied, correct, duplicate
