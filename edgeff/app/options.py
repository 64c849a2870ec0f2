"""What the `edgeff` subcommands share: argument types, common options, how results and progress are shown.

Every command that reports numbers takes --json and then prints exactly one JSON document on stdout;
progress bars go to stderr.
"""
import argparse
import json
import sys

from edgeff.errors import EdgeFFError

# what Ctrl-C leaves behind, per command (files are written atomically: none is ever half-written)
NOTHING_WRITTEN = "interrupted; nothing was written"
TRAINING_RESUMES = ("interrupted; the checkpoint of the last finished epoch stays in the output folder: run the "
                    "same command again to resume training from it")


class HelpWithDefaults(argparse.HelpFormatter):
    """Shows each option's default where its help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) \
                and "default" not in text:
            text += " (default: %(default)s)"
        return text


def add_command(sub, name: str, help_text: str, run, interrupted=NOTHING_WRITTEN) -> argparse.ArgumentParser:
    """A subcommand whose `run(args)` is called with its parsed arguments; `interrupted` is what Ctrl-C says."""
    sp = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpWithDefaults)
    sp.set_defaults(func=run, interrupted=interrupted)
    return sp


def at_least(low: int):
    """An argparse type: an integer of at least `low` (argparse then names the option and exits 2)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give {low} or more")
        return value
    return parse


def between(low: float, high: float, open_interval=False):
    """An argparse type: a finite number in [low, high], or in (low, high) with open_interval."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        inside = low < value < high if open_interval else low <= value <= high
        if not inside:   # also refuses nan, which compares false
            raise argparse.ArgumentTypeError(f"{text} must lie between {low} and {high}"
                                             + (" (both excluded)" if open_interval else ""))
        return value
    return parse


def int_list(option: str, text: str) -> list:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise EdgeFFError(f"{option} {text!r}: give comma-separated layer numbers such as 1,2") from None


def json_flag(sp):
    sp.add_argument("--json", action="store_true", help="print one machine-readable JSON document")


def data_dir_option(sp):
    sp.add_argument("--data-dir", help="MNIST-format IDX directory (default: $EDGEFF_DATA_DIR, then "
                                       "/usr/share/datasets/fashion-mnist)")


def val_fraction_option(sp):
    sp.add_argument("--val-fraction", type=between(0, 1, open_interval=True), metavar="F",
                    help="override [train] val_fraction: the part of the training images held out for "
                         "validation (default: the config's, else 1/6)")


def training_options(sp):
    """The integer training rule's options (`edgeff finetune` and `edgeff board train`)."""
    sp.add_argument("--lr-shift", type=int, default=22, help="learning rate 2^-N (default: %(default)s)")
    # a layered CwC model's rule has no gamma, FF loss or negatives: it ignores these three
    sp.add_argument("--gamma-shift", type=int, default=36,
                    help="A-CFF gamma learning rate 2^-N (FF MLPs; a layered CwC model ignores it)")
    sp.add_argument("--loss", choices=["symba", "softplus"], default="symba",
                    help="FF loss of the integer rule: SymBa's or the theta-softplus (FF MLPs; a layered CwC "
                         "model ignores it)")
    sp.add_argument("--negatives", choices=["random", "hard"], default="random",
                    help="how negative labels are drawn: uniformly random wrong, or the model's hardest (FF MLPs; "
                         "a layered CwC model ignores it)")
    sp.add_argument("--rounding", choices=["stochastic", "nearest"], default="stochastic",
                    help="how weight updates are rounded to the master weights' integers")
    sp.add_argument("--seed", type=int, default=0, help="seeds the sample order and stochastic rounding")


def training_config(args):
    from edgeff.runtime.int_training import IntTrainingConfig

    return IntTrainingConfig(lr_shift=args.lr_shift, gamma_shift=args.gamma_shift, loss=args.loss,
                             negatives=args.negatives, rounding=args.rounding, seed=args.seed)


def dataset_of(header: dict, data_dir):
    """The dataset a model was trained on, split the same way."""
    from edgeff.data.datasets import load_dataset

    split = header.get("data") or {}
    # the split recorded in the model file (a count), so every later stage validates on the same images
    data = load_dataset(data_dir, val_size=split.get("val_size"), split_seed=split.get("split_seed", 0))
    width = (header.get("architecture") or {}).get("sizes", [data.train.images.shape[1]])[0]
    if data.train.images.shape[1] != width:
        raise EdgeFFError(f"the model expects {width} input pixels, but {data.directory} has images of "
                          f"{data.train.images.shape[1]} pixels")
    return data


def progress_off(args) -> bool:
    """Progress bars go to stderr: off with --quiet, and with --json unless stderr is a terminal (a person
    watching), so a script capturing both streams gets its JSON and no bar noise."""
    return getattr(args, "quiet", False) or (args.json and not sys.stderr.isatty())


def print_result(args, payload: dict, text: str):
    print(json.dumps(payload, indent=2) if args.json else text)
