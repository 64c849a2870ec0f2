"""The firmware's frame decoder and encoder in C (firmware/protocol/framing.c), built for the host: the
same frames, bad-frame reasons and bytes as framing.py on any byte stream (hypothesis), and fuzzed with
libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer for a million executions (with the
board's reply to every chunk, which must decode as a frame)."""
import ctypes
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.emulator import FIRMWARE
from firmware_bridge.framing import BadFrame, Frame, FrameDecoder, encode_frame, max_encoded_size

PROTOCOL = FIRMWARE / "protocol"
REASONS = {2: "cobs", 3: "crc", 4: "short", 5: "too_long"}
MAX_PAYLOAD = 40

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


class _Decoder(ctypes.Structure):
    _fields_ = [("buffer", ctypes.c_void_p), ("capacity", ctypes.c_uint32), ("length", ctypes.c_uint32),
                ("overflowed", ctypes.c_uint32)]


class _Frame(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint8), ("seq", ctypes.c_uint16), ("payload", ctypes.POINTER(ctypes.c_uint8)),
                ("payload_length", ctypes.c_uint32), ("encoded_length", ctypes.c_uint32)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = tmp_path_factory.mktemp("framing") / "framing.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
                    str(PROTOCOL / "framing.c"), "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.ef_frame_feed.argtypes = [ctypes.POINTER(_Decoder), ctypes.c_uint8, ctypes.POINTER(_Frame)]
    lib.ef_frame_encode.argtypes = [ctypes.c_uint8, ctypes.c_uint16, ctypes.c_char_p, ctypes.c_uint32,
                                    ctypes.c_char_p]
    lib.ef_frame_encode.restype = ctypes.c_uint32
    lib.ef_max_encoded_size.restype = ctypes.c_uint32
    return lib


def c_decode(lib, stream: bytes) -> list:
    capacity = lib.ef_max_encoded_size(MAX_PAYLOAD)
    buffer = ctypes.create_string_buffer(capacity)
    decoder, frame = _Decoder(), _Frame()
    lib.ef_frame_decoder_init(ctypes.byref(decoder), buffer, capacity)
    out = []
    for byte in stream:
        status = lib.ef_frame_feed(ctypes.byref(decoder), byte, ctypes.byref(frame))
        if status == 1:
            out.append(Frame(frame.type, frame.seq, bytes(frame.payload[:frame.payload_length])))
        elif status:
            out.append(BadFrame(REASONS[status], frame.encoded_length))
    return out


frames = st.builds(encode_frame, st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=120))
long_runs = st.binary(min_size=45, max_size=150).map(lambda b: b.replace(b"\x00", b"\x01"))   # over the buffer
pieces = st.one_of(frames, st.binary(max_size=70), st.just(b"\x00"), long_runs,
                   frames.map(lambda f: f[:len(f) // 2]),                               # cut short
                   st.tuples(frames, st.integers(1, 200)).map(lambda t: _flip(*t)))    # one byte damaged


def _flip(frame: bytes, position: int) -> bytes:
    i = 1 + position % (len(frame) - 2)
    return frame[:i] + bytes([frame[i] ^ 0x5A or 1]) + frame[i + 1:]


@settings(max_examples=400, deadline=None)
@given(st.lists(pieces, max_size=12))
def test_c_decoder_gives_what_the_python_one_gives(lib, parts):
    stream = b"".join(parts)
    assert c_decode(lib, stream) == FrameDecoder(MAX_PAYLOAD).feed(stream)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.one_of(st.binary(max_size=600),
                                                              st.integers(250, 520).map(lambda n: b"\x07" * n)))
def test_c_encoder_writes_the_python_bytes(lib, frame_type, seq, payload):
    out = ctypes.create_string_buffer(max_encoded_size(len(payload)))
    n = lib.ef_frame_encode(frame_type, seq, payload, len(payload), out)
    assert lib.ef_max_encoded_size(len(payload)) == max_encoded_size(len(payload))
    assert out.raw[:n] == encode_frame(frame_type, seq, payload)


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (with libFuzzer) is not installed")
def test_decoder_survives_a_million_fuzzed_inputs(tmp_path):
    exe = tmp_path / "fuzz_framing"
    build = subprocess.run(["clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                            f"-I{PROTOCOL}", str(PROTOCOL / "fuzz_framing.c"), str(PROTOCOL / "framing.c"),
                            str(PROTOCOL / "board_protocol.c"), "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0 and "fuzzer" in build.stderr:
        pytest.skip(f"clang has no libFuzzer here: {build.stderr.strip()[:200]}")
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "frames").write_bytes(encode_frame(1, 5, b"hello\x00world") + encode_frame(7, 0xFFFF, bytes(range(60))))
    (corpus / "garbage").write_bytes(b"\x00\x03ab\x00" + encode_frame(3, 0, b""))
    run = subprocess.run([str(exe), "-runs=1000000", "-max_len=512", "-seed=1", str(corpus)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done 1000000 runs" in run.stderr
