"""The `edgeff` command: one subcommand per stage of the flow (docs/cli.md), each in its own module here.

User errors exit with status 2 and a one-line message, never a traceback.
"""
import argparse
import os
import sys

from edgeff import __version__
from edgeff.app import board, export, finetune, memory_plan, pipeline, profile, quantize, sweep, train, verify
from edgeff.app import eval as eval_command  # the module is named after its command; `eval` stays Python's
from edgeff.app.options import HelpWithDefaults
from edgeff.errors import EdgeFFError

# in the order `edgeff --help` lists them: the flow's order
COMMANDS = (train, eval_command, quantize, export, verify, finetune, memory_plan, profile, board, pipeline, sweep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeff", formatter_class=HelpWithDefaults,
        description="EdgeFF: train Forward-Forward networks on a host and take them to microcontrollers.",
        epilog="Start with `edgeff pipeline`; `edgeff COMMAND --help` explains each command.")
    p.add_argument("--version", action="version", version=f"edgeff {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except EdgeFFError as exc:
        print(f"edgeff: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `edgeff eval ... | head`: the reader left; not an error of ours
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes stdout at exit)
        return 0
    except KeyboardInterrupt:
        note = args.interrupted(args) if callable(args.interrupted) else args.interrupted
        print(f"edgeff: {note}", file=sys.stderr)
        return 130
    return status or 0
