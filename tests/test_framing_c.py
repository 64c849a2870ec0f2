"""The firmware's frame decoder and encoder in C (edgeff/csrc/protocol/framing.c), built for the host: the
same frames, bad-frame reasons and bytes as framing.py on any byte stream (hypothesis); and the whole board
protocol (framing, board images, training, checkpoints) fuzzed with libFuzzer under AddressSanitizer and
UndefinedBehaviorSanitizer for a million executions, every chunk answered by one reply that decodes as a
frame (fuzz_protocol.c)."""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeff.csrc import KERNELS, PROTOCOL
from edgeff.op_registry import KINDS
from edgeff.ops.conv2d.board_image import RECORD as CONV_RECORD
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge import messages as m
from firmware_bridge.board_image import LAYERED_FIXED, LAYERED_LAYER, pack_image, unpack_image
from firmware_bridge.board_training import configure_payload
from firmware_bridge.framing import BadFrame, Frame, FrameDecoder, crc32, encode_frame, max_encoded_size

BOARD_SOURCES = ["framing.c", "board_image.c", "cwc_image.c", "board_protocol.c", "host_board.c"]
REASONS = {2: "cobs", 3: "crc", 4: "short", 5: "too_long"}
MAX_PAYLOAD = 40

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


class _Decoder(ctypes.Structure):
    _fields_ = [("buffer", ctypes.c_void_p), ("max_payload", ctypes.c_uint32), ("capacity", ctypes.c_uint32),
                ("length", ctypes.c_uint32), ("overflowed", ctypes.c_uint32)]


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
    buffer = ctypes.create_string_buffer(lib.ef_max_encoded_size(MAX_PAYLOAD))
    decoder, frame = _Decoder(), _Frame()
    lib.ef_frame_decoder_init(ctypes.byref(decoder), buffer, MAX_PAYLOAD)
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


def test_both_decoders_refuse_every_payload_over_the_maximum(lib):
    """A frame one to three bytes over max_payload still fits the encoded-length bound; both decoders must
    call it too long, and take one of exactly max_payload."""
    for payload_bytes in range(MAX_PAYLOAD - 2, MAX_PAYLOAD + 6):
        wire = encode_frame(0x06, 3, bytes(range(1, payload_bytes + 1)))
        expected = [Frame(0x06, 3, bytes(range(1, payload_bytes + 1)))] if payload_bytes <= MAX_PAYLOAD else \
            [BadFrame("too_long", len(wire) - 2)]
        assert FrameDecoder(MAX_PAYLOAD).feed(wire) == expected, payload_bytes
        assert c_decode(lib, wire) == expected, payload_bytes


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.one_of(st.binary(max_size=600),
                                                              st.integers(250, 520).map(lambda n: b"\x07" * n)))
def test_c_encoder_writes_the_python_bytes(lib, frame_type, seq, payload):
    out = ctypes.create_string_buffer(max_encoded_size(len(payload)))
    n = lib.ef_frame_encode(frame_type, seq, payload, len(payload), out)
    assert lib.ef_max_encoded_size(len(payload)) == max_encoded_size(len(payload))
    assert out.raw[:n] == encode_frame(frame_type, seq, payload)


def _tiny_board_image() -> bytes:
    """A valid board image of a 16-8-4 model with 3 classes (random weights, no masters): the seed that lets
    the fuzzer reach the image checks and training."""
    rng = np.random.default_rng(0)
    sizes, n = [16, 8, 4], 3
    tensors = {"gamma_q": np.array([64, 32], np.int32)}
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        tensors |= {f"layers.{i}.weight": rng.integers(-127, 128, (d_out, d_in)).astype(np.int8),
                    f"layers.{i}.bias": rng.integers(-500, 500, d_out).astype(np.int32),
                    f"layers.{i}.multiplier": np.full(d_out, 1 << 30, np.int32),
                    f"layers.{i}.shift": np.full(d_out, -6, np.int32),
                    f"layers.{i}.goodness_multiplier": np.array([1 << 30], np.int32),
                    f"layers.{i}.goodness_shift": np.array([-2], np.int32)}
    tensors |= {"head.weight": rng.integers(-127, 128, (n, 12)).astype(np.int8), "head.bias": np.zeros(n, np.int32),
                "head.multiplier": np.full(n, 1 << 30, np.int32), "head.shift": np.full(n, -7, np.int32)}
    header = {"architecture": {"sizes": sizes, "n_classes": n, "eval_layers": [1, 2], "head_layers": [1, 2],
                               "collab_mode": "adaptive"},
              "quantization": {"label_q": 127, "neutral_label_q": -85, "goodness_frac_bits": 12,
                               "layers": [{"out_zero_point": -128}, {"out_zero_point": -128}]}}
    return pack_image(tensors, header)


def _aligned(*arrays) -> bytes:
    """Little-endian arrays, each padded to the board image's 8-byte boundary."""
    out = b""
    for a in arrays:
        out += a.astype(a.dtype.newbyteorder("<")).tobytes()
        out += bytes(-len(out) % 8)
    return out


def _tiny_conv_image() -> bytes:
    """A valid format-2 board image of one trained conv2d block (6x6 grey -> 3x3 kernel -> 4x4x2, 2 classes, its
    own head), written field by field: a few hundred bytes, so that a fuzz input of a whole session stays under
    libFuzzer's max_len and reaches the CwC image check, training and inference."""
    rng = np.random.default_rng(1)
    weight = rng.integers(-127, 128, (2, 3, 3, 1)).astype(np.int8)
    bias = rng.integers(-500, 500, 2).astype(np.int32)
    header = LAYERED_FIXED.pack(b"EFFB", m.LAYERED_MODEL_FORMAT, 1, 2, 0, 12, 1, 1, 1, 0)
    header += LAYERED_LAYER.pack(KINDS.index("conv2d"), -128, 1, 6, 6, 2, 4, 4, 1 << 30, 0)
    header += CONV_RECORD.pack(3, 1, 0, 1, 0, -128, 20, 20)   # kernel, stride, padding, pool, explicit_pad, act_min,
    header += bytes(-len(header) % 8)                         # step shifts
    return header + _aligned(weight, bias, np.full(2, 1 << 30, np.int32), np.full(2, -6, np.int32),
                             np.full(1, -128, np.int8), weight.astype(np.int16) * 256, bias.astype(np.int64) * 256,
                             np.full((2, 2), 1 << 20, np.int64), rng.integers(-127, 128, (2, 32)).astype(np.int8),
                             np.zeros(2, np.int32), np.full(2, 1 << 30, np.int32), np.full(2, -7, np.int32))


def _record(frame_type: int, payload: bytes = b"") -> bytes:
    """One record of the fuzz input that fuzz_protocol.c sends as a valid frame."""
    return bytes([1, len(payload) + 1, frame_type]) + payload


def _seed_session(image: bytes, configure: bytes, inputs: int) -> bytes:
    """A whole session as fuzz records: load the tiny model, configure, stage, train, infer, read,
    checkpoint, reset."""
    out = _record(m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION))
    out += _record(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)))
    for offset in range(0, len(image), 200):
        out += _record(m.Request.LOAD_CHUNK, m.OFFSET.pack(offset) + image[offset:offset + 200])
    out += _record(m.Request.LOAD_END)
    out += _record(m.Request.CONFIGURE, configure)
    record = bytes([1, 0xFF]) + bytes(7 * i % 256 for i in range(inputs))
    for index in range(2):
        out += _record(m.Request.STAGE, m.STAGE.pack(index, 0) + record)
        out += _record(m.Request.TRAIN, m.TRAIN.pack(index, crc32(record)))
    out += _record(m.Request.STAGE, m.STAGE.pack(2, 0) + record)
    out += _record(m.Request.INFER, m.INFER.pack(2, crc32(record)))
    out += _record(m.Request.READ, m.READ.pack(0, 200)) + _record(m.Request.CHECKPOINT) + _record(m.Request.RESET)
    return out + _record(m.Request.METRICS)


# the seed sessions: an FF MLP (format 1) and a conv block (format 2), each trained twice
SESSIONS = {
    "mlp": lambda: _seed_session(_tiny_board_image(),
                                 configure_payload(IntTrainingConfig(lr_shift=8, negatives="hard"), 12, 7), 16),
    "conv": lambda: _seed_session(_tiny_conv_image(), configure_payload(
        IntTrainingConfig(lr_shift=8), 12, 7, model_format=m.LAYERED_MODEL_FORMAT), 36),
}


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_the_fuzz_seed_session_trains(tmp_path, session):
    """Each seed really reaches training: the host build of the board answers it with two TRAINED replies (the
    conv image is one the host's unpack_image takes)."""
    so = tmp_path / "host_board.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-fPIC", "-shared", f"-I{KERNELS}", f"-I{PROTOCOL}",
                    *map(str, sorted(KERNELS.glob("*.c"))), *(str(PROTOCOL / f) for f in BOARD_SOURCES),
                    "-o", str(so)], check=True)
    lib = ctypes.CDLL(str(so))
    lib.ef_host_board_feed.restype = ctypes.c_uint32
    assert lib.ef_host_board_init(256, 8192, 2048, 1) == 0
    if session == "conv":
        unpack_image(_tiny_conv_image())
    seed, wire, seq = SESSIONS[session](), b"", 0
    pos = 0
    while pos < len(seed):
        length = seed[pos + 1]
        body = seed[pos + 2:pos + 2 + length]
        seq += 1
        wire += encode_frame(body[0], seq, body[1:])
        pos += 2 + length
    out = ctypes.create_string_buffer(1 << 16)
    n = lib.ef_host_board_feed(wire, len(wire), out, len(out))
    replies = FrameDecoder(4096).feed(out.raw[:n])
    assert [r.type for r in replies].count(m.Reply.TRAINED) == 2 and replies[-1].type == m.Reply.METRICS
    applied, *_, frames_ok, _, _ = m.METRICS.unpack(replies[-1].payload)
    assert (applied, frames_ok) == (2, 1)      # RESET rebooted (counters gone) into the checkpoint after 2


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (with libFuzzer) is not installed")
def test_protocol_survives_a_million_fuzzed_inputs(tmp_path):
    exe = tmp_path / "fuzz_protocol"
    sources = [*map(str, sorted(KERNELS.glob("*.c"))), *(str(PROTOCOL / f) for f in BOARD_SOURCES),
               str(PROTOCOL / "fuzz_protocol.c")]
    build = subprocess.run(["clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
                            f"-I{KERNELS}", f"-I{PROTOCOL}", *sources, "-o", str(exe)],
                           capture_output=True, text=True)
    if build.returncode != 0 and "fuzzer" in build.stderr:
        pytest.skip(f"clang has no libFuzzer here: {build.stderr.strip()[:200]}")
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, session in SESSIONS.items():
        (corpus / f"session-{name}").write_bytes(session())
    raw = encode_frame(1, 5, b"hello\x00world") + encode_frame(7, 0xFFFF, bytes(range(60)))
    (corpus / "frames").write_bytes(bytes([0, len(raw)]) + raw)
    (corpus / "garbage").write_bytes(bytes([2, 9]) + b"\x00\x03ab\x00" + encode_frame(3, 0, b""))
    # a million executions: two fuzzing processes of half a million each, side by side (one per core), with
    # fixed seeds so that a run can be repeated; each mutates its own copy of the corpus
    runs = []
    for seed in (1, 2):
        own = tmp_path / f"corpus-{seed}"
        shutil.copytree(corpus, own)
        with open(tmp_path / f"fuzz-{seed}.log", "w") as log:   # a file: a full pipe would stall the fuzzer
            runs.append(subprocess.Popen([str(exe), "-runs=500000", "-max_len=4096", f"-seed={seed}", str(own)],
                                         stdout=subprocess.DEVNULL, stderr=log))
    for run in runs:
        run.wait(timeout=900)
    logs = [(tmp_path / f"fuzz-{seed}.log").read_text() for seed in (1, 2)]
    assert all(run.returncode == 0 for run in runs), "".join(log[-3000:] for log in logs)
    assert all("Done 500000 runs" in log for log in logs), "".join(log[-3000:] for log in logs)
