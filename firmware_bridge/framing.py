"""Frames on the serial link: COBS-encoded, CRC-32-checked, delimited by 0x00 (PROTOCOL.md, "Framing").

A frame before encoding is   type u8 | seq u16 LE | payload | crc32 u32 LE
with the CRC (IEEE 802.3, zlib's) over type, seq and payload. COBS removes every 0x00 from it, so a 0x00
on the wire always ends a frame; senders also put one before each frame, which flushes any garbage a
glitch left in the receiver. The decoder never raises on bad input: every delimited chunk of bytes comes
out either as a Frame or as a BadFrame naming why it was rejected.
"""
import struct
import zlib
from dataclasses import dataclass

DELIMITER = 0
HEADER = struct.Struct("<BH")           # type, seq
CRC = struct.Struct("<I")
OVERHEAD = HEADER.size + CRC.size       # 7 bytes around the payload


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: at most one extra byte per 254 bytes, and no 0x00 in the output.
    Each run of non-zero bytes between 0x00s (bytes.split does the scanning in C: this runs for every frame
    both ways) is written as blocks after a code byte: 255 before each full block of 254 bytes, then the
    length + 1 of what is left of the run (possibly nothing), which the decoder reads as "a 0x00 follows"
    except at the end of the data. `data` is bytes."""
    out = bytearray()
    for run in data.split(b"\0"):
        start = 0
        while len(run) - start >= 254:
            out.append(255)
            out += run[start:start + 254]
            start += 254
        out.append(len(run) - start + 1)
        out += run[start:]
    return bytes(out)


def cobs_decode(data: bytes) -> bytes | None:
    """The inverse of cobs_encode; None when `data` is not a valid encoding (a code byte points past the
    end, or a 0x00 is inside)."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            return None
        block = data[i + 1:i + code]
        if 0 in block:
            return None
        out += block
        i += code
        if code < 255 and i < n:
            out.append(0)
    return bytes(out)


def max_encoded_size(payload_bytes: int) -> int:
    """Bytes on the wire for a frame with this payload, both delimiters included (worst case)."""
    raw = payload_bytes + OVERHEAD
    return raw + raw // 254 + 1 + 2


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class BadFrame:
    reason: str       # "cobs", "crc", "short" or "too_long"
    size: int         # encoded bytes received


def encode_frame(frame_type: int, seq: int, payload: bytes = b"") -> bytes:
    raw = HEADER.pack(frame_type, seq & 0xFFFF) + bytes(payload)
    raw += CRC.pack(crc32(raw))
    return bytes([DELIMITER]) + cobs_encode(raw) + bytes([DELIMITER])


def decode_frame(encoded: bytes, max_payload: int | None = None) -> Frame | BadFrame:
    """The frame in one delimited chunk; a payload over max_payload is "too_long" (the encoded length alone
    cannot tell: COBS adds between 1 and 1 + n/254 bytes, so a limit on it lets a few bytes more through)."""
    raw = cobs_decode(encoded)
    if raw is None:
        return BadFrame("cobs", len(encoded))
    if len(raw) < OVERHEAD:
        return BadFrame("short", len(encoded))
    if max_payload is not None and len(raw) > max_payload + OVERHEAD:
        return BadFrame("too_long", len(encoded))
    body, (crc,) = raw[:-CRC.size], CRC.unpack(raw[-CRC.size:])
    if crc32(body) != crc:
        return BadFrame("crc", len(encoded))
    frame_type, seq = HEADER.unpack(body[:HEADER.size])
    return Frame(frame_type, seq, body[HEADER.size:])


class FrameDecoder:
    """Splits a byte stream into frames. Feed it whatever the link delivered; it returns the frames (and
    bad frames) completed by those bytes. An over-long run without a delimiter is dropped as it arrives
    (reported once, as "too_long"), so a receiver's buffer never grows past max_payload."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        self.limit = max_encoded_size(max_payload) - 2      # the delimiters are not buffered
        self.buffer = bytearray()
        self.overflowed = 0     # bytes dropped from the frame now being received

    def feed(self, data: bytes) -> list:
        out = []
        for chunk_end, piece in _split_keep(data):
            if self.overflowed:
                self.overflowed += len(piece)
            else:
                self.buffer += piece
                if len(self.buffer) > self.limit:
                    self.overflowed = len(self.buffer)
                    self.buffer.clear()
            if chunk_end:
                if self.overflowed:
                    out.append(BadFrame("too_long", self.overflowed))
                elif self.buffer:
                    out.append(decode_frame(bytes(self.buffer), self.max_payload))
                self.buffer.clear()
                self.overflowed = 0
        return out


def _split_keep(data: bytes):
    """(ends_a_frame, bytes before the delimiter) for each delimiter in data, then the unfinished rest."""
    start = 0
    while True:
        end = data.find(DELIMITER, start)
        if end < 0:
            if start < len(data):
                yield False, data[start:]
            return
        yield True, data[start:end]
        start = end + 1
