"""`edgeff profile`: memory and energy per layer on a board, FF against backprop. On a board whose core QEMU
emulates, the int8 cycles of an int8 model are the instructions its firmware runs there (the board link's
self-test, handed to the profiler as data), when the ARM toolchain and QEMU are installed."""
import shutil
import sys
import tempfile
from pathlib import Path

from edgeff.app.options import add_command, at_least, data_dir_option, dataset_of, json_flag, print_result
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError


def register(sub):
    sp = add_command(sub, "profile", "Memory and energy per layer of training and inference on a board, "
                                     "Forward-Forward against backprop; a table (or --json) and PNG plots.", run)
    sp.add_argument("model", help="float or int8 model file")
    sp.add_argument("--board", required=True, help="a board name (e.g. nrf52840; see edgeff/hw_profiles/) or a .toml "
                                                        "path")
    sp.add_argument("--batch", type=at_least(1), default=1, help="training batch size (default: 1, as a board)")
    sp.add_argument("--measure", action="store_true",
                    help="also measure host training peaks (torch float32, needs the `train` extra; NumPy int8 "
                         "for int8 models)")
    sp.add_argument("--out", default="reports/profile", help="folder for the PNG plots (default: %(default)s)")
    sp.add_argument("--no-emulate", action="store_true",
                    help="keep the estimated int8 cycles on a board whose core is emulated (by default they are "
                         "the instructions the int8 model's firmware runs under QEMU on the model's first "
                         "training images, --data-dir, measured in a few seconds when arm-none-eabi-gcc and "
                         "qemu-system-arm are installed: a measurement beats a per-MAC guess, and it costs only "
                         "a firmware build)")
    data_dir_option(sp)
    json_flag(sp)

# what the emulated measurement needs, with the apt package of each
TOOLS = {"arm-none-eabi-gcc": "gcc-arm-none-eabi", "qemu-system-arm": "qemu-system-arm"}
SAMPLES = 20   # training steps the self-test times: a step's count depends on its sample (skipped zero rows)


def emulated_instructions(model_path, board: str, data_dir=None):
    """The int8 model's instructions on the board's emulated core (firmware_bridge.instruction_counts), or
    None with a one-line notice on stderr saying why the estimate stays and how to get measured figures."""
    from edgeff.model_file import load_model
    from edgeff.profiler.energy_model import MeasuredInstructions
    from edgeff.profiler.hw_profile import load_profile

    target = load_profile(board).firmware
    if target is None:
        return None
    why = None
    header = load_model(model_path)[1]
    if not (header.get("quantization") or {}).get("layers"):
        why = "the model is a float model file; quantize it (edgeff quantize) to measure its int8 firmware"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if why is None and missing:
        one = len(missing) == 1
        why = (f"{' and '.join(missing)} {'is' if one else 'are'} not installed; install {'it' if one else 'them'} "
               f"(apt-get install {' '.join(TOOLS[t] for t in missing)}) to measure the instructions on the "
               "emulated core")
    if why is None:
        from firmware_bridge import instruction_counts

        try:
            data = dataset_of(header, data_dir).train
            print(f"measuring the int8 model's instructions on the emulated {target.board_name} (building and "
                  f"running the self-test firmware on {SAMPLES} training images)...", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp:
                counts = instruction_counts.measure(model_path, data.images[:SAMPLES], data.labels[:SAMPLES],
                                                    Path(tmp) / "selftest.elf", target=target)
        except EdgeFFError as exc:
            why = str(exc).splitlines()[0]
        else:
            if not counts["same"]:
                raise EdgeFFError("the self-test firmware's trained weights differ from the NumPy runtime's, so "
                                  "its instruction counts are not this model's; run tests/test_firmware_qemu.py")
            return MeasuredInstructions(tuple(layer["whole"] for layer in counts["layers"]), counts["step"])
    print(f"note: the int8 cycles on {board} are estimates: {why}", file=sys.stderr)
    return None


def run(args):
    from edgeff.profiler.profile_report import format_table, profile_model

    check_out_path(args.out, directory=True)
    torch_peaks = None
    if args.measure:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise EdgeFFError("--measure also measures torch training, and torch is not installed: install "
                              "EdgeFF's train extra (pip install 'edgeff[train]'), or profile without --measure")
        from edgeff.train.torch_memory import measure_torch

        torch_peaks = measure_torch
    instructions = None if args.no_emulate else emulated_instructions(args.model, args.board, args.data_dir)
    result = profile_model(args.model, args.board, args.batch, args.measure, args.out, torch_peaks, instructions)
    print_result(args, result, format_table(result))
