"""The firmware's protocol (edgeff/csrc/protocol/board_protocol.c with board_image.c and the kernel library),
built for this host, against the virtual board (firmware_bridge/board.py, the specification): random
request sequences (loads whole, partial or damaged, with and without master weights; configurations;
staging (chunks in any order, some missing, for the next samples, stale, too far ahead, into a slot that held
another sample), training and inference with good and bad records and indices; reads; checkpoints, restores and
resets; garbage) must get the same reply from both, byte for byte, except for what differs by design: the
board's name, memory figures, error messages and compute time."""
import ctypes
import random
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edgeff.csrc import KERNELS, PROTOCOL
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.profiler.hw_profile import load_profile
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig, load_trainer, trainer_tensors
from firmware_bridge import messages as m
from firmware_bridge.board import BoardCore
from firmware_bridge.board_export import scratch_bytes
from firmware_bridge.board_image import pack_image, unpack_image
from firmware_bridge.board_training import configure_payload
from firmware_bridge.framing import Frame, FrameDecoder, crc32, encode_frame
from tests.test_board_image_layered import _corruptions, padded, pooled  # noqa: F401 (module fixtures, by name)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")

MAX_PAYLOAD = 256
SOURCES = [*sorted(KERNELS.glob("*.c")),
           *(PROTOCOL / n for n in ("framing.c", "board_image.c", "cwc_image.c", "board_protocol.c", "host_board.c"))]


def build_host_board(directory):
    """The firmware's protocol built for this host (host_board.c), loaded through ctypes."""
    so = directory / "host_board.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
                    f"-I{KERNELS}", f"-I{PROTOCOL}", *map(str, SOURCES), "-o", str(so)],
                   check=True)
    lib = ctypes.CDLL(str(so))
    lib.ef_host_board_feed.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_char_p, ctypes.c_uint32]
    lib.ef_host_board_feed.restype = ctypes.c_uint32
    return lib


@pytest.fixture(scope="module")
def c_board(tmp_path_factory):
    return build_host_board(tmp_path_factory.mktemp("host-board"))


def _mlp_configure(a: int, b: int) -> bytes:
    config = IntTrainingConfig(lr_shift=(10, 12, 16)[a % 3], loss=("symba", "softplus")[b % 2],
                               negatives=("random", "hard")[a % 2], rounding=("stochastic", "nearest")[b % 3 % 2],
                               seed=b)
    return configure_payload(config, 12, run_id=a)


def _conv_configure(a: int, b: int) -> bytes:
    """A CwC model's CONFIGURE; some with the FF rule's fields (refused) or an lr_shift past the model's largest."""
    if b % 7 == 6:
        return _mlp_configure(a, b)
    config = IntTrainingConfig(lr_shift=(6, 8, 30)[a % 3], rounding=("stochastic", "nearest")[b % 3 % 2], seed=b)
    return configure_payload(config, 12, run_id=a, model_format=m.LAYERED_MODEL_FORMAT)


@pytest.fixture(scope="module")
def material(small_model):
    """Images, labels and board images of the small model: as quantized (no masters), with masters, and
    damaged in ways both boards must refuse."""
    int_path, data_dir = small_model
    tensors, header = load_model(int_path)
    plain = pack_image(tensors, header)
    with_masters = pack_image(trainer_tensors(load_trainer(int_path, IntTrainingConfig())), header)
    bad_multiplier = bytearray(with_masters)
    offset = len(with_masters) - 16 * 4     # inside the head's multipliers (10 classes, 8-byte aligned)
    bad_multiplier[offset:offset + 4] = (5).to_bytes(4, "little")
    padding_set = bytearray(with_masters)   # every padding byte set: both boards must clear them
    for position in _padding(with_masters):
        padding_set[position] = 0xA5
    too_many_classes = bytearray(plain)
    too_many_classes[6] = 200               # more classes than the 144 inputs
    data = load_dataset(data_dir, val_size=100)
    return {"images": data.train.images[:20], "labels": data.train.labels[:20],
            "images_ok": [plain, with_masters, bytes(padding_set)],
            "images_bad": [bytes(bad_multiplier), bytes(too_many_classes), plain[:-8], b"EFFB" + bytes(40)],
            "configure": _mlp_configure}


@pytest.fixture(scope="module")
def conv_material(request):
    """The same for layered CwC models (board image format 2): two tiny conv models trained in every block or the
    last, one with no trained block (it infers, CONFIGURE is refused), and corruptions both boards refuse."""
    _, pooled_path, data_dir, _ = request.getfixturevalue("pooled")
    _, padded_path, _, _ = request.getfixturevalue("padded")
    config = IntTrainingConfig(lr_shift=8)
    images = [pack_image(load_layered_trainer(path, config, last_k).tensors(), load_model(path)[1])
              for path, last_k in ((pooled_path, None), (padded_path, 1))]
    bad = {name: image for name, image, _ in _corruptions(images[1])}
    data = load_dataset(data_dir, val_size=100)
    return {"images": data.train.images[:20], "labels": data.train.labels[:20],
            "images_ok": [*images, pack_image(*load_model(pooled_path))],
            "images_bad": [bad[name] for name in ("format 3", "filter -128", "master", "step shift")],
            "configure": _conv_configure}


def _padding(image: bytes) -> list:
    """The positions of an image's padding bytes: those whose value unpack_image ignores."""
    tensors, header = unpack_image(image)
    out = []
    for position in range(len(image)):
        changed = bytearray(image)
        changed[position] ^= 0xFF
        try:
            t, h = unpack_image(bytes(changed))
        except EdgeFFError:
            continue
        if h == header and all(np.array_equal(t[k], v) for k, v in tensors.items()):
            out.append(position)
    return out


class Pair:
    """The same request to both boards; their replies, compared."""

    def __init__(self, lib, storage):
        self.lib = lib
        assert lib.ef_host_board_init(MAX_PAYLOAD, 64 * 1024, 16 * 1024, 1) == 0
        self.core = BoardCore(load_profile("nrf52840"), storage, max_payload=MAX_PAYLOAD)
        self.seq = 0

    def send(self, wire: bytes):
        out = ctypes.create_string_buffer(1 << 16)
        n = self.lib.ef_host_board_feed(wire, len(wire), out, len(out))
        c_replies = FrameDecoder(1 << 16).feed(out.raw[:n])
        py_replies = [item for chunk in FrameDecoder(MAX_PAYLOAD).feed(wire)
                      for item in FrameDecoder(1 << 16).feed(self.core.handle(chunk))]
        assert len(c_replies) == len(py_replies)
        for c, p in zip(c_replies, py_replies, strict=True):
            _assert_same(c, p)
        return py_replies

    def request(self, request, payload=b""):
        self.seq = (self.seq + 1) & 0x7FFF
        return self.send(encode_frame(request, self.seq, payload))[-1]


def _assert_same(c: Frame, p: Frame):
    assert isinstance(c, Frame) and isinstance(p, Frame) and (c.type, c.seq) == (p.type, p.seq), (c, p)
    if c.type == m.Reply.ERROR:
        assert c.payload[:5] == p.payload[:5], (m.ERROR.unpack_from(c.payload), p.payload)
    elif c.type == m.Reply.INFO:     # version fields, then model format .. image CRC (not memory or names)
        assert c.payload[:5] == p.payload[:5] and c.payload[17:39] == p.payload[17:39], (c.payload, p.payload)
    elif c.type == m.Reply.METRICS:  # all but the compute time
        assert c.payload[:16] == p.payload[:16] and c.payload[24:] == p.payload[24:], (c.payload, p.payload)
    else:
        assert c.payload == p.payload, (c, p)


def _chunks(data: bytes, size: int):
    return [(o, data[o:o + size]) for o in range(0, len(data), size)]


def _run(pair: Pair, material: dict, program: list):
    images, labels = material["images"], material["labels"]
    applied, reads = 0, []
    for op, a, b in program:
        rng = random.Random(a * 7919 + b)
        if op == "load":
            image = (material["images_ok"] + material["images_bad"])[a % 7]
            if b % 5 == 0:                                   # damaged on the way: the CRC catches it
                at = len(image) // 2
                image = image[:at] + bytes([image[at] ^ 1]) + image[at + 1:]
            pair.request(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32((material["images_ok"] +
                                                                                     material["images_bad"])[a % 7])))
            chunks = _chunks(image, 16 + b % (MAX_PAYLOAD - 20))
            for offset, chunk in chunks[:len(chunks) if b % 7 else len(chunks) // 2]:
                pair.request(m.Request.LOAD_CHUNK, m.OFFSET.pack(offset) + chunk)
            if b % 3 == 0:                                   # what a board that is loading says
                pair.request(m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION))
            pair.request(m.Request.LOAD_END)
            applied = 0
        elif op == "configure":
            payload = material["configure"](a, b)
            if b % 11 == 0:
                payload = payload[:4] + bytes([3]) + payload[5:]        # lr_shift out of range
            reply = pair.request(m.Request.CONFIGURE, payload)
            applied = m.OK.unpack(reply.payload)[0] if reply.type == m.Reply.OK else applied
        elif op in ("train", "infer"):
            i = a % len(images)
            negative = m.NO_NEGATIVE if b % 3 else (int(labels[i]) + (b % 19 != 0) * (1 + b % 9)) % 10   # or the label
            record = bytes([int(labels[i]) if b % 13 else 12, negative]) + images[i].tobytes()
            index = max(applied + (b % 5 == 1) - (b % 5 == 2), 0)
            # staged as the TRAIN's index, or as one a slot ahead (the slot reused for another sample), or as
            # one too far ahead; its chunks in order or shuffled, one of them sometimes missing
            staged_as = index + (b % 23 == 0) * (b % 3 + 1) * (m.STAGING_SLOTS - 1) + (op == "infer") * (b % 4)
            chunks = _chunks(record, 40 + b % 200)
            if b % 4 == 0:
                rng.shuffle(chunks)
            for offset, chunk in chunks[b % 29 == 0:]:
                pair.request(m.Request.STAGE, m.STAGE.pack(staged_as, offset) + chunk)
            if b % 7 == 3:                                   # a late resend for a sample applied already
                pair.request(m.Request.STAGE, m.STAGE.pack(max(applied - 1 - b % 3, 0), 0) + record[:9])
            crc = crc32(record) ^ (b % 17 == 0)
            if op == "infer":   # sometimes as the empty slots' tag, which names no sample
                pair.request(m.Request.INFER, m.INFER.pack(m.EMPTY_SLOT if b % 31 == 5 else staged_as, crc))
                continue
            reply = pair.request(m.Request.TRAIN, m.TRAIN.pack(index, crc))
            if reply.type == m.Reply.TRAINED:
                applied = m.TRAINED.unpack(reply.payload)[0]
            elif m.ERROR.unpack_from(reply.payload)[0] == m.ErrorCode.SEQUENCE:
                applied = m.ERROR.unpack_from(reply.payload)[1]        # follow the board, as the host does
        elif op == "read":
            reply = pair.request(m.Request.READ, m.READ.pack(a % 9000, b % 300))
            reads.append(reply.type == m.Reply.DATA)
        elif op == "control":
            request = (m.Request.HELLO, m.Request.METRICS, m.Request.CHECKPOINT, m.Request.RESTORE,
                       m.Request.RESET, m.Request.LOAD_END)[a % 6]
            hello = m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION)
            reply = pair.request(request, hello if request == m.Request.HELLO else b"")
            if request in (m.Request.RESTORE, m.Request.RESET):
                applied = m.OK.unpack(reply.payload)[0]
        else:                                                # garbage and requests of any type and length
            pair.send(bytes(rng.randrange(256) for _ in range(b % 40)) + b"\x00")
            pair.request(a % 20, bytes(rng.randrange(256) for _ in range(b % 30)))
    return reads


OPS = st.sampled_from(["load", "configure", "train", "train", "train", "infer", "read", "control", "garbage"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])   # no shrinking: each example is a long run
@given(st.lists(st.tuples(OPS, st.integers(0, 10_000), st.integers(0, 10_000)), min_size=5, max_size=40))
def test_c_board_answers_as_the_virtual_board(c_board, material, program):
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        _run(pair, material, [("load", 1, 1), ("configure", 0, 1)] + program)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.lists(st.tuples(OPS, st.integers(0, 10_000), st.integers(0, 10_000)), min_size=5, max_size=40))
def test_c_board_answers_as_the_virtual_board_with_a_conv_model(c_board, conv_material, program):
    """The same random sequences on layered CwC models (format 2), a model of the other format loaded among them."""
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        _run(pair, conv_material, [("load", 0, 1), ("configure", 0, 1)] + program)


def test_both_boards_refuse_a_sample_by_its_labels(c_board, material):
    """A label outside the classes, or a negative label equal to the label, is refused by both boards with
    BAD_RANGE (the record arrived whole: staging it again cannot help), and nothing is applied."""
    image = material["images"][0].tobytes()
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        _run(pair, material, [("load", 1, 1), ("configure", 0, 1)])
        for label, negative in ((3, 3), (0, 0), (10, 2), (4, 10)):
            record = bytes([label, negative]) + image
            pair.request(m.Request.STAGE, m.STAGE.pack(0, 0) + record)
            reply = pair.request(m.Request.TRAIN, m.TRAIN.pack(0, crc32(record)))
            assert reply.type == m.Reply.ERROR, (label, negative)
            assert m.ERROR.unpack_from(reply.payload) == (m.ErrorCode.BAD_RANGE, label << 8 | negative)
        assert pair.core.applied == 0


def _clean(b: int, board_negative: bool) -> int:
    """The first b' >= b that _run turns into a good sample: right index, labels and CRC."""
    while b % 5 in (1, 2) or b % 13 == 0 or b % 17 == 0 or b % 19 == 0 or b % 23 == 0 or b % 29 == 0 \
            or (b % 3 == 0) == board_negative:
        b += 1
    return b


def test_c_board_trains_a_long_run_identically(c_board, material):
    """A whole run: load without masters, 30 samples with board-drawn hard negatives, a checkpoint, a reset
    (back to it), a reload with masters and 30 samples with board-drawn random and host negatives; the
    images read back are equal throughout."""
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        program = [("load", 0, 1), ("configure", 1, 1)] + [("train", s, _clean(3 * s, True)) for s in range(30)]
        program += [("control", 2, 0), ("train", 31, _clean(4, True)), ("control", 4, 0), ("read", 0, 240),
                    ("load", 2, 1), ("configure", 2, 2)]
        program += [("train", s, _clean(s * 11, s % 2 == 0)) for s in range(30)] + [("infer", 3, 1)]
        program += [("read", o, 240) for o in range(0, 8000, 240)]
        reads = _run(pair, material, program)
        assert sum(reads) == len(range(0, 8000, 240)) + 1    # the whole image, read back equal
        assert pair.core.applied == 30 and pair.core.trainer.step_count == 30
        assert pair.core.trainer.config.negatives == "random" and pair.core.correct > 15


def test_c_board_trains_a_conv_run_identically(c_board, conv_material):
    """A whole run of a layered CwC model: 20 samples, inference, a checkpoint, a reset back to it and 10 more, the
    images read back equal on both boards throughout (the trained blocks and the step)."""
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        program = [("load", 0, 1), ("configure", 1, 1)] + [("train", s, _clean(3 * s, True)) for s in range(20)]
        program += [("infer", 2, 1), ("control", 2, 0), ("train", 21, _clean(5, True)), ("control", 4, 0)]
        program += [("train", s, _clean(7 * s, True)) for s in range(10)]
        program += [("read", o, 240) for o in range(0, 9000, 240)]
        reads = _run(pair, conv_material, program)
        assert sum(reads) > 10 and pair.core.applied == 30 and pair.core.trainer.step_count == 30


def test_the_empty_slots_tag_names_no_sample(c_board, material):
    """Whole records staged in every slot, then a new configuration empties the slots: INFER of the empty
    slots' tag finds nothing staged on both boards, as for any index (the C board keeps a slot's byte count
    beside its tag, and an emptied slot must not keep its old count)."""
    images, labels = material["images"], material["labels"]
    records = [bytes([int(labels[i]), m.NO_NEGATIVE]) + images[i].tobytes() for i in range(m.STAGING_SLOTS)]
    with tempfile.TemporaryDirectory() as storage:
        pair = Pair(c_board, storage)
        _run(pair, material, [("load", 1, 1), ("configure", 0, 1)])
        for index, record in enumerate(records):
            pair.request(m.Request.STAGE, m.STAGE.pack(index, 0) + record)
        _run(pair, material, [("configure", 1, 2)])
        for crc in (crc32(records[-1]), crc32(records[-1]) ^ 1):
            reply = pair.request(m.Request.INFER, m.INFER.pack(m.EMPTY_SLOT, crc))
            assert reply.type == m.Reply.ERROR and m.ERROR.unpack_from(reply.payload)[:2] == (m.ErrorCode.BAD_SAMPLE, 0)


def test_the_exporters_scratch_figure_is_the_c_boards(c_board, material, small_model):
    """board_export.scratch_bytes, which refuses at export a model the firmware's scratch cannot train, counts
    what the C board's image check counts: a scratch of exactly that size takes the model, one byte less is
    refused with NO_MEMORY and the bytes needed."""
    arch = load_model(small_model[0])[1]["architecture"]
    image, need = material["images_ok"][1], scratch_bytes(arch)

    def load(scratch: int) -> Frame:
        assert c_board.ef_host_board_init(MAX_PAYLOAD, 64 * 1024, scratch, 1) == 0
        frames = [encode_frame(m.Request.LOAD_BEGIN, 1, m.LOAD_BEGIN.pack(len(image), crc32(image)))]
        frames += [encode_frame(m.Request.LOAD_CHUNK, 2 + i, m.OFFSET.pack(offset) + chunk)
                   for i, (offset, chunk) in enumerate(_chunks(image, MAX_PAYLOAD - m.OFFSET.size))]
        wire = b"".join(frames) + encode_frame(m.Request.LOAD_END, 999, b"")
        out = ctypes.create_string_buffer(1 << 16)
        n = c_board.ef_host_board_feed(wire, len(wire), out, len(out))
        return FrameDecoder(1 << 16).feed(out.raw[:n])[-1]

    assert load(need).type == m.Reply.OK
    refused = load(need - 1)
    assert refused.type == m.Reply.ERROR
    assert m.ERROR.unpack_from(refused.payload)[:2] == (m.ErrorCode.NO_MEMORY, len(image) + need)
