"""The firmware's protocol with a layered CwC model (board image format 2: edgeff/csrc/protocol/board_protocol.c over
cwc_image.c and cwc_model.c), built for this host, against the NumPy trainer: over frames, a tiny conv model loaded,
configured and trained sample by sample answers TRAINED with the decision before each update as IntLayeredTrainer's,
SCORES with the model's decision, one-pass class and class goodness, and READ with exactly the image pack_image
writes for the trainer's tensors and step, through a checkpoint and a reset too; and every format-2 refusal of
PROTOCOL.md ("Format 2 over the link") comes with its code and detail."""
import ctypes
import random

import numpy as np
import pytest

from edgeff.model_file import load_model
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import LR_SHIFT_RANGE, IntTrainingConfig
from firmware_bridge import messages as m
from firmware_bridge.board_export import layered_scratch_bytes
from firmware_bridge.board_image import pack_image
from firmware_bridge.board_training import configure_payload
from firmware_bridge.framing import FrameDecoder, crc32, encode_frame
from tests.test_board_image_layered import padded, pooled  # noqa: F401 (module fixtures, by name)
from tests.test_board_protocol_c import MAX_PAYLOAD, _chunks, build_host_board
from tests.test_cwc_firmware import _samples

IMAGE_CAPACITY, SCRATCH_CAPACITY = 64 * 1024, 64 * 1024


@pytest.fixture(scope="module")
def c_board(tmp_path_factory):
    return build_host_board(tmp_path_factory.mktemp("host-board-cwc"))


class CBoard:
    """The host build of the firmware's board, spoken to in frames."""

    def __init__(self, lib, image_capacity=IMAGE_CAPACITY, scratch_capacity=SCRATCH_CAPACITY):
        assert lib.ef_host_board_init(MAX_PAYLOAD, image_capacity, scratch_capacity, 1) == 0
        self.lib, self.seq = lib, 0

    def request(self, request, payload=b""):
        self.seq += 1
        wire = encode_frame(request, self.seq, payload)
        out = ctypes.create_string_buffer(1 << 16)
        n = self.lib.ef_host_board_feed(wire, len(wire), out, len(out))
        (reply,) = FrameDecoder(1 << 16).feed(out.raw[:n])
        assert reply.seq == self.seq
        return reply

    def expect(self, request, payload, reply_type, layout):
        reply = self.request(request, payload)
        assert reply.type == reply_type, (reply, _error(reply) if reply.type == m.Reply.ERROR else None)
        return layout.unpack_from(reply.payload)

    def refused(self, request, payload=b"") -> tuple:
        """(code, detail) of the ERROR the request gets."""
        reply = self.request(request, payload)
        assert reply.type == m.Reply.ERROR, reply
        return _error(reply)

    def load(self, image: bytes):
        """The reply to LOAD_END after the whole image went over in chunks."""
        assert self.expect(m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)), m.Reply.OK, m.OK) == (0,)
        for offset, chunk in _chunks(image, MAX_PAYLOAD - m.OFFSET.size):
            self.expect(m.Request.LOAD_CHUNK, m.OFFSET.pack(offset) + chunk, m.Reply.OK, m.OK)
        return self.request(m.Request.LOAD_END)

    def stage(self, index: int, record: bytes, rng: random.Random):
        chunks = _chunks(record, 50)
        rng.shuffle(chunks)
        for offset, chunk in chunks:
            self.expect(m.Request.STAGE, m.STAGE.pack(index, offset) + chunk, m.Reply.STAGED, m.STAGED)

    def infer(self, index: int, pixels: np.ndarray, n_classes: int, rng: random.Random) -> tuple:
        """(decision, one-pass class, scores) of the board for an image staged as sample `index`."""
        record = bytes([0, m.NO_NEGATIVE]) + pixels.tobytes()
        self.stage(index, record, rng)
        reply = self.request(m.Request.INFER, m.INFER.pack(index, crc32(record)))
        assert reply.type == m.Reply.SCORES and len(reply.payload) == m.SCORES.size + 4 * n_classes, reply
        decision, one_pass = m.SCORES.unpack_from(reply.payload)
        return decision, one_pass, np.frombuffer(reply.payload, "<i4", n_classes, m.SCORES.size)

    def read(self) -> bytes:
        out, total = b"", None
        while total is None or len(out) < total:
            reply = self.request(m.Request.READ, m.READ.pack(len(out), MAX_PAYLOAD - m.DATA.size))
            assert reply.type == m.Reply.DATA
            offset, total = m.DATA.unpack_from(reply.payload)
            assert offset == len(out)
            out += reply.payload[m.DATA.size:]
        return out


def _error(reply) -> tuple:
    return tuple(m.ERROR.unpack_from(reply.payload))


def _configure(config: IntTrainingConfig, **fields) -> bytes:
    """CONFIGURE for a CwC model as the host sends it (the FF loss's fields 0), with the fields given changed."""
    values = dict(zip(m.CONFIGURE.fields, m.CONFIGURE.unpack(
        configure_payload(config, 12, run_id=1, model_format=m.LAYERED_MODEL_FORMAT)), strict=True)) | fields
    return m.CONFIGURE.pack(*values.values())


def _trainer(path, config, last_k):
    trainer = load_layered_trainer(path, config, last_k)
    header = load_model(path)[1]
    return trainer, header, pack_image(trainer.tensors(), {**header, "int_training": {"step": 0}})


def _record(label: int, pixels: np.ndarray, negative=m.NO_NEGATIVE) -> bytes:
    return bytes([label, negative]) + pixels.tobytes()


def _runtime_infer(model, pixels: np.ndarray) -> tuple:
    scores = model.multi_pass_scores(pixels[None])[0]
    return int(scores.argmax()), int(model.head_logits(pixels[None])[0].argmax()), scores


@pytest.mark.parametrize("case, last_k, rounding", [("pooled", None, "stochastic"), ("pooled", 1, "stochastic"),
                                                     ("padded", None, "nearest"), ("padded", 1, "stochastic")])
def test_the_c_board_trains_a_conv_model_as_the_trainer(c_board, case, last_k, rounding, request):
    _, path, data, _ = request.getfixturevalue(case)
    config = IntTrainingConfig(lr_shift=8, rounding=rounding, seed=5)
    trainer, header, image = _trainer(path, config, last_k)
    test_images, images, labels = _samples(data, 4, 16)
    n, rng = trainer.model.n_classes, random.Random(3)
    board = CBoard(c_board)
    assert board.load(image).type == m.Reply.OK
    info = m.INFO.unpack(board.request(m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION)).payload)
    assert (info[m.INFO.fields.index("image_bytes")], info[m.INFO.fields.index("image_crc")]) == \
           (len(image), crc32(image))   # installed as sent: no masters added, no byte changed
    assert m.formats_in(info[m.INFO.fields.index("model_format")]) == [m.MODEL_FORMAT, m.LAYERED_MODEL_FORMAT]
    assert board.expect(m.Request.CONFIGURE, _configure(config), m.Reply.OK, m.OK) == (0,)

    def train(first: int, count: int):
        for i in range(first, first + count):
            record = _record(int(labels[i]), images[i])
            board.stage(i, record, rng)
            got = board.expect(m.Request.TRAIN, m.TRAIN.pack(i, crc32(record)), m.Reply.TRAINED, m.TRAINED)
            assert got == (i + 1, trainer.step(images[i][None], np.array([labels[i]]))["correct"], 0)
        again = board.expect(m.Request.TRAIN, m.TRAIN.pack(first, crc32(record)), m.Reply.TRAINED, m.TRAINED)
        assert again == (first + count, 0, 1)   # a duplicate, not applied again

    def same_model():
        for k, pixels in enumerate(test_images):
            want = _runtime_infer(trainer.model, pixels)
            for _ in range(2):   # INFER again on the same staged record: a pass leaves its pixels as staged
                decision, one_pass, scores = board.infer(trainer.step_count, pixels, n, rng)
                assert (decision, one_pass) == want[:2] and np.array_equal(scores, want[2]), k
        want = pack_image(trainer.tensors(), {**header, "int_training": {"step": trainer.step_count}})
        assert board.read() == want

    before = {k: v.copy() for k, v in trainer.tensors().items()}
    train(0, 10)
    assert any(not np.array_equal(v, before[k]) for k, v in trainer.tensors().items())   # the steps moved the state
    same_model()
    assert board.expect(m.Request.CHECKPOINT, b"", m.Reply.OK, m.OK) == (10,)
    train(10, 2)
    assert board.expect(m.Request.RESET, b"", m.Reply.OK, m.OK) == (10,)   # back to the checkpoint, then a reboot
    trainer, _, _ = _trainer(path, config, last_k)   # the trainer replayed to the checkpoint's 10 samples
    for x, y in zip(images[:10], labels[:10], strict=True):
        trainer.step(x[None], np.array([y]))
    assert board.read() == pack_image(trainer.tensors(), {**header, "int_training": {"step": 10}})
    train(10, 6)   # the restored state trains on as the trainer does
    same_model()


def test_configure_refuses_what_a_cwc_model_has_not(c_board, request):
    _, path, _, _ = request.getfixturevalue("pooled")
    config = IntTrainingConfig(lr_shift=8)
    _, _, image = _trainer(path, config, None)
    board = CBoard(c_board)
    assert board.load(image).type == m.Reply.OK
    for field, value in (("gamma_shift", 4), ("loss", 1), ("negatives", 1), ("sigmoid_multiplier", 1 << 30),
                         ("sigmoid_shift", -3), ("theta_q", 100), ("rounding", 2)):
        got = board.refused(m.Request.CONFIGURE, _configure(config, **{field: value}))
        assert got == (m.ErrorCode.BAD_RANGE, 0), field
    assert board.expect(m.Request.CONFIGURE, _configure(config), m.Reply.OK, m.OK) == (0,)


@pytest.mark.parametrize("last_k", [None, 1])
def test_an_lr_shift_past_the_step_shifts_bound_is_refused_with_the_largest(c_board, last_k, request):
    """lr_shift + the trained blocks' largest step shift may not pass 62: the largest lr_shift IntLayeredTrainer
    takes is configured; one more, and one outside LR_SHIFT_RANGE, is refused with that largest."""
    _, path, _, _ = request.getfixturevalue("pooled")
    trainer, _, image = _trainer(path, IntTrainingConfig(lr_shift=8), last_k)
    largest = 62 - max(max(s.weight_shift, s.bias_shift) for s in trainer.scales.values())
    assert LR_SHIFT_RANGE[0] <= largest < LR_SHIFT_RANGE[1]   # the bound, not the range, refuses largest + 1
    board = CBoard(c_board)
    assert board.load(image).type == m.Reply.OK
    for lr_shift in (largest + 1, LR_SHIFT_RANGE[1] + 1, LR_SHIFT_RANGE[0] - 1):   # every refusal names the largest
        assert board.refused(m.Request.CONFIGURE, _configure(IntTrainingConfig(lr_shift=8), lr_shift=lr_shift)) == \
               (m.ErrorCode.BAD_RANGE, largest), lr_shift
    assert board.expect(m.Request.CONFIGURE, _configure(IntTrainingConfig(lr_shift=largest)), m.Reply.OK,
                        m.OK) == (0,)


def test_a_model_with_no_trained_block_infers_but_is_not_configured(c_board, request):
    _, path, data, _ = request.getfixturevalue("pooled")
    tensors, header = load_model(path)   # a quantized model: no masters
    board = CBoard(c_board)
    assert board.load(pack_image(tensors, header)).type == m.Reply.OK
    trainer, _, _ = _trainer(path, IntTrainingConfig(lr_shift=8), None)
    test_images, _, _ = _samples(data, 3, 0)
    for pixels in test_images:
        decision, one_pass, scores = board.infer(0, pixels, trainer.model.n_classes, random.Random(1))
        want = _runtime_infer(trainer.model, pixels)
        assert (decision, one_pass) == want[:2] and np.array_equal(scores, want[2])
    assert board.refused(m.Request.CONFIGURE, _configure(IntTrainingConfig(lr_shift=8)))[0] == \
           m.ErrorCode.BAD_STATE


def test_a_sample_with_a_negative_label_or_a_label_past_the_classes_is_refused(c_board, request):
    _, path, data, _ = request.getfixturevalue("pooled")
    config = IntTrainingConfig(lr_shift=8)
    trainer, _, image = _trainer(path, config, None)
    _, images, _ = _samples(data, 0, 1)
    board = CBoard(c_board)
    assert board.load(image).type == m.Reply.OK
    board.expect(m.Request.CONFIGURE, _configure(config), m.Reply.OK, m.OK)
    n = trainer.model.n_classes
    for label, negative in ((1, 2), (1, 1), (n, m.NO_NEGATIVE), (200, 0)):
        record = _record(label, images[0], negative)
        board.stage(0, record, random.Random(0))
        assert board.refused(m.Request.TRAIN, m.TRAIN.pack(0, crc32(record))) == \
               (m.ErrorCode.BAD_RANGE, label << 8 | negative), (label, negative)
    metrics = board.expect(m.Request.METRICS, b"", m.Reply.METRICS, m.METRICS)
    assert metrics[0] == 0   # nothing applied


@pytest.mark.parametrize("case", ["pooled", "padded"])
def test_a_model_over_the_boards_ram_is_refused_with_the_bytes_it_needs(c_board, case, request):
    """The bytes needed are the image, the plan's working buffers and the staging slots, as the board-header export
    counts them (board_export.layered_scratch_bytes; no convolution scratch: this host's portable kernel needs
    none): a scratch of exactly that takes the model (and INFO's free RAM is what is left: none), one byte less is
    NO_MEMORY with that need."""
    _, path, _, _ = request.getfixturevalue(case)
    trainer, _, image = _trainer(path, IntTrainingConfig(lr_shift=8), None)
    scratch = layered_scratch_bytes(trainer.model, trainer.trained, dsp=False)
    board = CBoard(c_board, len(image), scratch)
    assert board.load(image).type == m.Reply.OK
    info = m.INFO.unpack(board.request(m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION)).payload)
    assert info[m.INFO.fields.index("sram_free")] == 0
    assert _error(CBoard(c_board, len(image), scratch - 1).load(image)) == (m.ErrorCode.NO_MEMORY, len(image) + scratch)
