"""The host's end of the link: requests to a board over any pyserial URL, resent until answered.

Stop-and-wait: one request in flight, its reply matched by sequence number; a request is resent when its
reply does not come within the timeout or the board answers NAK (it received a damaged frame). Every
request is idempotent on the board, so resending is always safe. When the port breaks (a board reset, a
cable pulled, a virtual board killed) or a request goes unanswered `retries` times, the link reopens the
port (for up to `reconnect_s`), says HELLO again and raises LinkReset: the operation in progress restarts
from what the board reports (BoardInfo), which is how nothing is lost or applied twice.
"""
import select
import struct
import time
from dataclasses import dataclass

import serial

from edgeff.errors import EdgeFFError
from firmware_bridge import messages as m
from firmware_bridge.framing import Frame, FrameDecoder, crc32, encode_frame, max_encoded_size

HOST_REPLY_LIMIT = 65535          # the largest reply payload the host accepts


class LinkReset(Exception):
    """The link was lost and reopened; the board may have rebooted. Restart the operation."""


class BoardError(EdgeFFError):
    """The board answered a request with ERROR."""

    def __init__(self, code: int, detail: int, message: str):
        name = m.ErrorCode(code).name if code in m.ErrorCode._value2member_map_ else f"code {code}"
        super().__init__(f"the board refused the request ({name}): {message}")
        self.code, self.detail = code, detail


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
        return cls(version, (low, high), max_payload, sram, flash, free, fmt, bool(flags & 1), bool(flags & 2),
                   run_id, applied, ckpt, image_bytes, image_crc, m.text_field(name), m.text_field(firmware))


class BoardLink:
    FIRST_CONNECT_S = 5.0     # a first connection fails fast; a lost one is retried for reconnect_s

    def __init__(self, url: str, timeout=0.5, retries=20, reconnect_s=30.0, baud=115200, max_payload=None):
        if timeout <= 0 or retries < 1 or reconnect_s < 0:
            raise EdgeFFError("timeout must be positive, retries at least 1 and reconnect time not negative")
        self.url, self.timeout, self.retries, self.reconnect_s, self.baud = url, timeout, retries, reconnect_s, baud
        self.payload_limit = max_payload
        self.max_payload = 256            # until HELLO tells the board's
        self.seq = 0
        self.stats = {"requests": 0, "resent": 0, "naks": 0, "bad_frames": 0, "reconnects": 0}
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
        except (AttributeError, NotImplementedError, serial.SerialException):
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
    def _exchange(self, request_type: int, payload: bytes) -> Frame:
        """One request, resent until its reply arrives. ConnectionError when the port breaks or the board
        stays silent for all retries."""
        self.seq = (self.seq + 1) % 0xFFFF          # 0xFFFF is the NAK's "no sequence"
        frame = encode_frame(request_type, self.seq, payload)
        wire_s = (len(frame) + max_encoded_size(self.max_payload)) * 10 / self.baud
        self.stats["requests"] += 1
        for attempt in range(self.retries):
            if attempt:
                self.stats["resent"] += 1
            self._write(frame)
            deadline = time.monotonic() + self.timeout + wire_s
            while (left := deadline - time.monotonic()) > 0:
                reply = self._next_reply(left)
                if reply == "nak":
                    break
                if reply is not None:
                    return reply
        raise ConnectionError(f"no answer to {m.Request(request_type).name} after {self.retries} tries")

    def _next_reply(self, wait_s: float):
        """The reply to the request in flight, "nak", or None if nothing matching arrived in wait_s."""
        for item in self.decoder.feed(self._read_some(wait_s)):
            if not isinstance(item, Frame):
                self.stats["bad_frames"] += 1
            elif item.type == m.Reply.NAK:
                self.stats["naks"] += 1
                return "nak"
            elif item.seq == self.seq:
                return item
        return None

    def _checked(self, request_type: int, payload: bytes, expect: int) -> bytes:
        reply = self._exchange(request_type, payload)
        if reply.type == m.Reply.ERROR:
            code, detail = self._parse(m.ERROR.unpack_from, reply.payload, "ERROR")
            raise BoardError(code, detail, reply.payload[m.ERROR.size:].decode("utf-8", "replace"))
        if reply.type != expect:
            raise EdgeFFError(f"the board answered {m.Request(request_type).name} with reply type "
                              f"{reply.type:#04x}, expected {m.Reply(expect).name}: a firmware bug")
        return reply.payload

    @staticmethod
    def _parse(unpack, payload: bytes, what: str):
        try:
            return unpack(payload)
        except Exception:   # struct.error, or a value outside an enum: the board sent garbage
            raise EdgeFFError(f"the board sent a malformed {what} reply ({len(payload)} bytes)") from None

    def request(self, request_type: int, payload: bytes, expect: int) -> bytes:
        """The reply payload of a request; BoardError if refused; LinkReset after the link was lost and
        reopened (the caller restarts its operation from self.info)."""
        try:
            return self._checked(request_type, payload, expect)
        except ConnectionError:
            self._reconnect()

    def _reconnect(self):
        self.stats["reconnects"] += 1
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

    def value(self, request_type: int, payload: bytes = b"") -> int:
        """A request answered with OK(value)."""
        return self._parse(m.OK.unpack, self.request(request_type, payload, m.Reply.OK), "OK")[0]

    def chunks(self, data: bytes, header_size: int):
        limit = self.max_payload - header_size
        return [(offset, data[offset:offset + limit]) for offset in range(0, len(data), limit)]

    def load_image(self, image: bytes):
        """Send a board image in chunks; the board checks it (CRC, format, memory) and keeps it."""
        self.value(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)))
        for offset, chunk in self.chunks(image, m.OFFSET.size):
            self.value(m.Request.LOAD_CHUNK, m.OFFSET.pack(offset) + chunk)
        self.value(m.Request.LOAD_END)

    def stage(self, record: bytes) -> int:
        """Put one sample record in the board's staging buffer; returns its CRC for TRAIN or INFER."""
        for offset, chunk in self.chunks(record, m.OFFSET.size):
            self.value(m.Request.STAGE, m.OFFSET.pack(offset) + chunk)
        return crc32(record)

    def infer(self, image) -> tuple[int, int, list]:
        """(multi-pass prediction, one-pass prediction, multi-pass score per class) of one uint8 image,
        computed on the board."""
        record = bytes([0, m.NO_NEGATIVE]) + bytes(image)
        while True:
            crc = self.stage(record)
            try:
                reply = self.request(m.Request.INFER, m.INFER.pack(crc), m.Reply.SCORES)
                break
            except BoardError as exc:
                if exc.code != m.ErrorCode.BAD_SAMPLE:     # a damaged staging is staged again
                    raise
        multi, one = self._parse(m.SCORES.unpack_from, reply, "SCORES")
        scores = reply[m.SCORES.size:]
        return multi, one, [v for (v,) in struct.iter_unpack("<i", scores[:len(scores) // 4 * 4])]

    def metrics(self) -> dict:
        keys = ("applied", "correct", "recent_correct", "recent_n", "compute_us", "frames_ok", "frames_bad",
                "errors_sent")
        return dict(zip(keys, self._parse(m.METRICS.unpack, self.request(m.Request.METRICS, b"", m.Reply.METRICS),
                                          "METRICS"), strict=True))

    def read_image(self) -> bytes:
        """The board's current model image (weights, master weights, training step)."""
        out, total = bytearray(), None
        while total is None or len(out) < total:
            want = self.max_payload - m.DATA.size
            reply = self.request(m.Request.READ, m.READ.pack(len(out), want), m.Reply.DATA)
            offset, size = self._parse(m.DATA.unpack_from, reply, "DATA")
            data = reply[m.DATA.size:]
            if offset != len(out) or (total is not None and size != total) or (not data and len(out) < size):
                raise EdgeFFError("the board's DATA replies do not follow the READ requests: a firmware bug")
            total = size
            out += data
        return bytes(out)
