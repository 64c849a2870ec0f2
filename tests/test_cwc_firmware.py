"""The layered CwC model on the emulated Cortex-M4 (firmware/cwc_selftest/, edgeff/csrc/kernels/cwc_model.c): its
decisions, scores and one-pass logits on test images, and its filters, biases and masters after integer training
steps on samples, equal the NumPy reference kernels' bit for bit (blocks padded explicitly with their BatchNorm pad
values and blocks the kernel pads with the zero point, a standalone max pooling, a stride-2 block, colour images,
every block trained or the last only, both roundings of the update and of the requantization); the firmware's
buffers are the memory plan's; what it cannot run is refused by name."""
import shutil

import pytest

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig
from firmware_bridge import emulator, instruction_counts, layered_firmware
from tests.conftest import run_cli
from tests.test_conv_ptq import COLOUR, MIXED, PADDED, _quantized

needs_qemu = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="needs gcc-arm-none-eabi and qemu-system-arm")
# unpadded, one channel: the image is quantized in place; a standalone MAX_POOL_2D between the blocks
POOLED = ('[{kind = "conv2d", out_channels = 10, kernel = 3}, {kind = "maxpool2d", size = 2}, '
          '{kind = "conv2d", out_channels = 20, kernel = 3, stride = 2}]', [2, 3])


@pytest.fixture(scope="module")
def padded(tmp_path_factory):   # batchnorm padding: each block's input padded explicitly with its pad values
    return _quantized(tmp_path_factory, "cwcfw-padded", PADDED)


@pytest.fixture(scope="module")
def kernel_padded(tmp_path_factory):   # zero-point padding: the convolution pads by itself, no pad values written
    return _quantized(tmp_path_factory, "cwcfw-kernel-padded", PADDED, "--conv-padding", "zero-point")


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    return _quantized(tmp_path_factory, "cwcfw-pooled", POOLED, "--rounding", "single")


@pytest.fixture(scope="module")
def colour(tmp_path_factory):   # three channels: the image's planes written to NHWC, with the first block's border
    return _quantized(tmp_path_factory, "cwcfw-colour", COLOUR, colour=True)


def _samples(data, n_test=8, n_train=24):
    ds = load_dataset(data)
    train, test = ds.train, ds.test
    return test.images[:n_test], train.images[:n_train], train.labels[:n_train]


@needs_qemu
@pytest.mark.parametrize("case, last_k, rounding", [("padded", None, "stochastic"), ("padded", 1, "nearest"),
                                                     ("kernel_padded", None, "stochastic"),
                                                     ("pooled", None, "stochastic"), ("colour", 1, "stochastic")])
def test_the_firmware_decides_and_trains_as_the_runtime(case, last_k, rounding, request, tmp_path):
    _, int_path, data, _ = request.getfixturevalue(case)
    trainer = load_layered_trainer(int_path, IntTrainingConfig(lr_shift=8, rounding=rounding, seed=3), last_k)
    before = layered_firmware.state_crc(trainer)
    test_images, images, labels = _samples(data)
    with backend.using("reference"):   # the firmware against the NumPy specification itself
        got = instruction_counts.measure_layered(trainer, test_images, images, labels, tmp_path / "cwc.elf")
    assert layered_firmware.state_crc(trainer) != before   # the steps moved the state the CRCs compare
    assert got["same_scores"] and got["same_state"], got
    assert got["correct"] == got["runtime_correct"]
    assert got["step"] > got["infer"] > 0


@needs_qemu
def test_the_firmware_holds_the_memory_plans_buffers_at_their_sizes(padded, tmp_path):
    _, int_path, data, _ = padded
    trainer = load_layered_trainer(int_path, IntTrainingConfig(lr_shift=8), 1)
    test_images, images, labels = _samples(data, 2, 2)
    got = instruction_counts.measure_layered(trainer, test_images, images, labels, tmp_path / "cwc.elf")
    symbols = emulator.symbol_sizes(got["elf"])
    planned = layered_firmware.planned_symbols(trainer)
    assert {"cwc_ping", "cwc_pong", "cwc_prepool", "l1_weight_master", "ef_pow2_q15"} <= {s for s, _ in planned}
    for symbol, buffer in planned:
        size, region = symbols[symbol]
        assert size == buffer.bytes, (symbol, buffer)
        assert region == buffer.region, (symbol, buffer)
    frozen = [s for s, b in planned if s.startswith("l0_")]
    assert frozen and all(symbols[s][1] == "flash" for s in frozen)   # block 1 is frozen: only read


def test_what_the_firmware_cannot_run_is_refused_by_name(tmp_path_factory, colour, tmp_path):
    _, int_path, _, _ = _quantized(tmp_path_factory, "cwcfw-mixed", MIXED)
    with pytest.raises(EdgeFFError, match="layer 4 is a flatten layer"):
        layered_firmware.check(IntLayeredModel.from_file(int_path))
    # colour images read unpadded (zero-point padding: the kernel pads) cannot be quantized in place
    float_path, _, data, _ = colour
    zero_point = tmp_path / "zp.safetensors"
    res = run_cli("quantize", float_path, "--out", zero_point, "--conv-padding",
                  "zero-point", "--data-dir", data)
    assert res.returncode == 0, res.stderr
    with pytest.raises(EdgeFFError, match="images have 3 channels and its first layer reads them unpadded"):
        layered_firmware.check(IntLayeredModel.from_file(zero_point))
