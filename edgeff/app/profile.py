"""`edgeff profile`: memory and energy per layer on a board, FF against backprop."""
from edgeff.app.options import add_command, at_least, json_flag, print_result
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
    json_flag(sp)


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
    result = profile_model(args.model, args.board, args.batch, args.measure, args.out, torch_peaks)
    print_result(args, result, format_table(result))
