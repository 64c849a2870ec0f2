"""`edgeff sweep SPEC.toml`: run a sweep of training trials on Ray (resumable); `edgeff sweep report RESULTS`:
its statistics and training-dynamics report (docs/sweep.md)."""
import os
from pathlib import Path

from edgeff.app.options import add_command, at_least, between, json_flag, print_result, progress_off
from edgeff.atomic_write import check_out_path
from edgeff.errors import EdgeFFError

RESULTS_NAME = "results.csv"
INTERRUPTED = ("interrupted; the results table holds every trial that finished: run the same command again to "
               "run the rest")


def register(sub):
    sp = add_command(sub, "sweep", "Run a sweep (configs x overrides x seeds, each trial a Ray task; resumable), "
                                   "or `edgeff sweep report RESULTS` for its statistics and plots.", run,
                     interrupted=INTERRUPTED)
    sp.add_argument("spec", metavar="SPEC.toml|report", help="sweep spec to run, or `report` to analyse a results "
                                                             "table")
    sp.add_argument("results", nargs="?", metavar="RESULTS",
                    help="with `report`: the results table (results.csv) or the folder holding it")
    run_group = sp.add_argument_group("running a sweep")
    run_group.add_argument("--out", help="folder of the results table (default: runs/sweeps/<spec name>)")
    run_group.add_argument("--address", help="Ray cluster to run on, from one of its nodes: its head's "
                                             "HEAD:6379 (default: $RAY_ADDRESS, else Ray started here)")
    run_group.add_argument("--cpus", type=at_least(1), help="CPUs a local Ray may use (default: all cores)")
    report_group = sp.add_argument_group("report")
    report_group.add_argument("--metric", default="test_multi_pass",
                              help="the column compared between variants")
    report_group.add_argument("--fraction", type=between(0, 1, open_interval=True), default=0.95,
                              help="a layer's delay: epochs until it first reaches this fraction of its final "
                                   "accuracy")
    report_group.add_argument("--plots", help="folder for the PNG plots (default: beside the table)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    json_flag(sp)


def _refuse(args, options, mode):
    given = [o for o in options if getattr(args, o.lstrip("-")) is not None]
    if given:
        raise EdgeFFError(f"{', '.join(given)}: not an option {mode} (see edgeff sweep --help)")


def run(args):
    if args.spec == "report":
        _refuse(args, ["--out", "--address", "--cpus"], "of `edgeff sweep report`")
        return report(args)
    _refuse(args, ["--plots"], "for running a sweep; it is the report's")
    if args.results is not None:
        raise EdgeFFError(f"edgeff sweep takes one spec; {args.results!r} is extra (to analyse a table: "
                          "`edgeff sweep report RESULTS`)")
    if args.cpus is not None and (args.address or os.environ.get("RAY_ADDRESS")):
        raise EdgeFFError("--cpus sizes a Ray started here; a cluster (--address or $RAY_ADDRESS) has its own "
                          "CPUs, so drop --cpus")
    from edgeff.sweep.extras import RUNNING, require

    require(RUNNING)   # before any work: the runner imports torch and Ray
    from edgeff.sweep.runner import run_sweep
    from edgeff.sweep.spec import load_spec

    spec_path = Path(args.spec)
    out = check_out_path(args.out or Path("runs") / "sweeps" / spec_path.stem, directory=True)
    spec = load_spec(spec_path, results_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / RESULTS_NAME
    summary = run_sweep(spec, results, address=args.address, cpus=args.cpus, quiet=progress_off(args))
    print_result(args, summary,
                 f"sweep {spec.name}: {summary['ran']} trials run ({summary['failed']} failed), "
                 f"{summary['skipped']} already done; results in {results}\n"
                 f"report: edgeff sweep report {results}")
    return 1 if summary["failed"] else 0


def report(args):
    from edgeff.sweep.extras import REPORTING, require

    require(REPORTING)
    from edgeff.sweep.report import build_report, report_text

    if args.results is None:
        raise EdgeFFError("edgeff sweep report needs the results table: edgeff sweep report RESULTS.csv")
    path = Path(args.results)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise EdgeFFError(f"{path}: no results table there (edgeff sweep writes <out>/{RESULTS_NAME})")
    plots = check_out_path(args.plots or path.parent, directory=True, option="--plots")
    result = build_report(path, metric=args.metric, fraction=args.fraction, plot_dir=plots)
    print_result(args, result, report_text(result))
