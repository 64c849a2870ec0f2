"""Instructions of an int8 model on an emulated board's core (`target`: a descriptor's [firmware] table; the
default board's Cortex-M4 unless given), measured by the self-test firmware (firmware/selftest/) under
`qemu-system-arm -icount shift=0`: one forward pass of each FF layer and one FF
training step per sample, with the trained weights checked against the NumPy runtime's.

    measure(int_path, images, labels, elf) -> {"per_tick", "layers", "step", "correct", "same", "elf", "samples"}
    measure_kernels(convs, pools, elf, portable) -> {"cases", "per_tick", "same"}
    measure_layered(trainer, test_images, images, labels, elf) -> {"per_tick", "infer", "step", "correct",
                                                                   "same_scores", "same_state", ...}

The benchmark (benchmarks/firmware_icount.py) and `edgeff profile` on an emulated board both measure
through measure(); -icount counts instructions, not cycles. The training step's count depends on the samples
(rows whose gradient is zero in both passes are skipped), so both measure on the model's own training images.
measure_kernels() counts single CONV_2D and MAX_POOL_2D calls the same way, in the conv check firmware
(firmware/conv_check/), for benchmarks/conv_icount.py. measure_layered() runs a layered CwC model's decision and
training step in the CwC self-test firmware (firmware/cwc_selftest/), for benchmarks/conv_train_icount.py.
"""
import re
from pathlib import Path

import numpy as np

from edgeff.csrc import KERNELS
from edgeff.errors import EdgeFFError
from edgeff.profiler.hw_profile import FirmwareTarget
from edgeff.runtime.int_layered_training import IntLayeredTrainer
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainer, IntTrainingConfig
from firmware_bridge import conv_check, emulator, layered_firmware, selftest

# the benchmark's learning rate: small enough that a few samples keep the model sane, large enough to move weights
CONFIG = IntTrainingConfig(lr_shift=20)


def _fields(line: bytes) -> dict:
    return {k.decode(): v.decode() for k, v in re.findall(rb"(\w+)=(\w+)", line)}


def _per_tick(lines: dict) -> float:
    """Instructions per SysTick tick, from the firmware's calibration loop (systick_calibrate)."""
    cal = _fields(lines[b"EDGEFF-CALIBRATION"])
    return int(cal["instructions"]) / int(cal["ticks"])


def _parse(out: bytes, n: int) -> dict:
    """The self-test's lines in instructions: SysTick ticks times the calibration loop's instructions per tick."""
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(b"EDGEFF-")}
    per_tick = _per_tick(lines)
    result = _fields(lines[b"EDGEFF-SELFTEST"])
    layers = []
    for ln in out.splitlines():
        if ln.startswith(b"EDGEFF-LAYER"):
            f = _fields(ln)
            reps = int(f["reps"])
            layers.append({"macs": int(f["macs"]), "fc": int(f["fc_ticks"]) * per_tick / reps,
                           "whole": int(f["ticks"]) * per_tick / reps})
    return {"per_tick": per_tick, "layers": layers, "step": int(result["ticks"]) * per_tick / n,
            "correct": int(result["correct"]), "crc": int(result["crc"], 16)}


def measure(int_path, images: np.ndarray, labels: np.ndarray, elf: Path, config: IntTrainingConfig = CONFIG,
            kernels: Path = KERNELS, target: FirmwareTarget = emulator.TARGET) -> dict:
    """Build the self-test firmware for `target` (into `elf`, with the kernel library in `kernels`) around the
    int8 model at int_path and the samples (negatives drawn from a seeded generator), run it on its core and
    return, in instructions: `layers` (per FF layer its MACs, `fc`: the FullyConnected alone, `whole`:
    normalization, FC and goodness, one row), `step` (one training step, per sample), `per_tick` (the
    calibration), `correct`, and `same`: whether the firmware's trained weights equal the NumPy runtime's."""
    model = IntFFModel.from_file(int_path)
    if any(layer.norm_bits != 7 for layer in model.layers):
        raise EdgeFFError(f"{int_path}: the firmware's training step runs int8 normalized inputs; this model "
                          "normalizes to 16 bits (quantize it with --norm-bits 7 to measure it on the board)")
    n = len(labels)
    labels = np.asarray(labels, np.int64)
    negatives = (labels + 1 + np.random.default_rng(0).integers(0, model.n_classes - 1, n)) % model.n_classes
    trainer = IntTrainer(model, config)
    header = {"selftest_data.h": selftest.selftest_header(trainer, images, labels, negatives)}
    for i in range(n):
        trainer.step(images[i:i + 1], labels[i:i + 1], negatives[i:i + 1])
    emulator.build("selftest", elf, header, target=target, kernels=kernels)
    counts = _parse(emulator.run(elf, b"EDGEFF-SELFTEST", target=target), n)
    return {**counts, "same": counts.pop("crc") == selftest.state_crc(trainer), "elf": elf, "samples": n}


def measure_kernels(convs, pools, elf: Path, portable: bool = False, target: FirmwareTarget = emulator.TARGET) -> dict:
    """Build the conv check firmware (firmware/conv_check/) for `target` into `elf` around the CONV_2D and
    MAX_POOL_2D cases (firmware_bridge.conv_check's ConvCase, PoolCase), with the portable C loops instead of the
    core's DSP path when `portable`, run it and return, in instructions: `cases` (per case, convolutions then
    poolings: `instructions` of the one kernel call, `scratch` bytes it took), `per_tick` (the calibration), and
    `same`: whether every output equals the NumPy reference's."""
    emulator.build("conv_check", elf, {"conv_cases.h": conv_check.header(convs, pools)},
                   defines=["EDGEFF_PORTABLE_C"] if portable else [], target=target)
    out = emulator.run(elf, conv_check.MARKER, target=target)
    per_tick = _per_tick({ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(b"EDGEFF-CALIBRATION")})
    got = conv_check.parse(out)
    cases = [{"instructions": case["ticks"] * per_tick, "scratch": case["scratch"]} for case in got["cases"]]
    return {"cases": cases, "per_tick": per_tick, "same": got["crc"] == conv_check.expected_crc(convs, pools)}


def measure_layered(trainer: IntLayeredTrainer, test_images: np.ndarray, images: np.ndarray, labels: np.ndarray,
                    elf: Path, target: FirmwareTarget = emulator.TARGET) -> dict:
    """Build the CwC self-test firmware for `target` into `elf` around the trainer's layered model and state, run it
    (the decision on each test image, then one training step per sample) and train the trainer on the same samples
    (it is left trained). Returns, in instructions: `infer` (one inference: the decision and the one-pass head),
    `step` (one training step, per sample), `per_tick`; `correct` (the firmware's decisions before each update),
    and `same_scores` / `same_state`: whether the firmware's decisions, scores, head logits, and its trained
    filters, biases and masters, equal the NumPy runtime's."""
    labels = np.asarray(labels, np.int64)
    header = {"cwc_selftest_data.h": layered_firmware.selftest_header(trainer, test_images, images, labels)}
    expected_scores = layered_firmware.inference_crc(trainer.model, test_images)
    correct = sum(trainer.step(images[i:i + 1], labels[i:i + 1])["correct"] for i in range(len(labels)))
    emulator.build("cwc_selftest", elf, header, target=target)
    out = emulator.run(elf, b"EDGEFF-CWC-", target=target)   # its result line, or the scratch it lacked
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(b"EDGEFF-")}
    if b"EDGEFF-CWC-SELFTEST" not in lines:
        raise EdgeFFError(f"the CwC firmware stopped before its result line: {out[-300:]!r}")
    per_tick = _per_tick(lines)
    infer, result = _fields(lines[b"EDGEFF-CWC-INFER"]), _fields(lines[b"EDGEFF-CWC-SELFTEST"])
    return {"per_tick": per_tick, "infer": int(infer["ticks"]) * per_tick / max(len(test_images), 1),
            "step": int(result["ticks"]) * per_tick / max(len(labels), 1), "correct": int(result["correct"]),
            "runtime_correct": correct, "same_scores": int(infer["crc"], 16) == expected_scores,
            "same_state": int(result["crc"], 16) == layered_firmware.state_crc(trainer), "elf": elf,
            "samples": len(labels)}
