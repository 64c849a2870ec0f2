"""The firmware on QEMU's Cortex-M4 (mps2-an386): instructions per layer and per training step, and the
RAM and flash it links to, next to the memory plan the profiler uses.

1. Builds the self-test firmware (firmware_bridge/firmware/selftest) around the board network's int8 model
   and --samples training samples, runs it under `qemu-system-arm -icount shift=0` (one instruction per
   virtual nanosecond; SysTick at 25 MHz counts 40 instructions per tick, checked by a calibration loop),
   and checks that its trained weights equal the NumPy runtime's (CRC of every weight, master and bias).
2. Runs the board firmware (board_app) and trains it over its UART with the host's driver, as
   `edgeff board train --port qemu://` does, on --link-samples samples: samples/s over the emulated link,
   instructions per step (the board's own METRICS), the model's RAM on the board, the firmware's linked
   sizes, and whether the image read back equals the runtime's after the same samples.

    python benchmarks/firmware_icount.py [--model runs/bench-trainer/board-784-64-32/model.safetensors]
"""
import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import load_dataset
from edgeff.quant.ptq import quantize
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainer, IntTrainingConfig
from edgeff.runtime.memory_plan import plan_summary, training_plan
from firmware_bridge import emulator, selftest
from firmware_bridge.board_training import SampleStream, runtime_image, train_on_board
from firmware_bridge.driver import BoardLink


def fields(line: bytes) -> dict:
    return {k.decode(): v.decode() for k, v in re.findall(rb"(\w+)=(\w+)", line)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/bench-trainer/board-784-64-32/model.safetensors")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--link-samples", type=int, default=1000)
    args = p.parse_args()
    data = load_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        int_path = tmp / "board-int8.safetensors"
        quantize(args.model, int_path, data.train.images[:2000], data.train.labels[:2000], data.fingerprint)
        model = IntFFModel.from_file(int_path)
        n = args.samples
        images, labels = data.train.images[:n], data.train.labels[:n].astype(np.int64)
        negatives = (labels + 1 + np.random.default_rng(0).integers(0, model.n_classes - 1, n)) % model.n_classes
        trainer = IntTrainer(model, IntTrainingConfig(lr_shift=20))
        elf = emulator.build("selftest", tmp / "selftest.elf",
                             {"selftest_data.h": selftest.selftest_header(trainer, images, labels, negatives)})
        out = emulator.run(elf, b"EDGEFF-SELFTEST")
        plan = plan_summary(training_plan(model.arch["sizes"], model.n_classes, model.head_layers))
        report_selftest(model, trainer, out, linked_sizes(elf), plan, images, labels, negatives)
        over_the_link(int_path, data, args.link_samples, plan)


def report_selftest(model, trainer, out: bytes, section: dict, plan: dict, images, labels, negatives):
    n = len(labels)
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith(b"EDGEFF-")}
    cal = fields(lines[b"EDGEFF-CALIBRATION"])
    per_tick = int(cal["instructions"]) / int(cal["ticks"])
    for i in range(n):
        trainer.step(images[i:i + 1], labels[i:i + 1], negatives[i:i + 1])
    result = fields(lines[b"EDGEFF-SELFTEST"])
    same = int(result["crc"], 16) == selftest.state_crc(trainer)

    print(f"network {model.arch['sizes']}, {n} training samples on the emulated Cortex-M4; calibration: "
          f"{per_tick:.2f} instructions per SysTick tick; trained weights equal to the NumPy runtime's: {same}\n")
    print("| layer | MACs | FC forward: instructions | per MAC | whole layer (L2 norm, FC, goodness) | per MAC |")
    print("|---|---|---|---|---|---|")
    for ln in out.splitlines():
        if ln.startswith(b"EDGEFF-LAYER"):
            f = fields(ln)
            macs, reps = int(f["macs"]), int(f["reps"])
            fc, whole = (int(f[k]) * per_tick / reps for k in ("fc_ticks", "ticks"))
            print(f"| {int(f['index']) + 1} | {macs:,} | {fc:,.0f} | {fc / macs:.2f} | {whole:,.0f} | "
                  f"{whole / macs:.2f} |")
    step = int(result["ticks"]) * per_tick / n
    print(f"\nOne training step (positive and negative pass, goodness, CFF coupling, the update of every weight "
          f"row): {step:,.0f} instructions per sample; {result['correct']} of {n} samples had the positive "
          "goodness above the negative.\n")
    ram = section.get("data", 0) + section.get("bss", 0)
    print("| memory (bytes) | firmware, from the linker | memory plan (edgeff memory-plan) |")
    print("|---|---|---|")
    print(f"| RAM: .data + .bss (stack of {section.get('stack', 0):,} besides) | {ram:,} | {plan['sram_bytes']:,} |")
    print(f"| flash: .text (code, constants, the {n} samples) + .data's load image | "
          f"{section.get('text', 0) + section.get('data', 0):,} | {plan['flash_bytes']:,} |")


def linked_sizes(elf: Path) -> dict:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    return {m[0]: int(m[1]) for m in re.findall(r"^\.(\w+)\s+(\d+)", out, re.M)}


def over_the_link(int_path: Path, data, samples: int, plan: dict):
    """The board firmware trained over its UART by the host's driver."""
    config = IntTrainingConfig(lr_shift=20)
    stream = SampleStream(data.train.images, data.train.labels, samples)
    elf = emulator.board_firmware()
    section = linked_sizes(elf)
    with emulator.EmulatedBoard() as board, BoardLink(board.url, timeout=1.0) as link:
        result = train_on_board(link, int_path, stream, config, checkpoint_every=max(samples // 2, 1), quiet=True)
        info = link.hello()
    same = result["image"] == runtime_image(int_path, stream, config)
    instructions = result["board_compute_us_per_sample"] * 1000     # SysTick us at one instruction per ns
    used = info.sram_budget - info.sram_free
    print(f"\nThe board firmware (board_app) trained over its UART by `edgeff board train`'s driver: {samples} "
          f"samples, lr 2^-20, random negatives drawn on the board; image read back equal to the NumPy runtime's: "
          f"{same}\n")
    print("| figure | board firmware | memory plan |")
    print("|---|---|---|")
    print(f"| samples/s over the emulated UART (QEMU's socket, not baud-limited) | {result['samples_per_s']:.1f} | - |")
    print(f"| instructions per training step (board's METRICS, random negative included) | {instructions:,.0f} | - |")
    print(f"| model in RAM: image with master weights + working buffers + staged sample (B) | {used:,} | "
          f"{plan['sram_bytes']:,} |")
    print(f"| RAM linked: .data + .bss, holding a model of up to {info.sram_budget:,} B (stack of "
          f"{section.get('stack', 0):,} besides) | {section.get('data', 0) + section.get('bss', 0):,} | - |")
    print(f"| flash: .text + .data's load image (code and constants; no model) | "
          f"{section.get('text', 0) + section.get('data', 0):,} | - |")
    print(f"| model load / pull over the link (s) | {result['seconds_by_phase']['load']:.1f} / "
          f"{result['seconds_by_phase']['pull']:.1f} | - |")


if __name__ == "__main__":
    main()
