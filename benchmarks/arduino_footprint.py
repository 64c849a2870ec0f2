"""RAM and flash of the Arduino library that `edgeff export --format arduino` writes, linked with its example
sketch for a Cortex-M4F with the nRF52840's 1 MB of flash and 256 KB of SRAM (firmware_bridge/arduino_build.py:
arm-none-eabi-gcc against a stand-in for the Arduino core), next to the memory plan of the model's training
(`edgeff memory-plan`) and the board's budget. The board core's own RAM (USB stack, Serial buffers) comes on
top on a real board and is not counted.

    python benchmarks/arduino_footprint.py --model MODEL_INT8 [--last-k K] [--json]

A layered (conv) model's plan is its integer training's on the blocks --last-k trains (edgeff memory-plan's).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.model_file import is_layered, load_model
from edgeff.profiler.hw_profile import load_profile
from edgeff.runtime.memory_plan import layered_training_plan, plan_summary, training_plan
from firmware_bridge import arduino_build
from firmware_bridge.arduino_library import BOARD, export_arduino
from firmware_bridge.board_export import IMAGE_CONFIG
from firmware_bridge.board_training import load_board_trainer

# what each of the library's RAM objects is (the C names as the linker sees them)
RAM_OBJECTS = {"image": "model image, trained in place (weights, master weights, constants)",
               "scratch": "training step's buffers and the four staging slots (a record and its bitmap each)",
               "received": "received frame", "reply": "reply frame being sent",
               "current": "the protocol's reply being built (sized for the largest payload, 4,096)",
               "unused": "the protocol's second reply buffer (as large)",
               "edgeff": "the EdgeFFBoard object (board state, frame decoder)"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="int8 model file (edgeff quantize)")
    p.add_argument("--last-k", type=int, help="a layered (conv) model: the blocks it trains (default: every block)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        written = export_arduino(args.model, Path(tmp) / "EdgeFF", args.last_k)
        print("linking the library for a Cortex-M4F", file=sys.stderr)
        footprint = arduino_build.build_cortex_m(written["out"], Path(tmp) / "build")
    arch = load_model(args.model)[1]["architecture"]
    if is_layered(arch):
        trainer, _ = load_board_trainer(args.model, IMAGE_CONFIG, args.last_k)
        plan = plan_summary(layered_training_plan(trainer.model, trainer.trained, "ff"))
        network = (f"layers {', '.join(layer['kind'] for layer in arch['layers'])}, blocks "
                   f"{', '.join(str(i + 1) for i in trainer.trained)} trained")
    else:
        plan = plan_summary(training_plan(arch["sizes"], arch["n_classes"], arch["head_layers"]))
        network = f"network {arch['sizes']}"
    board = load_profile(BOARD)
    result = {"model": args.model, "sizes": arch["sizes"], "network": network, "board": BOARD, "footprint": footprint,
              "plan": plan, "board_sram_available": board.sram_bytes - board.sram_reserved_bytes}
    if args.json:
        footprint.pop("elf")
        print(json.dumps(result, indent=2))
        return
    print(f"{network}, linked for a Cortex-M4F ({BOARD}: {board.flash_bytes:,} bytes of flash, "
          f"{board.sram_bytes:,} of SRAM)\n")
    print("| RAM object | bytes | what |")
    print("|---|---|---|")
    symbols = footprint["ram_symbols"]
    for name, size in sorted(symbols.items(), key=lambda kv: -kv[1]):
        print(f"| `{name}` | {size:,} | {RAM_OBJECTS.get(name, 'the stand-in core')} |")
    print("\n| memory (bytes) | library + sketch, from the linker | memory plan (edgeff memory-plan) | board |")
    print("|---|---|---|---|")
    print(f"| RAM: .data + .bss (stack of {footprint['stack_bytes']:,} besides) | {footprint['ram_bytes']:,} | "
          f"{plan['sram_bytes']:,} | {result['board_sram_available']:,} (of {board.sram_bytes:,}, less the "
          f"profile's reserve) |")
    print(f"| flash: code, constants, the compiled-in model | {footprint['flash_bytes']:,} | "
          f"{plan['flash_bytes']:,} | {board.flash_bytes:,} |")


if __name__ == "__main__":
    main()
