"""`edgeff verify`: run an export in its own runtime and compare it with EdgeFF (exit status 1 on a miss); a NIR
graph runs in EdgeFF's spiking simulator against the ANN, over a list of time steps."""
import sys

from edgeff.app.options import add_command, at_least, data_dir_option, dataset_of, json_flag, print_result, progress_off
from edgeff.errors import EdgeFFError


def register(sub):
    sp = add_command(sub, "verify", "Run an exported .onnx, .tflite or c-header .h file in its own runtime on the "
                                    "test split (onnxruntime; TensorFlow Lite Micro and LiteRT) and compare it with "
                                    "EdgeFF: a parity table of differences, agreeing predictions and accuracy, and a "
                                    "verdict. Exit status 1 when a runtime misses its policy (bit-exact, or the "
                                    "stated tolerance of runtimes that round differently). A .nir graph runs in "
                                    "EdgeFF's NIR simulator for each --timesteps: accuracy, agreement with the ANN, "
                                    "synaptic operations and energy per inference; exit status 1 when no T comes "
                                    "within 1 point of the ANN's accuracy.", run)
    sp.add_argument("model", help="the model file that was exported")
    sp.add_argument("exported", help="the exported .onnx, .tflite, c-header .h or .nir file")
    sp.add_argument("--images", type=at_least(1), help="test images to run (default: all)")
    sp.add_argument("--timesteps", default="4,8,16,32,64,128,256", metavar="T,T,...",
                    help=".nir: the numbers of simulation steps to report")
    sp.add_argument("--mcu", default="nrf52840", metavar="BOARD",
                    help=".nir: the MCU profile whose int8 inference energy the spiking energy is set against")
    sp.add_argument("--multi-pass", action="store_true",
                    help=".nir: also score multi-pass goodness from spike rates, running the graph once per label "
                         "(ten times the simulation)")
    sp.add_argument("--plot", metavar="PATH", help=".nir: write the accuracy-against-T curve as a PNG here")
    data_dir_option(sp)
    json_flag(sp)


def _run_nir(args, data, n) -> int:
    from edgeff.atomic_write import check_out_path
    from edgeff.export.nir_verify import parse_timesteps, plot, table, verdict_line, verify_nir

    timesteps = parse_timesteps(args.timesteps)
    if args.plot:
        check_out_path(args.plot, inputs=[args.model, args.exported], option="--plot")
    result = verify_nir(args.model, args.exported, data.test.images[:n], data.test.labels[:n], timesteps, args.mcu,
                        args.multi_pass, progress=not progress_off(args))
    if args.plot:
        result["plot"] = str(plot(result, args.plot))
    print_result(args, result, table(result) + (f"\nplot: {result['plot']}" if args.plot else ""))
    if args.json:
        print(verdict_line(result), file=sys.stderr)
    return 1 if result["verdict"] == "fail" else 0


def run(args):
    from edgeff.export.verify import parity_table, verdict_line, verify
    from edgeff.model_file import load_model

    _, header = load_model(args.model)
    data = dataset_of(header, args.data_dir)
    n = args.images or len(data.test)
    if n > len(data.test):
        raise EdgeFFError(f"--images must be between 1 and {len(data.test)}")
    if args.exported.lower().endswith(".nir"):
        return _run_nir(args, data, n)
    result = verify(args.model, args.exported, data.test.images[:n], data.test.labels[:n],
                    progress=not progress_off(args))
    print_result(args, result, parity_table(result))
    if args.json:   # the table ends with the verdict; a script reading JSON still sees it on stderr
        print(verdict_line(result), file=sys.stderr)
    return 1 if result["verdict"] == "fail" else 0
