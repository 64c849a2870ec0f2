"""Instructions per inference and per integer training step of a layered int8 CwC model on an emulated board's core
(--board: mps2-an386, the Cortex-M4, by default), training its last K blocks (--last-k; every K by default), and
the linked firmware's RAM and flash set against the memory plan. An inference is the decision and the one-pass head.

For each K, builds the CwC self-test firmware (firmware_bridge/firmware/cwc_selftest/) around the int8 model and
its trainer (--lr-shift, stochastic rounding, seed 0), the first --test-images test images and the first --samples
training images, runs it under `qemu-system-arm -icount shift=0` (firmware_bridge/instruction_counts.py:
SysTick ticks times the calibration loop's instructions per tick) and checks its decisions and scores and its
trained filters, biases and masters against the NumPy runtime's on the same samples. The inference's own buffer (the
head's input) and arrays are the firmware's beside the plan, which plans a training step. The firmware's buffers are
the memory plan's (firmware_bridge/layered_firmware.py): the table checks every planned symbol's size in the ELF,
then sets the linked sections beside the plan's totals: RAM = .data + .bss (+ the descriptor's stack); flash =
.text less the compiled-in samples (code and the model's read-only arrays, the planned flash buffers among them),
and apart from it .data's initial values (what the SRAM arrays start from: a board that loads its model over the
link needs no flash for them).

    python benchmarks/conv_train_icount.py INT8_MODEL [--last-k K] [--samples 16] [--test-images 8] \\
        [--lr-shift 16] [--board mps2-an386] [--data-dir D] [--json]
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.app.options import dataset_of
from edgeff.model_file import load_model
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer, trainable_layers
from edgeff.runtime.int_training import IntTrainingConfig
from edgeff.runtime.memory_plan import plan_summary
from firmware_bridge import emulator, instruction_counts, layered_firmware

SAMPLE_SYMBOLS = ("cwc_test_images", "cwc_images", "cwc_labels")   # the compiled-in data, not the model's


def forward_macs(model) -> int:
    """Multiply-accumulates of one inference: every convolution's output values times its filter's taps, and the
    head's."""
    convs = sum(int(np.prod(layer.conv_size)) * layer.weight.size for spec, layer in
                zip(model.description.layers, model.layers, strict=True) if spec.kind == "conv2d")
    return convs + model.head.weight.size


def measure(path, last_k: int, data, args, target, work: Path) -> dict:
    model = IntLayeredModel.from_file(path)
    trainer = IntLayeredTrainer(model, IntTrainingConfig(lr_shift=args.lr_shift), last_k)
    plan = plan_summary(layered_firmware.training_plan(trainer))
    got = instruction_counts.measure_layered(trainer, data.test.images[:args.test_images],
                                             data.train.images[:args.samples], data.train.labels[:args.samples],
                                             work / f"cwc-k{last_k}.elf", target)
    symbols = emulator.symbol_sizes(got["elf"])
    planned = layered_firmware.planned_symbols(trainer)
    matching = sum(symbols.get(s, (None, None)) == (b.bytes, b.region) for s, b in planned)
    sections = emulator.linked_sections(got["elf"])
    samples = sum(symbols[s][0] for s in SAMPLE_SYMBOLS)
    planned_flash = sum(b.bytes for s, b in planned if b.region == "flash")
    return {"last_k": last_k, "trained_layers": [i + 1 for i in trainer.trained], "macs": forward_macs(model),
            "inference": got["infer"], "step": got["step"], "same": got["same_scores"] and got["same_state"],
            "plan_sram": plan["sram_bytes"], "plan_flash": plan["flash_bytes"],
            "linked_ram": sections["data"] + sections["bss"], "stack": sections.get("stack", 0),
            "linked_flash": sections["text"] - samples, "linked_planned_flash": planned_flash,
            "data_initial_values": sections["data"],
            "planned_symbols": len(planned), "matching_symbols": matching}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="int8 layered (cwc) model file")
    ap.add_argument("--last-k", type=int, help="trained blocks (default: every K from 1 to all)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--test-images", type=int, default=8)
    ap.add_argument("--lr-shift", type=int, default=16)
    ap.add_argument("--board", default=emulator.DEFAULT_BOARD)
    ap.add_argument("--data-dir")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    target = emulator.target_of(args.board)
    _, header = load_model(args.model)
    data = dataset_of(header, args.data_dir)
    n_trainable = len(trainable_layers(IntLayeredModel.from_file(args.model)))
    ks = [args.last_k] if args.last_k else list(range(1, n_trainable + 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in ks:
            print(f"last {k} block(s): building and running the CwC self-test firmware", file=sys.stderr)
            rows.append(measure(args.model, k, data, args, target, Path(tmp)))
    if args.json:
        print(json.dumps({"board": args.board, "samples": args.samples, "test_images": args.test_images,
                          "rows": rows}))
        return 0
    print(f"{args.board}: {args.samples} training steps, {args.test_images} inferences (instructions, -icount)")
    print("| trained blocks | inference | instr/MAC | training step | step / inference | SRAM plan | RAM linked "
          "(.data + .bss) | + stack | flash plan | .text less samples | of it planned | .data initial values "
          "| plan symbols | bit-exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {', '.join(map(str, r['trained_layers']))} | {r['inference']:,.0f} "
              f"| {r['inference'] / r['macs']:.2f} "
              f"| {r['step']:,.0f} | {r['step'] / r['inference']:.2f} | {r['plan_sram']:,} | {r['linked_ram']:,} "
              f"| {r['stack']:,} | {r['plan_flash']:,} | {r['linked_flash']:,} | {r['linked_planned_flash']:,} "
              f"| {r['data_initial_values']:,} "
              f"| {r['matching_symbols']}/{r['planned_symbols']} | {'yes' if r['same'] else 'NO'} |")
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
