"""A layered CwC (conv) model on a board, board image format 2 over the serial protocol (PROTOCOL.md, "Format 2
over the link"): `edgeff board train` of the last block and of every block, both roundings, over a real socket to
the virtual board, ends on the NumPy runtime's bits, and `edgeff board pull` writes them back as a model file; a
run broken by a RESET and a new host, or by a power cut of the board, resumes bit-identically; INFER is the
runtime's decision, head class and scores, and `board info` lists both formats; the board refuses what a CwC
model cannot take (the FF rule's settings, too large an lr_shift, a negative label, training an image with no
trained block, a model over its RAM), and the host refuses a conv model for a board that takes format 1 only,
before it loads anything."""
import json
import threading

import pytest

from edgeff.app.options import dataset_of
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.profiler.hw_profile import load_profile, profile_from_dict
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import LR_SHIFT_RANGE, IntTrainingConfig
from firmware_bridge import messages as m
from firmware_bridge.board import BoardCore
from firmware_bridge.board_image import pack_image
from firmware_bridge.board_training import (
    SampleStream,
    configure_payload,
    run_id_of,
    runtime_image,
    start_image,
    train_on_board,
)
from firmware_bridge.driver import BoardLink
from firmware_bridge.framing import crc32
from firmware_bridge.virtual_board import VirtualBoard
from tests.conftest import run_cli
from tests.test_cli_hardening import _refused
from tests.test_conv_ptq import PADDED, _quantized
from tests.test_serial_bridge import _ask, _kill_at, _ScriptedBoard, _train

CONFIG = IntTrainingConfig(lr_shift=8, seed=3)


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    """Two padded blocks that pool (14 -> 7 -> 3), quantized with the default batchnorm padding: (int8 path,
    data dir)."""
    _, int_path, data, _ = _quantized(tmp_path_factory, "board-layered", PADDED)
    return int_path, data


def _stream(int_path, data, n=10, epochs=2, seed=1, **kw) -> SampleStream:
    """The samples `edgeff board train --samples n --epochs ... --seed ...` streams."""
    d = dataset_of(load_model(int_path)[1], data)
    return SampleStream(d.train.images, d.train.labels, n, epochs, seed, **kw)


def _core(profile="nrf52840", storage=None) -> BoardCore:
    return BoardCore(profile if not isinstance(profile, str) else load_profile(profile), storage, max_payload=512)


def _load(core, image: bytes):
    """LOAD the image in chunks; the LOAD_END reply."""
    _ask(core, m.Request.LOAD_BEGIN, m.LOAD_BEGIN.pack(len(image), crc32(image)))
    for offset in range(0, len(image), 400):
        _ask(core, m.Request.LOAD_CHUNK, m.OFFSET.pack(offset) + image[offset:offset + 400])
    return _ask(core, m.Request.LOAD_END)


def _error(reply) -> tuple:
    assert reply.type == m.Reply.ERROR, reply
    return m.ERROR.unpack_from(reply.payload)


def _read(core) -> bytes:
    out = b""
    while True:
        reply = _ask(core, m.Request.READ, m.READ.pack(len(out), 400))
        offset, total = m.DATA.unpack_from(reply.payload)
        out += reply.payload[m.DATA.size:]
        if len(out) == total:
            return out


# ---------------------------------------------------------------------- over a real link
@pytest.mark.parametrize("last_k", [1, None], ids=["last-block", "all-blocks"])
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_board_train_and_pull_end_on_the_runtimes_bits(conv, tmp_path, last_k, rounding):
    int_path, data = conv
    config = IntTrainingConfig(lr_shift=8, rounding=rounding, seed=1)
    stream = _stream(int_path, data, n=10, epochs=2, seed=1)
    expected = runtime_image(int_path, stream, config, last_k=last_k)
    assert expected != start_image(int_path, config, last_k)          # the run moves the model
    out, pulled = tmp_path / "trained.safetensors", tmp_path / "pulled.safetensors"
    k = [] if last_k is None else ["--last-k", last_k]
    with VirtualBoard(tmp_path / "flash") as board:
        res = run_cli("board", "train", "--port", board.url, "--model", int_path, "--out", out, *k, "--samples", 10,
                      "--epochs", 2, "--seed", 1, "--lr-shift", 8, "--rounding", rounding, "--data-dir", data,
                      "--checkpoint-every", 7, "--json")
        assert res.returncode == 0, res.stderr
        assert "holds no part of this run" in res.stderr             # progress on stderr, one document on stdout
        result = json.loads(res.stdout)
        assert result["samples"] == 20 and result["board_metrics"]["applied"] == 20
        res = run_cli("board", "pull", "--port", board.url, "--model", int_path, "--out", pulled)
        assert res.returncode == 0, res.stderr
    for path in (out, pulled):
        tensors, header = load_model(path)
        assert pack_image(tensors, header) == expected, path
    trainer = load_layered_trainer(out, config, last_k)           # a layered model file that trains on from here
    assert trainer.step_count == 20 and trainer.trained == ([1] if last_k else [0, 1])
    record = load_model(out)[1]["int_training"]["config"]
    assert record["rule"] == "cwc" and record["trained_layers"] == [i + 1 for i in trainer.trained]


def test_a_run_broken_by_a_reset_and_a_new_host_resumes_on_the_same_bits(conv, tmp_path):
    int_path, data = conv
    stream = _stream(int_path, data, n=16, epochs=1, seed=4)
    image = start_image(int_path, CONFIG, 1)
    run_id = run_id_of(image, CONFIG, 12, stream)
    with VirtualBoard(tmp_path / "flash") as board:
        with BoardLink(board.url) as link:     # a first host applies 9 samples, checkpointed at 6, then a reset
            link.load_image(image)
            link.value(m.Request.CONFIGURE, configure_payload(CONFIG, 12, run_id, m.LAYERED_MODEL_FORMAT))
            for p in range(9):
                link.train(p, stream.record(p))
                if p == 5:
                    link.value(m.Request.CHECKPOINT)
            assert link.value(m.Request.RESET) == 6          # rebooted to its checkpoint
        with BoardLink(board.url) as link:
            assert (link.info.applied, link.info.run_id) == (6, run_id)
            result = train_on_board(link, int_path, stream, CONFIG, quiet=True, last_k=1)
    assert result["samples_sent"] == 10                           # samples 6..15, each applied once
    assert result["image"] == runtime_image(int_path, stream, CONFIG, last_k=1)


def test_a_run_through_a_board_power_cut_resumes_on_the_same_bits(conv, tmp_path):
    """The board process killed and started again mid-run (what was not checkpointed is lost): train_on_board
    reconnects and goes on from the board's checkpoint."""
    int_path, data = conv
    stream = _stream(int_path, data, n=30, epochs=1, seed=2)
    with VirtualBoard(tmp_path / "flash", baud=38400) as board:      # slow enough for the kill to fall mid-run
        killer = threading.Thread(target=_kill_at, args=(board, tmp_path / "flash", [9]), daemon=True)
        with BoardLink(board.url) as link:
            killer.start()
            result = train_on_board(link, int_path, stream, CONFIG, checkpoint_every=4, quiet=True)
        killer.join()
    assert result["resumes"] >= 1
    assert result["image"] == runtime_image(int_path, stream, CONFIG)


def test_infer_is_the_runtimes_decision_head_class_and_scores(conv, tmp_path):
    int_path, data = conv
    stream = _stream(int_path, data, n=6, epochs=1)
    trained = load_layered_trainer(int_path, CONFIG, None)
    for p in range(len(stream)):
        index, _ = stream.sample(p)
        trained.step(stream.images[[index]], stream.labels[[index]])
    model, images = trained.model, stream.images[:6]
    scores, heads = model.multi_pass_scores(images), model.head_logits(images).argmax(axis=1)
    assert len(set(heads.tolist()) | set(scores.argmax(axis=1).tolist())) > 1   # not one class for all
    with VirtualBoard(tmp_path / "flash") as board:
        with BoardLink(board.url) as link:
            result = train_on_board(link, int_path, stream, CONFIG, quiet=True)
            for i, image in enumerate(images):
                assert link.infer(image) == (scores[i].argmax(), heads[i], scores[i].tolist())
        res = run_cli("board", "info", "--port", board.url, "--json")     # the board serves one link at a time
        assert res.returncode == 0 and json.loads(res.stdout)["model_formats"] == [1, 2], res.stderr
    assert result["image"] == runtime_image(int_path, stream, CONFIG)


# ---------------------------------------------------------------------- the board's answers
def test_the_installed_image_is_the_one_sent_and_read_back_unchanged_before_a_step(conv):
    int_path, _ = conv
    image = start_image(int_path, CONFIG, 1)
    core = _core()
    assert _load(core, image).payload == m.OK.pack(len(image))
    info = m.INFO.unpack(_ask(core, m.Request.HELLO, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION)).payload)
    assert info[m.INFO.fields.index("model_format")] == m.format_bit(1) | m.format_bit(2)
    assert info[m.INFO.fields.index("image_crc")] == crc32(image) and _read(core) == image
    assert _ask(core, m.Request.CONFIGURE, configure_payload(CONFIG, 12, 5, m.LAYERED_MODEL_FORMAT)).type == m.Reply.OK
    assert _read(core) == image


@pytest.mark.parametrize("field", ["gamma_shift", "loss", "negatives", "sigmoid_multiplier", "sigmoid_shift",
                                   "theta_q"])
def test_configure_refuses_a_setting_of_the_ff_rule(conv, field):
    core = _core()
    assert _load(core, start_image(conv[0], CONFIG, 1)).type == m.Reply.OK
    values = dict(zip(m.CONFIGURE.fields, m.CONFIGURE.unpack(configure_payload(CONFIG, 12, 5, 2)), strict=True))
    code, _ = _error(_ask(core, m.Request.CONFIGURE, m.CONFIGURE.pack(*{**values, field: 1}.values())))
    assert code == m.ErrorCode.BAD_RANGE and core.trainer is None


def test_configure_refuses_an_lr_shift_beyond_the_models_largest(conv):
    core = _core()
    assert _load(core, start_image(conv[0], CONFIG, None)).type == m.Reply.OK
    shift = max(max(s.weight_shift, s.bias_shift) for s in core.model.scales.values())
    largest = min(LR_SHIFT_RANGE[1], 62 - shift)
    for lr_shift in (largest + 1, LR_SHIFT_RANGE[0] - 1):
        payload = configure_payload(IntTrainingConfig(lr_shift=lr_shift), 12, 5, m.LAYERED_MODEL_FORMAT)
        assert _error(_ask(core, m.Request.CONFIGURE, payload)) == (m.ErrorCode.BAD_RANGE, largest)
    payload = configure_payload(IntTrainingConfig(lr_shift=largest), 12, 5, m.LAYERED_MODEL_FORMAT)
    assert _ask(core, m.Request.CONFIGURE, payload).type == m.Reply.OK


def test_a_sample_with_a_negative_label_or_a_label_outside_the_classes_is_refused(conv):
    int_path, data = conv
    core = _core()
    assert _load(core, start_image(int_path, CONFIG, 1)).type == m.Reply.OK
    assert _ask(core, m.Request.CONFIGURE, configure_payload(CONFIG, 12, 5, m.LAYERED_MODEL_FORMAT)).type == m.Reply.OK
    pixels = _stream(int_path, data).images[0].tobytes()
    for label, negative in ((3, 4), (10, m.NO_NEGATIVE)):
        assert _error(_train(core, bytes([label, negative]) + pixels, 0)) == (m.ErrorCode.BAD_RANGE,
                                                                             label << 8 | negative)
    assert core.applied == 0
    assert m.TRAINED.unpack(_train(core, bytes([3, m.NO_NEGATIVE]) + pixels, 0).payload)[0] == 1


def test_an_image_with_no_trained_block_infers_but_does_not_train(conv):
    int_path, data = conv
    tensors, header = load_model(int_path)          # a quantized model: no block carries masters
    image = pack_image(tensors, header)
    core = _core()
    assert _load(core, image).type == m.Reply.OK
    assert _error(_ask(core, m.Request.CONFIGURE, configure_payload(CONFIG, 12, 5, 2)))[0] == m.ErrorCode.BAD_STATE
    pixels = _stream(int_path, data).images[:1]
    record = bytes([0, m.NO_NEGATIVE]) + pixels.tobytes()
    _ask(core, m.Request.STAGE, m.STAGE.pack(0, 0) + record)
    reply = _ask(core, m.Request.INFER, m.INFER.pack(0, crc32(record)))
    model = IntLayeredModel.from_file(int_path)
    scores = model.multi_pass_scores(pixels)[0]
    assert reply.payload == m.SCORES.pack(scores.argmax(), model.head_logits(pixels).argmax()) + \
        scores.astype("<i4").tobytes()


def test_a_model_over_the_boards_ram_is_refused_with_the_bytes_it_needs(conv):
    image = start_image(conv[0], CONFIG, None)
    raw = {k: {"value": v, "source": "test"} for k, v in load_profile("nrf52840").values.items()}
    raw |= {"name": "tiny", "kind": "mcu", "description": "small board", "sram_bytes": {"value": 9216, "source": "t"},
            "sram_reserved_bytes": {"value": 0, "source": "t"}}
    small = _core(profile_from_dict(raw))
    code, needed = _error(_load(small, image))
    assert code == m.ErrorCode.NO_MEMORY and needed > 9216 > len(image) and small.model is None
    big = _core()
    assert _load(big, image).type == m.Reply.OK and big.model.sram_bytes == needed


# ---------------------------------------------------------------------- the host's refusals
FORMAT_1_ONLY = m.format_bit(m.MODEL_FORMAT)


class _FormatOneBoard(_ScriptedBoard):
    """A board whose INFO lists model format 1 only (firmware before format 2), or `mask`, recording what it is
    sent."""

    def __init__(self, mask=FORMAT_1_ONLY):
        self.received = []
        super().__init__(m.INFO.pack(m.PROTOCOL_VERSION, m.MIN_VERSION, m.PROTOCOL_VERSION, 4096, 1 << 20, 1 << 20,
                                     1 << 20, mask, 0, 0, 0, 0, 0, 0, b"old", b"test"))

    def _reply(self, frame):
        self.received.append(frame.type)
        return super()._reply(frame)


def test_a_board_of_format_1_only_gets_no_conv_model(conv):
    int_path, data = conv
    board = _FormatOneBoard()
    try:
        with BoardLink(board.url) as link, pytest.raises(EdgeFFError, match=r"takes model format 1 only; this is a "
                                                                           r"format-2 \(layered CwC\) model: update"):
            train_on_board(link, int_path, _stream(int_path, data), CONFIG, quiet=True)
        assert set(board.received) <= {m.Request.HELLO, m.Request.METRICS}     # nothing loaded
    finally:
        board.close()
    for mask, opens in ((m.format_bit(2), True), (1 << 2, False)):       # format 2 only is a board; format 3 not
        board = _FormatOneBoard(mask)
        try:
            if opens:
                BoardLink(board.url).close()
            else:
                with pytest.raises(EdgeFFError, match="takes model format 3 only; this EdgeFF writes formats 1 and 2"):
                    BoardLink(board.url).close()
        finally:
            board.close()


def test_the_host_refuses_negatives_last_k_on_an_mlp_and_a_pull_without_its_base(conv, small_model, tmp_path):
    int_path, data = conv
    with pytest.raises(EdgeFFError, match="trains without negative labels"):
        runtime_image(int_path, _stream(int_path, data, host_negatives=True), CONFIG)
    res = run_cli("board", "train", "--model", small_model[0], "--out", tmp_path / "x.safetensors", "--last-k", "1",
                  "--data-dir", small_model[1], "--storage", tmp_path / "flash")
    assert res.returncode != 0 and "--last-k takes a layered (conv) int8 model" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x.safetensors").exists()
    with VirtualBoard(tmp_path / "flash2") as board:
        with BoardLink(board.url) as link:
            link.load_image(start_image(int_path, CONFIG, 1))
        res = run_cli("board", "pull", "--port", board.url, "--out", tmp_path / "p.safetensors")
    assert res.returncode != 0 and "give the model file it was loaded from (--model)" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_board_exports_refuse_last_k_where_it_means_nothing_and_a_board_without_room(conv, small_model, tmp_path):
    """`edgeff export` refuses, in one line before writing anything: --last-k on an FF MLP and on an export with no
    board image, a K beyond the model's trainable blocks, and a conv model whose working buffers exceed the board
    firmware's scratch (the netduinoplus2's 8 KB; the convolution's DSP scratch is most of it), naming the board
    that has room."""
    int_path, _ = conv
    header, library = tmp_path / "board_model.h", tmp_path / "EdgeFF"
    for args, message in [
        ((small_model[0], "--format", "board-header", "--last-k", 1, "--out", header),
         "--last-k takes a layered (conv) int8 model; an FF MLP trains every layer"),
        ((int_path, "--format", "board-header", "--last-k", 3, "--out", header),
         "--last-k 3 must be from 1 to 2, the model's trainable layers (1, 2)"),
        ((int_path, "--format", "arduino", "--last-k", 0, "--out", library), "--last-k 0 must be from 1 to 2"),
        ((int_path, "--format", "onnx", "--last-k", 1, "--out", header),
         "--last-k picks the blocks a board trains: it is for --format board-header and arduino, not onnx"),
        ((int_path, "--format", "board-header", "--board", "netduinoplus2", "--out", header),
         "training it takes 10,396 bytes of working buffers and staging slots, but EdgeFF's board firmware on "
         "netduinoplus2 has 8,192; train a network with a smaller input or fewer channels, or export it with "
         "--board for mps2-an386")]:
        _refused(run_cli("export", *args), message)
    assert not header.exists() and not library.exists() and not list(tmp_path.glob(".EdgeFF.partial-*"))
