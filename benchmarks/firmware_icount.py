"""The firmware on an emulated board (--board: mps2-an386, the Cortex-M4, by default; mps2-an500, the
Cortex-M7; netduinoplus2, the STM32F405): instructions per layer and per training step, and the RAM and flash
it links to, next to the memory plan the profiler uses.

1. Builds the self-test firmware (firmware_bridge/firmware/selftest) around the board network's int8 model
   and --samples training samples, runs it under `qemu-system-arm -icount shift=0` (one instruction per
   virtual nanosecond; SysTick at the board's clock, 25 MHz on the MPS2 boards: 40 instructions per tick,
   168 MHz on the netduinoplus2: 5.95, checked by a calibration loop),
   and checks that its trained weights equal the NumPy runtime's (CRC of every weight, master and bias).
   With --baseline REV it builds the same self-test a second time with the kernel library of git revision
   REV (edgeff/csrc/kernels as committed there) and prints both side by side: the training step's
   instructions per sample and each layer's instructions per MAC, before and after.
2. Runs the board firmware (board_app) and trains it over its UART with the host's driver, as
   `edgeff board train --port qemu://` does, on --link-samples samples: samples/s over the emulated link,
   instructions per step (the board's own METRICS), the model's RAM on the board, the firmware's linked
   sizes, and whether the image read back equals the runtime's after the same samples.

    python benchmarks/firmware_icount.py [--model runs/bench-trainer/board-784-64-32/model.safetensors]
        [--board mps2-an386] [--baseline 1eda620] [--link-samples 0 (skips part 2)]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.quant.ptq import quantize
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainingConfig
from edgeff.runtime.memory_plan import plan_summary, training_plan
from firmware_bridge import emulator, instruction_counts
from firmware_bridge.board_training import SampleStream, runtime_image, train_on_board
from firmware_bridge.driver import BoardLink

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="runs/bench-trainer/board-784-64-32/model.safetensors")
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--link-samples", type=int, default=1000)
    p.add_argument("--baseline", metavar="REV", help="git revision whose kernel library to measure beside this one")
    p.add_argument("--board", default=emulator.DEFAULT_BOARD,
                   help="the emulated board (a hardware profile with a [firmware] table; default: %(default)s)")
    args = p.parse_args()
    target = emulator.target_of(args.board)
    data = load_dataset()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        baseline = kernels_at(args.baseline, tmp / "baseline") if args.baseline else None   # refused at once
        int_path = tmp / "board-int8.safetensors"
        quantize(args.model, int_path, data.train.images[:2000], data.train.labels[:2000], data.fingerprint)
        model = IntFFModel.from_file(int_path)
        n = args.samples
        images, labels = data.train.images[:n], data.train.labels[:n]
        now = instruction_counts.measure(int_path, images, labels, tmp / "selftest.elf", target=target)
        plan = plan_summary(training_plan(model.arch["sizes"], model.n_classes, model.head_layers))
        report_selftest(model, now, emulator.linked_sections(now["elf"]), plan, n, target)
        if baseline:
            print(f"building the self-test with the kernels of {args.baseline}", file=sys.stderr)
            report_against(args.baseline, instruction_counts.measure(int_path, images, labels, tmp / "baseline.elf",
                                                                     kernels=baseline, target=target), now)
        if args.link_samples:
            over_the_link(int_path, data, args.link_samples, plan, target)


def kernels_at(rev: str, into: Path) -> Path:
    """edgeff/csrc/kernels as committed at git revision `rev`, written into `into`."""
    def git(*args) -> bytes:
        got = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True)
        if got.returncode != 0:
            raise EdgeFFError(f"--baseline {rev}: git has no kernel library at that revision "
                              f"({got.stderr.decode().strip()}); give a commit of this repository, such as 1eda620")
        return got.stdout

    into.mkdir(parents=True)
    for name in git("ls-tree", "--name-only", f"{rev}:edgeff/csrc/kernels").decode().split():
        (into / name).write_bytes(git("show", f"{rev}:edgeff/csrc/kernels/{name}"))
    return into


def report_selftest(model, now: dict, section: dict, plan: dict, n: int, target):
    print(f"network {model.arch['sizes']}, {n} training samples on the emulated {target.board_name} "
          f"({target.qemu_machine}, {' '.join(target.cpu_flags)}); calibration: "
          f"{now['per_tick']:.2f} instructions per SysTick tick; trained weights equal to the NumPy runtime's: "
          f"{now['same']}\n")
    print("| layer | MACs | FC forward: instructions | per MAC | whole layer (L2 norm, FC, goodness) | per MAC |")
    print("|---|---|---|---|---|---|")
    for i, layer in enumerate(now["layers"]):
        macs, fc, whole = layer["macs"], layer["fc"], layer["whole"]
        print(f"| {i + 1} | {macs:,} | {fc:,.0f} | {fc / macs:.2f} | {whole:,.0f} | {whole / macs:.2f} |")
    print(f"\nOne training step (positive and negative pass, goodness, CFF coupling, the update of every weight "
          f"row): {now['step']:,.0f} instructions per sample; {now['correct']} of {n} samples had the positive "
          "goodness above the negative.\n")
    ram = section.get("data", 0) + section.get("bss", 0)
    print("| memory (bytes) | firmware, from the linker | memory plan (edgeff memory-plan) |")
    print("|---|---|---|")
    print(f"| RAM: .data + .bss (stack of {section.get('stack', 0):,} besides) | {ram:,} | {plan['sram_bytes']:,} |")
    print(f"| flash: .text (code, constants, the {n} samples) + .data's load image | "
          f"{section.get('text', 0) + section.get('data', 0):,} | {plan['flash_bytes']:,} |")


def report_against(rev: str, before: dict, now: dict):
    """The same self-test built with the kernels of `rev` and of this tree, side by side."""
    print(f"\nThe same self-test with the kernel library of {rev} and of this tree (trained weights equal to the "
          f"NumPy runtime's: {before['same']} and {now['same']}):\n")
    print(f"| figure | {rev} | this tree |")
    print("|---|---|---|")
    print(f"| training step: instructions per sample | {before['step']:,.0f} | {now['step']:,.0f} |")
    for i, (old, new) in enumerate(zip(before["layers"], now["layers"], strict=True)):
        for key, what in (("fc", "FC forward"), ("whole", "whole layer (L2 norm, FC, goodness)")):
            print(f"| layer {i + 1}, {what}: instructions per MAC | {old[key] / old['macs']:.2f} | "
                  f"{new[key] / new['macs']:.2f} |")


def over_the_link(int_path: Path, data, samples: int, plan: dict, target):
    """The board firmware trained over its UART by the host's driver."""
    config = IntTrainingConfig(lr_shift=20)
    stream = SampleStream(data.train.images, data.train.labels, samples)
    elf = emulator.board_firmware(target=target)
    section = emulator.linked_sections(elf)
    with emulator.EmulatedBoard(target=target) as board, BoardLink(board.url, timeout=1.0) as link:
        result = train_on_board(link, int_path, stream, config, checkpoint_every=max(samples // 2, 1), quiet=True)
        info = link.hello()
    same = result["image"] == runtime_image(int_path, stream, config)
    instructions = result["board_compute_us_per_sample"] * 1000     # SysTick us at one instruction per ns
    used = info.sram_budget - info.sram_free
    print(f"\nThe board firmware (board_app) on {target.board_name} trained over its UART by `edgeff board train`'s "
          f"driver: {samples} samples, lr 2^-20, random negatives drawn on the board; image read back equal to the "
          f"NumPy runtime's: {same}; checkpoints kept: {result['checkpoints_kept']}\n")
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
    try:
        main()
    except EdgeFFError as exc:
        sys.exit(f"error: {exc}")
