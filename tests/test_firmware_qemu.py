"""The firmware on QEMU's emulated boards (mps2-an386: Cortex-M4, the default; mps2-an500: Cortex-M7;
netduinoplus2: STM32F405 with its USART): the self-test build trains on compiled-in samples with the C
library's training step and prints a CRC of every weight, master weight and bias, which must equal the NumPy
runtime's after the same samples; the linker script's RAM budget refuses a model that does not fit; and the
board firmware, trained over its UART by the host's driver, reads back the runtime's exact bits, infers as
the runtime does and survives a reboot. The tests that run QEMU for each board take it from BOARDS."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeff.c_array import tflite_bytes_from_c_header
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.model_file import load_model
from edgeff.ops.conv2d.runtime import dsp_scratch_bytes
from edgeff.ops.conv2d.spec import Conv2dSpec
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainer, IntTrainingConfig, load_trainer, trainer_tensors
from edgeff.runtime.requantize import INT32_MAX
from firmware_bridge import emulator, selftest
from firmware_bridge import messages as m
from firmware_bridge.board_export import board_model
from firmware_bridge.board_image import layered_state, pack_image, unpack_image
from firmware_bridge.board_training import configure_payload, run_id_of, runtime_image, start_image, train_on_board
from firmware_bridge.driver import BoardError, BoardLink
from firmware_bridge.framing import Frame, FrameDecoder, crc32, encode_frame
from tests.conftest import run_cli
from tests.reference_math import fully_connected
from tests.test_board_layered import _stream as layered_stream
from tests.test_board_layered import conv  # noqa: F401 (a module fixture, by name)
from tests.test_serial_bridge import CONFIG, _stream

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="needs gcc-arm-none-eabi and qemu-system-arm")

# the emulated boards, each with its descriptor's [firmware] table (the default board first)
BOARDS = {name: emulator.target_of(name) for name in ("mps2-an386", "mps2-an500", "netduinoplus2")}
LINE = re.compile(rb"EDGEFF-SELFTEST samples=(\d+) correct=(\d+) crc=([0-9a-f]{8}) ticks=(\d+)")


def _int8_norm_model(int_model):
    _, int_path, data_dir = int_model
    model = IntFFModel.from_file(int_path)
    if any(layer.norm_bits != 7 for layer in model.layers):
        pytest.skip("the board's training step runs int8 normalized inputs")
    return model, load_dataset(data_dir, val_size=100)


@pytest.mark.parametrize("board, loss, collab, rounding", [("mps2-an386", "symba", "adaptive", "stochastic"),
                                                           ("mps2-an386", "softplus", "none", "nearest"),
                                                           ("mps2-an500", "symba", "adaptive", "stochastic"),
                                                           ("netduinoplus2", "symba", "adaptive", "stochastic")])
def test_emulated_board_trains_bit_identically(int_model, tmp_path, board, loss, collab, rounding):
    model, data = _int8_norm_model(int_model)
    n = 40
    images, labels = data.train.images[:n], data.train.labels[:n].astype(np.int64)
    negatives = (labels + 1 + np.random.default_rng(2).integers(0, 9, n)) % 10
    trainer = IntTrainer(model, IntTrainingConfig(lr_shift=12, loss=loss, rounding=rounding, seed=9))
    trainer.collab_mode = collab
    if collab == "adaptive":
        trainer.gamma_q = np.array([300, 150], np.int64)
    elf = emulator.build("selftest", tmp_path / "selftest.elf",
                         {"selftest_data.h": selftest.selftest_header(trainer, images, labels, negatives)},
                         target=BOARDS[board])
    match = LINE.search(emulator.run(elf, b"EDGEFF-SELFTEST", target=BOARDS[board]))
    correct = sum(trainer.step(images[i:i + 1], labels[i:i + 1], negatives[i:i + 1])["correct"] for i in range(n))
    before = selftest.state_crc(IntTrainer(IntFFModel.from_file(int_model[1]), trainer.config))
    assert int(match[1]) == n and int(match[2]) == correct
    assert int(match[3], 16) == selftest.state_crc(trainer) != before    # trained, and bit-identical
    assert int(match[4]) > 0


def _c_array(ctype, name, values) -> str:
    return f"static const {ctype} {name}[] = {{{', '.join(str(int(v)) for v in np.ravel(values))}}};"


@pytest.mark.parametrize("board", BOARDS)
def test_the_boards_fully_connected_equals_the_reference(tmp_path, board):
    """The Cortex-M4's FC (SMLAD loop, the assembly epilogue of the usual ReLU output and its way out for a unit
    of another form) on QEMU against the reference FullyConnected: rescales that put most outputs inside the
    clamp (so that every rounding step shows), inputs and weights at their extremes, a bias that wraps the
    accumulator, shifts 0 and -31, units with a positive shift or a negative multiplier among ReLU ones, other
    zero points and single rounding (the C epilogue), shapes off every block of 8 inputs, 4 units, 256 inputs,
    and biases alone on and beside the ties of both roundings."""
    rng = np.random.default_rng(22)
    shapes = [(784, 64, -128, -128, "double"), (64, 32, -128, -128, "double"), (257, 65, -128, -128, "double"),
              (37, 6, -128, -128, "double"), (300, 7, -30, -30, "double"), (64, 9, -128, -128, "single"),
              (12, 5, 5, -128, "double"), (8, 64, -128, -128, "ties")]
    lines = ["#include \"edgeff_kernels.h\"",
             "typedef struct { const int8_t *x, *weight; const int32_t *bias, *multiplier, *shift; "
             "int32_t rows, depth, units, zero_point, act_min, act_max, rounding; } fc_case;"]
    items, want, rows, inside = [], 0, 8, []
    for i, (depth, units, zp, act_min, rounding) in enumerate(shapes):
        x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
        w = rng.integers(-127, 128, (units, depth)).astype(np.int8)
        x[0], w[0], x[1, ::2] = 127, 127, -128                         # the largest accumulators
        spread = np.sqrt(depth) * 127 * 74                              # about the accumulators' spread
        mult = rng.integers(1 << 30, INT32_MAX, units).astype(np.int32)
        shift = np.full(units, -int(np.ceil(np.log2(spread / 150))), np.int32)
        bias = rng.integers(0, int(spread), units).astype(np.int32)        # most sums above zero
        bias[1] = INT32_MAX                                             # wraps acc + bias, as int32 does
        w[2], shift[2], mult[2] = rng.integers(-1, 2, depth), 0, rng.integers(1 << 24, 1 << 26)   # shift 0
        shift[3 % units] = -31
        if rounding == "ties":                  # zero inputs, the bias alone on both roundings' ties and beside
            x[:], rounding = 0, "double"
            shift = -(np.arange(units) % 6).astype(np.int32)
            mult[:], bias = 1 << 30, rng.integers(0, 8 << -shift).astype(np.int32)
        if units > 4:
            shift[4], mult[units - 1] = 2, -(1 << 30)                  # not the ReLU form: the general epilogue
        lines += [_c_array("int8_t", f"x{i}", x), _c_array("int8_t", f"w{i}", w), _c_array("int32_t", f"b{i}", bias),
                  _c_array("int32_t", f"m{i}", mult), _c_array("int32_t", f"s{i}", shift)]
        items.append(f"{{x{i}, w{i}, b{i}, m{i}, s{i}, {rows}, {depth}, {units}, {zp}, {act_min}, 127, "
                     f"{int(rounding == 'single')}}}")
        out = fully_connected(x, w, bias, 0, mult, shift, zp, act_min, 127, rounding=rounding).astype(np.int8)
        inside.append(((out > act_min) & (out < 127)).ravel())
        want = zlib.crc32(out.tobytes(), want)
    assert np.concatenate(inside).mean() > 0.5                          # mostly inside the clamp
    lines += [f"#define FC_CASES {len(shapes)}", f"#define FC_MAX_OUTPUTS {rows * max(s[1] for s in shapes)}",
              "static const fc_case fc_cases[] = {" + ", ".join(items) + "};"]
    elf = emulator.build("fc_check", tmp_path / "fc_check.elf", {"fc_cases.h": "\n".join(lines) + "\n"},
                         target=BOARDS[board])
    out = emulator.run(elf, b"EDGEFF-FC", target=BOARDS[board])
    match = re.search(rb"EDGEFF-FC cases=(\d+) crc=([0-9a-f]{8})", out)
    assert int(match[1]) == len(shapes) and int(match[2], 16) == want


# (side h, w; in_c, out_c; kernel h, w; stride; padding; batch): in_c 1, 3, 4, 20, 40; padding 0, 1, 2; stride 1
# and 2; odd sides; 1x1, 2x2, 5x3 kernels; windows wholly outside the input (padding 2 of a 3x3); batches of 2
CONV_GEOMETRIES = [(28, 28, 1, 20, 3, 3, 1, 1, 1), (9, 7, 3, 5, 3, 3, 2, 1, 2), (6, 8, 4, 7, 3, 3, 1, 0, 1),
                   (7, 7, 20, 6, 3, 3, 1, 2, 1), (5, 6, 40, 9, 3, 3, 2, 1, 1), (8, 5, 1, 3, 5, 3, 1, 2, 1),
                   (11, 9, 3, 4, 2, 2, 2, 0, 2), (4, 4, 20, 3, 1, 1, 1, 0, 1), (3, 5, 1, 2, 1, 1, 1, 0, 1),
                   (6, 6, 4, 5, 3, 3, 1, 2, 1), (7, 9, 40, 4, 3, 3, 1, 1, 1), (5, 5, 3, 8, 3, 3, 2, 2, 1)]
# the epilogue each case takes: the usual ReLU output (zero point -128) and single rounding over [-128, 127]
# (the DSP path's short epilogue), a ReLU of another zero point, narrow clamps, and short-form cases with one
# channel that rules the short form out (shift 0, a left shift, a negative multiplier under single rounding,
# shifts -24 and -31); and ties: inputs at the zero point (every sum 0), multipliers 2^30, shifts -1 to -5 and
# biases alone on and beside each rounding's ties, where double rounding's two steps show
EPILOGUES = ["relu128", "single", "relu", "clamp", "shift0", "left", "negative", "shift24", "shift31", "ties",
             "ties_single"]


def _conv_case(rng, geometry, epilogue, extreme=False):
    from firmware_bridge.conv_check import ConvCase

    h, w, c_in, c_out, kh, kw, stride, pad, n = geometry
    zp_in = int(rng.choice([-128, 127, *rng.integers(-128, 128, 2)]))
    x = rng.integers(-128, 128, (n, h, w, c_in)).astype(np.int8)
    f = rng.integers(-128, 128, (c_out, kh, kw, c_in)).astype(np.int8)
    if extreme:   # every input and filter value at an int8 end: the largest products SMLAD's pairs take
        x, f = (np.where(rng.random(a.shape) < 0.5, -128, 127).astype(np.int8) for a in (x, f))
    if epilogue == "relu128" and c_in == 1:               # the largest sums: |x - zp| = 255 against -128 weights
        x[0, : h // 2] = 127 if zp_in == -128 else -128
        f[0] = -128
    out = tuple((side + 2 * pad - k) // stride + 1 for side, k in ((h, kh), (w, kw)))
    spread = 127.5 if extreme else 74                                 # the values' standard deviation
    typical = np.sqrt(kh * kw * c_in) * spread * np.hypot(spread, zp_in)     # about the sums' spread
    shift = (5 - np.round(np.log2(typical)) + rng.integers(-2, 2, c_out)).astype(np.int32)
    mult = rng.integers(1 << 30, INT32_MAX, c_out, endpoint=True).astype(np.int32)
    bias = rng.integers(-int(typical), int(typical), c_out).astype(np.int32)
    bias[c_out // 2] = INT32_MAX - int(rng.integers(0, 1000))      # wraps sum + bias, as int32 does
    zp_out, act_min, act_max, rounding = -128, -128, 127, "double"
    if epilogue in ("single", "negative"):   # (the reference's ReLU shortcut assumes multipliers >= 0: no ReLU here)
        zp_out, rounding = int(rng.integers(-127, 128)), "single"
    elif epilogue == "relu":
        zp_out = act_min = int(rng.integers(-100, 50))
    elif epilogue == "clamp":
        zp_out = int(rng.integers(-128, 128))
        act_min, act_max = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if epilogue.startswith("ties"):
        x[:] = zp_in
        shift, mult[:] = -(1 + np.arange(c_out) % 5).astype(np.int32), 1 << 30
        bias = rng.integers(-64, 8 << -shift).astype(np.int32)
        zp_out, rounding = (-128, "double") if epilogue == "ties" else (int(rng.integers(-128, 128)), "single")
    last = c_out - 1
    if epilogue in ("shift0", "left", "shift24", "shift31"):
        shift[last] = {"shift0": 0, "left": 2, "shift24": -24, "shift31": -31}[epilogue]
    if epilogue == "negative":
        mult[last] = -mult[last]
    return ConvCase(x, zp_in, f, bias, mult, shift, zp_out, act_min, act_max, (stride, stride), (pad, pad), out,
                    rounding)


def _window_scratch_bytes(taps: int) -> int:
    """The DSP path's scratch for the deepest-window case: a 1x1 kernel over `taps` channels, two filters, one
    output pixel."""
    return dsp_scratch_bytes(Conv2dSpec(in_channels=taps, in_height=1, in_width=1, out_channels=2, kernel=1))


def _largest_window_cases():
    """The deepest window the conv check firmware's scratch holds on the DSP path (a 1x1 kernel over T channels,
    two filters: T the largest multiple of 4 whose scratch fits conv_check.SCRATCH_BYTES; C_CONV_MAX_WINDOW's
    526 KB im2col block fits no board), every value at the int8 end farthest from the zero point against filters
    of -128 and 127: the largest sums of that window, both signs, under each rounding."""
    from firmware_bridge.conv_check import SCRATCH_BYTES, ConvCase

    taps = 4
    while _window_scratch_bytes(taps + 4) <= SCRATCH_BYTES:
        taps += 4
    shift = 6 - int(np.ceil(np.log2(taps * 255 * 128)))   # the largest sum lands near +-32: not clamped
    cases = []
    for zp, end, rounding in ((-128, 127, "double"), (127, -128, "single")):
        filters = np.stack([np.full((1, 1, taps), -128), np.full((1, 1, taps), 127)]).astype(np.int8)
        cases.append(ConvCase(np.full((1, 1, 1, taps), end, np.int8), zp, filters, np.zeros(2, np.int32),
                              np.full(2, 1 << 30, np.int32), np.full(2, shift, np.int32), 0, -128, 127, (1, 1),
                              (0, 0), (1, 1), rounding))
    return cases


# the poolings' windows and NHWC inputs (H, W, C, N): odd sides, 1 to 40 channels (four a word and a tail)
POOL_SIZES = [1, 2, 2, 3, 4, 2, 1, 2, 3, 2, 4, 2, 1, 1, 2]
POOL_SHAPES = [(5, 7, 3, 1), (28, 28, 20, 1), (7, 9, 21, 2), (10, 8, 4, 1), (9, 9, 1, 1), (14, 14, 40, 1),
               (28, 28, 20, 1), (28, 28, 40, 1), (27, 27, 13, 1), (29, 27, 21, 2), (28, 28, 20, 1), (15, 17, 40, 1),
               (28, 28, 40, 1), (25, 23, 37, 1), (28, 28, 40, 2)]


@pytest.mark.parametrize("board, portable", [("mps2-an386", False), ("mps2-an500", False), ("netduinoplus2", False),
                                             ("mps2-an386", True)])
def test_the_boards_convolution_and_pooling_equal_the_reference(tmp_path, board, portable):
    """The C CONV_2D (on the Cortex-M4 and M7 its im2col and SMLAD path with the short epilogue and the general
    one; with EDGEFF_PORTABLE_C the portable loops on the same core) and MAX_POOL_2D on QEMU against the NumPy
    reference: every geometry of CONV_GEOMETRIES six times, under each epilogue in turn, random zero points (and
    both ends), wrapping biases, the largest sums, the last two rounds on int8 ends only (106,326 outputs);
    poolings (on the Cortex-M4 and M7 four channels a word, the 2x2 window unrolled) of windows 1 to 4 over odd
    sides, 1 to 40 channels, clamps, every third on int8 ends only (110,269 outputs). One CRC of every output
    must equal the reference's. Last, the deepest window the firmware's scratch holds at its largest sums
    (_largest_window_cases); C_CONV_MAX_WINDOW needs 526 KB of im2col scratch, more than these boards hold:
    tests/test_conv_kernels.py proves that bound on the portable build."""
    from firmware_bridge import instruction_counts
    from firmware_bridge.conv_check import PoolCase

    rng = np.random.default_rng(23)
    convs = [_conv_case(rng, g, EPILOGUES[i % len(EPILOGUES)], extreme=i >= 4 * len(CONV_GEOMETRIES))
             for i, g in enumerate(CONV_GEOMETRIES * 6)]
    assert sum(k.outputs for k in convs) >= 100_000
    convs += _largest_window_cases()
    pools = []
    for i, (size, (h, w, c, n)) in enumerate(zip(POOL_SIZES, POOL_SHAPES, strict=True)):
        act_min, act_max = (-128, 127) if i % 2 == 0 else (-20, 60)
        x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
        if i % 3 == 2:   # the int8 ends only: ties in every window, and the clamps' far sides
            x = np.where(rng.random(x.shape) < 0.5, -128, 127).astype(np.int8)
        pools.append(PoolCase(x, size, act_min, act_max))
    assert sum(k.outputs for k in pools) >= 100_000
    inside = np.concatenate([((k.reference() > -128) & (k.reference() < 127)).ravel() for k in convs])
    assert inside.mean() > 0.4                                  # the rescale shows, not only the clamp
    got = instruction_counts.measure_kernels(convs, pools, tmp_path / "conv_check.elf", portable=portable,
                                             target=BOARDS[board])
    assert len(got["cases"]) == len(convs) + len(pools) and got["same"]
    assert all(case["scratch"] == 0 for case in got["cases"]) == portable
    if not portable:   # the deepest window ran on the DSP path, with the scratch the host's mirror sizes
        largest = got["cases"][len(convs) - 1]["scratch"]
        assert largest == _window_scratch_bytes(convs[-1].filters.shape[-1])


def test_a_model_too_big_for_the_board_fails_to_link(int_model, tmp_path):
    """784-256-128 needs 233 KB of int8 weights and 467 KB of master weights: over the 256 KB of SRAM."""
    _, int_path, _ = int_model
    tensors, header = load_model(int_path)
    if header["quantization"]["layers"][0].get("norm_bits", 7) != 7:
        pytest.skip("the board's training step runs int8 normalized inputs")
    rng = np.random.default_rng(0)
    sizes = [784, 256, 128]
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        tensors[f"layers.{i}.weight"] = rng.integers(-127, 128, (d_out, d_in)).astype(np.int8)
        for name, dtype, value in (("bias", np.int32, 0), ("multiplier", np.int32, 1 << 30), ("shift", np.int32, -8)):
            tensors[f"layers.{i}.{name}"] = np.full(d_out, value, dtype)
    tensors["head.weight"] = np.zeros((10, 128), np.int8)
    arch = header["architecture"]
    layers = ModelDescription.dense(sizes, arch["normalization"]).to_header()
    header["architecture"] = {**arch, "sizes": sizes, "head_layers": [2], "layers": layers}
    trainer = IntTrainer(IntFFModel.from_tensors(tensors, header), IntTrainingConfig())
    source = selftest.selftest_header(trainer, np.zeros((1, 784), np.uint8), [0], [1])
    with pytest.raises(EdgeFFError, match="overflowed"):
        emulator.build("selftest", tmp_path / "big.elf", {"selftest_data.h": source})


@pytest.mark.parametrize("board, name", [("mps2-an386", "qemu-mps2-an386"), ("mps2-an500", "qemu-mps2-an500"),
                                         ("netduinoplus2", "qemu-stm32f405")])
def test_emulated_board_speaks_the_protocol(tmp_path, board, name):
    """The board firmware of each board links against its descriptor and runs on its QEMU machine, its UART
    (CMSDK UART, STM32 USART) on a TCP socket: the host driver's HELLO gets INFO with the board's name and
    model RAM, and bad frames, unknown types and wrong lengths get the protocol's NAK and ERROR replies."""
    target = BOARDS[board]
    elf = emulator.build("board_app", tmp_path / "board.elf", target=target)
    port = emulator.free_port()
    qemu = emulator.start(elf, port, target)
    try:
        with BoardLink(f"socket://127.0.0.1:{port}", timeout=1.0) as link:
            info = link.info
            assert (info.name, info.firmware, info.version, info.max_payload) == (name, "edgeff-fw 0.2", 3, 1024)
            assert not info.model_loaded and info.sram_budget == target.image_bytes + target.scratch_bytes
            for request, payload, code in ((0x42, b"", m.ErrorCode.UNKNOWN_TYPE),
                                           (m.Request.HELLO, b"\x01", m.ErrorCode.BAD_LENGTH),
                                           (m.Request.HELLO, m.HELLO.pack(4, 5), m.ErrorCode.VERSION)):
                with pytest.raises(BoardError) as err:
                    link.request(request, payload, m.Reply.INFO)
                assert err.value.code == code
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            good = encode_frame(m.Request.HELLO, 7, m.HELLO.pack(m.MIN_VERSION, m.PROTOCOL_VERSION))
            raw.sendall(good[:-3] + bytes([good[-3] ^ 1]) + good[-2:])          # CRC damaged
            replies = FrameDecoder(4096)
            got = []
            while not got:
                got = replies.feed(raw.recv(4096))
            assert got == [Frame(m.Reply.NAK, 0xFFFF, m.NAK.pack(m.NAK_REASONS["crc"]))]
    finally:
        qemu.kill()
        qemu.wait()


def test_cli_reaches_the_emulated_board(tmp_path):
    """`edgeff board info --port qemu://BOARD` runs the board firmware on that board in QEMU for the command
    (qemu:// alone, the mps2-an386, in the tests below); `edgeff board emulate --board BOARD` keeps it running
    and prints the URL another command opens, and stopped with SIGTERM it stops QEMU too (nothing listens on
    the port afterwards)."""
    res = run_cli("board", "info", "--port", "qemu://mps2-an500", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["name"] == "qemu-mps2-an500" and not info["model_loaded"]
    assert info["metrics"]["frames_ok"] == 2 and info["metrics"]["frames_bad"] == 0    # HELLO, METRICS
    port = emulator.free_port()
    server = subprocess.Popen([sys.executable, "-m", "edgeff", "board", "emulate", "--board", "netduinoplus2",
                               "--listen", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == f"socket://127.0.0.1:{port}"
        res = run_cli("board", "info", "--port", f"socket://127.0.0.1:{port}")
        assert res.returncode == 0 and "qemu-stm32f405 (edgeff-fw 0.2), protocol v3" in res.stdout, res.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def _link(board, **kw):
    return BoardLink(board.url, timeout=kw.pop("timeout", 1.0), **kw)


@pytest.mark.parametrize("board, negatives, host_negatives", [("mps2-an386", "hard", False),
                                                              ("mps2-an386", "random", True),
                                                              ("mps2-an500", "hard", False),
                                                              ("netduinoplus2", "random", True)])
def test_emulated_board_trains_over_the_link_bit_identically(small_model, board, negatives, host_negatives):
    """The board firmware in QEMU, trained over its UART by the host's own train_on_board: the image read
    back after 60 samples (2 epochs) equals the NumPy runtime's after the same samples, byte for byte, and
    the board's multi-pass scores and one-pass predictions equal the runtime's on the trained model. The
    netduinoplus2 keeps no checkpoints (QEMU's flash is a ROM): it refuses them and the run goes on without."""
    int_path, data_dir = small_model
    config = IntTrainingConfig(lr_shift=16, seed=3, negatives=negatives, loss="softplus" if host_negatives else "symba")
    stream, _ = _stream(data_dir, n=30, epochs=2, seed=1, host_negatives=host_negatives)
    with emulator.EmulatedBoard(target=BOARDS[board]) as emulated, _link(emulated) as link:
        result = train_on_board(link, int_path, stream, config, checkpoint_every=25, quiet=True)
        model = IntFFModel.from_tensors(*unpack_image(result["image"]))
        images = stream.images[:5]
        scores = model.multi_pass_scores(images)
        one_pass = model.head_logits(images).argmax(axis=1)
        for i, image in enumerate(images):
            assert link.infer(image) == (scores[i].argmax(), one_pass[i], scores[i].tolist())
    assert result["image"] == runtime_image(int_path, stream, config)
    assert result["board_metrics"]["applied"] == 60 and result["board_compute_us_per_sample"] > 0
    assert result["checkpoints_kept"] == (BOARDS[board].storage_bytes > 0)


@pytest.mark.parametrize("last_k", [1, None], ids=["last-block", "all-blocks"])
def test_emulated_board_trains_a_conv_model_over_the_link_bit_identically(last_k, request):
    """A layered CwC model (board image format 2) on the mps2-an386 firmware, trained over its UART by
    train_on_board (checkpoints on the way): the image read back equals the runtime's after the same samples, byte
    for byte, and the board infers as the runtime's model does on the trained state."""
    int_path, data = request.getfixturevalue("conv")
    config = IntTrainingConfig(lr_shift=8, seed=3)
    stream = layered_stream(int_path, data, n=10, epochs=2, seed=1)
    with emulator.EmulatedBoard() as emulated, _link(emulated) as link:
        assert m.formats_in(link.info.model_format) == [m.MODEL_FORMAT, m.LAYERED_MODEL_FORMAT]
        result = train_on_board(link, int_path, stream, config, checkpoint_every=7, quiet=True, last_k=last_k)
        model = layered_state(result["image"])[0]
        images = stream.images[:3]
        scores, one_pass = model.multi_pass_scores(images), model.head_logits(images).argmax(axis=1)
        for i, image in enumerate(images):
            assert link.infer(image) == (scores[i].argmax(), one_pass[i], scores[i].tolist())
    assert result["image"] == runtime_image(int_path, stream, config, last_k=last_k)
    assert result["board_metrics"]["applied"] == 20


def test_emulated_board_reboots_into_its_checkpoint_and_the_run_resumes(small_model):
    """RESET reboots the emulated core (a system reset): RAM state and link counters are gone, the checkpoint
    in flash comes back, and the host resumes the run from it to the same bits as an unbroken run."""
    int_path, data_dir = small_model
    stream, _ = _stream(data_dir, n=30, seed=4)
    image = pack_image(*load_model(int_path))
    run_id = run_id_of(image, CONFIG, 12, stream)
    with emulator.EmulatedBoard() as board:
        with _link(board) as link:
            link.load_image(image)
            link.value(m.Request.CONFIGURE, configure_payload(CONFIG, 12, run_id))
            for p in range(14):
                link.train(p, stream.record(p))
                if p == 9:
                    assert link.value(m.Request.CHECKPOINT) == 10
            assert link.value(m.Request.RESET) == 10
            resent = link.stats["resent"]
            info = link.hello()
            assert (info.applied, info.run_id, info.checkpoint_applied) == (10, run_id, 10)
            # HELLO and METRICS since the reboot, and a HELLO resent on a loaded machine if the first came late
            assert 2 <= link.metrics()["frames_ok"] <= 2 + link.stats["resent"] - resent
        with _link(board) as link:
            result = train_on_board(link, int_path, stream, CONFIG, quiet=True)
    assert result["samples_sent"] == 20
    assert result["image"] == runtime_image(int_path, stream, CONFIG)


def test_emulated_board_refuses_what_it_cannot_train(int_model, tmp_path):
    """An int16-normalized model is refused at LOAD_END with a message naming the reason (and by the
    board-header export); an int8 one loads and the board reports it."""
    _, int_path, _ = int_model
    tensors, header = load_model(int_path)
    image = pack_image(tensors, header)
    with emulator.EmulatedBoard() as board, _link(board) as link:
        if any(layer.get("norm_bits", 7) != 7 for layer in header["quantization"]["layers"]):
            with pytest.raises(BoardError, match="int8-normalized layers only") as err:
                link.load_image(image)
            assert err.value.code == m.ErrorCode.BAD_MODEL and not link.hello().model_loaded
            res = run_cli("export", int_path, "--format", "board-header", "--out", tmp_path / "m.h")
            assert res.returncode == 2 and "int8-normalized layers only" in res.stderr
            assert not (tmp_path / "m.h").exists()
        else:
            link.load_image(image)
            info = link.hello()
            assert info.model_loaded and not info.configured and info.image_bytes > len(image)   # masters added


def _cli_train_on_the_emulated_board(int_path, data_dir, out, *args) -> dict:
    """`edgeff board train --port qemu://` (the default board's firmware) of the model, writing out: the one
    JSON document on stdout, after checking the command succeeded and said where the run stands on stderr."""
    res = run_cli("board", "train", "--port", "qemu://", "--model", int_path, "--out", out, "--data-dir", data_dir,
                  *args, "--json")
    assert res.returncode == 0, res.stderr
    assert "qemu-mps2-an386 holds no part of this run" in res.stderr
    return json.loads(res.stdout)


def test_cli_trains_on_the_emulated_board(small_model, tmp_path):
    """`edgeff board train --port qemu://` runs unchanged against the firmware of the default board and writes
    the trained model, equal to the runtime's after the same samples."""
    int_path, data_dir = small_model
    out = tmp_path / "trained.safetensors"
    result = _cli_train_on_the_emulated_board(int_path, data_dir, out, "--samples", 12, "--lr-shift", 16, "--seed", 3)
    assert result["samples"] == 12
    stream, _ = _stream(data_dir, n=12, seed=3)
    reference = unpack_image(runtime_image(int_path, stream, CONFIG))[0]
    trained = load_model(out)[0]
    assert all(np.array_equal(trained[k], v) for k, v in reference.items())


@pytest.mark.parametrize("last_k", [1, None], ids=["last-block", "all-blocks"])
def test_cli_trains_a_conv_model_on_the_emulated_board(last_k, request, tmp_path):
    """`edgeff board train --port qemu://` of a layered CwC model (--last-k, or every block) on the default
    board's firmware: the model file it writes is, as a board image, the integer runtime's after the same
    samples in the same order, byte for byte."""
    int_path, data = request.getfixturevalue("conv")
    out = tmp_path / "trained.safetensors"
    k = [] if last_k is None else ["--last-k", last_k]
    result = _cli_train_on_the_emulated_board(int_path, data, out, *k, "--samples", 6, "--epochs", 1, "--seed", 1,
                                              "--lr-shift", 8)
    assert result["samples"] == 6 and result["board_metrics"]["applied"] == 6
    stream = layered_stream(int_path, data, n=6, epochs=1, seed=1)
    config = IntTrainingConfig(lr_shift=8, seed=1)
    expected = runtime_image(int_path, stream, config, last_k=last_k)
    assert expected != start_image(int_path, config, last_k)          # the samples move the model
    assert pack_image(*load_model(out)) == expected


def test_a_model_compiled_in_from_the_exporters_header(small_model, tmp_path):
    """`edgeff export --format board-header` writes the board image as a C array; firmware built with it
    boots with the model loaded (masters added, the runtime's CRC), infers as the runtime does, and trains
    it without a load to the runtime's bits."""
    int_path, data_dir = small_model
    header_path = tmp_path / "model.h"
    res = run_cli("export", int_path, "--format", "board-header", "--out", header_path)
    assert res.returncode == 0, res.stderr
    stream, _ = _stream(data_dir, n=10, seed=6)
    installed = pack_image(trainer_tensors(load_trainer(int_path, CONFIG)), load_model(int_path)[1])
    model = IntFFModel.from_file(int_path)
    with emulator.EmulatedBoard(model_header=header_path.read_text()) as board, _link(board) as link:
        info = link.info
        assert info.model_loaded and not info.configured
        assert (info.image_bytes, info.image_crc) == (len(installed), crc32(installed))
        image = stream.images[0]
        scores = model.multi_pass_scores(image[None])[0]
        assert link.infer(image) == (scores.argmax(), model.head_logits(image[None]).argmax(), scores.tolist())
        link.value(m.Request.CONFIGURE, configure_payload(CONFIG, 12, 1))
        for p in range(len(stream)):
            link.train(p, stream.record(p))
        assert link.read_image() == runtime_image(int_path, stream, CONFIG)
    missing = run_cli("board", "emulate", "--model-header", tmp_path / "none.h")
    assert missing.returncode == 2 and "cannot read it" in missing.stderr and "Traceback" not in missing.stderr


def test_a_conv_model_compiled_in_from_the_exporters_header(request, tmp_path):
    """`edgeff export --format board-header --last-k 1` of a layered CwC model writes its format-2 image, the one
    `board train --last-k 1` loads; firmware built with it boots with that image installed as sent (INFO's bytes
    and CRC, READ), infers as the runtime's model and trains it without a load to the trainer's bits."""
    int_path, data = request.getfixturevalue("conv")
    header_path = tmp_path / "conv_model.h"
    res = run_cli("export", int_path, "--format", "board-header", "--last-k", 1, "--out", header_path)
    assert res.returncode == 0, res.stderr
    config = IntTrainingConfig(lr_shift=8, seed=3)
    image = start_image(int_path, config, 1)
    assert tflite_bytes_from_c_header(header_path) == image and image[4] == m.LAYERED_MODEL_FORMAT
    stream = layered_stream(int_path, data, n=4, epochs=1, seed=2)
    model = IntLayeredModel.from_file(int_path)
    with emulator.EmulatedBoard(model_header=header_path.read_text()) as board, _link(board) as link:
        info = link.info
        assert info.model_loaded and not info.configured
        assert (info.image_bytes, info.image_crc) == (len(image), crc32(image)) and link.read_image() == image
        # the RAM it takes, the export's figures (its refusal's): the image and the scratch the firmware counts
        assert info.sram_budget - info.sram_free == len(image) + board_model(int_path, 1).scratch_bytes
        scores, one_pass = model.multi_pass_scores(stream.images[:3]), model.head_logits(stream.images[:3])
        for i, pixels in enumerate(stream.images[:3]):
            assert link.infer(pixels) == (scores[i].argmax(), one_pass[i].argmax(), scores[i].tolist())
        link.value(m.Request.CONFIGURE, configure_payload(config, 12, 1, m.LAYERED_MODEL_FORMAT))
        for p in range(len(stream)):
            link.train(p, stream.record(p))
        assert link.read_image() == runtime_image(int_path, stream, config, last_k=1)


def _children(pid: int) -> list:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_board_emulate_says_when_qemu_dies(tmp_path):
    """QEMU gone under `edgeff board emulate` (killed, crashed): the command fails with one line saying what
    happened and that the emulated board's checkpoints went with it, instead of exiting 0 in silence."""
    server = subprocess.Popen([sys.executable, "-m", "edgeff", "board", "emulate"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("socket://127.0.0.1:")
        (qemu,) = _children(server.pid)
        os.kill(qemu, signal.SIGKILL)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 2 and "Traceback" not in err, err
    assert "QEMU stopped on its own" in err and "starts from sample 0" in err, err


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_the_emulated_board_goes_with_a_host_killed_outright():
    """A host killed with SIGKILL (or SIGTERM, which runs no cleanup) while an emulated board runs: its QEMU
    exits too instead of running on, orphaned."""
    host = subprocess.Popen([sys.executable, "-c", "import time\nfrom firmware_bridge.emulator import EmulatedBoard\n"
                             "board = EmulatedBoard().__enter__()\nprint(board.process.pid, flush=True)\n"
                             "time.sleep(120)"], stdout=subprocess.PIPE, text=True)
    try:
        qemu = int(host.stdout.readline())
        assert Path(f"/proc/{qemu}/cmdline").read_bytes().split(b"\0")[0].endswith(b"qemu-system-arm")
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{qemu}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    orphaned = Path(f"/proc/{qemu}").exists()
    if orphaned:             # do not leave it running when the test fails
        os.kill(qemu, signal.SIGKILL)
    assert not orphaned


def test_ctrl_c_of_training_on_the_emulated_board_says_it_restarts(small_model, tmp_path):
    """Ctrl-C of `board train --port qemu://` does not promise a resume: the emulated board's checkpoints
    end with QEMU, so the message says a rerun starts from sample 0; and a run says whether it starts or
    goes on."""
    int_path, data_dir = small_model
    proc = subprocess.Popen([sys.executable, "-m", "edgeff", "board", "train", "--port", "qemu://", "--model",
                             str(int_path), "--out", str(tmp_path / "o.safetensors"), "--samples", "300", "--data-dir",
                             str(data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = b""
    try:
        while not re.search(rb" [1-9]\d*/300 ", err) and proc.poll() is None:    # samples are being applied
            err += os.read(proc.stderr.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        err += proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.decode()
    assert proc.returncode == 130 and "Traceback" not in text, text[-2000:]
    assert "holds no part of this run: loading the model and starting at sample 0" in text
    assert "running the same command again starts from sample 0" in text and "last finished epoch" not in text
    assert not (tmp_path / "o.safetensors").exists()
