"""`edgeff verify`: run an export in its own runtime and compare it with EdgeFF (exit status 1 on a miss)."""
import sys

from edgeff.app.options import add_command, at_least, data_dir_option, dataset_of, json_flag, print_result, progress_off
from edgeff.errors import EdgeFFError


def register(sub):
    sp = add_command(sub, "verify", "Run an exported .onnx, .tflite or c-header .h file in its own runtime on the "
                                    "test split (onnxruntime; TensorFlow Lite Micro and LiteRT) and compare it with "
                                    "EdgeFF: a parity table of differences, agreeing predictions and accuracy, and a "
                                    "verdict. Exit status 1 when a runtime misses its policy (bit-exact, or the "
                                    "stated tolerance of runtimes that round differently).", run)
    sp.add_argument("model", help="the model file that was exported")
    sp.add_argument("exported", help="the exported .onnx, .tflite or c-header .h file")
    sp.add_argument("--images", type=at_least(1), help="test images to run (default: all)")
    data_dir_option(sp)
    json_flag(sp)


def run(args):
    from edgeff.export.verify import parity_table, verdict_line, verify
    from edgeff.model_file import load_model

    _, header = load_model(args.model)
    data = dataset_of(header, args.data_dir)
    n = args.images or len(data.test)
    if n > len(data.test):
        raise EdgeFFError(f"--images must be between 1 and {len(data.test)}")
    result = verify(args.model, args.exported, data.test.images[:n], data.test.labels[:n],
                    progress=not progress_off(args))
    print_result(args, result, parity_table(result))
    if args.json:   # the table ends with the verdict; a script reading JSON still sees it on stderr
        print(verdict_line(result), file=sys.stderr)
    return 1 if result["verdict"] == "fail" else 0
