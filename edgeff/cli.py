"""The `edgeff` command: one subcommand per stage of the flow (see README.md).

Every command that reports numbers takes --json and then prints exactly one JSON document on stdout;
progress bars go to stderr. User errors exit with status 2 and a one-line message, never a traceback.
"""
import argparse
import json
import sys
from pathlib import Path

from edgeff.errors import EdgeFFError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_PIPELINE_CONFIG = "acff-784-500-500-fast"


def resolve_config(name_or_path: str) -> Path:
    """A config path, or the name of one in models/ (with or without .toml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (MODELS_DIR / name_or_path, MODELS_DIR / f"{name_or_path}.toml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in MODELS_DIR.glob("*.toml"))) or "none found"
    raise EdgeFFError(f"no config file '{name_or_path}'; give a path or one of the names in "
                      f"{MODELS_DIR}: {known}")


def _int_list(text: str) -> list:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise EdgeFFError(f"--layers {text!r}: give comma-separated layer numbers such as 1,2") from None


def _print(args, payload: dict, text: str):
    print(json.dumps(payload, indent=2) if args.json else text)


def cmd_train(args):
    from edgeff.data.datasets import load_dataset
    from edgeff.train.config import load_config
    from edgeff.train.trainer import train

    cfg = load_config(resolve_config(args.config))
    for key in ("seed", "epochs"):
        value = getattr(args, key)
        if value is not None:
            if value < (0 if key == "seed" else 1):
                raise EdgeFFError(f"--{key} {value} is out of range")
            setattr(cfg.train, key, value)
    data = load_dataset(args.data_dir, val_size=cfg.train.val_size)
    out = Path(args.out or Path("runs") / cfg.name)
    metrics = train(cfg, data, out, fresh=args.fresh, quiet=args.quiet or args.json)
    val = metrics["val"]
    _print(args, {k: v for k, v in metrics.items() if k != "history"},
           f"{cfg.name}: {metrics['epochs_run']} epochs in {metrics['train_seconds']:.1f} s; validation "
           f"multi-pass {val['multi_pass']:.4f}, one-pass {val['one_pass']:.4f}\n"
           f"model: {metrics['model_file']}\nplots: {', '.join(metrics['plots'])}")


def _dataset_of(header, data_dir):
    """The dataset a model was trained on, split the same way."""
    from edgeff.data.datasets import load_dataset

    data = load_dataset(data_dir, val_size=header["data"]["val_size"], split_seed=header["data"]["split_seed"])
    width = header["architecture"]["sizes"][0]
    if data.train.images.shape[1] != width:
        raise EdgeFFError(f"the model expects {width} input pixels, but {data.directory} has images of "
                          f"{data.train.images.shape[1]} pixels")
    return data


def cmd_eval(args):
    from edgeff.model_file import load_model
    from edgeff.train.config import layer_list

    _, header = load_model(args.model)
    arch = header.get("architecture") or {}
    split = getattr(_dataset_of(header, args.data_dir), args.split)
    layers = arch.get("eval_layers")
    if args.layers:
        layers = layer_list("--layers", "layers", _int_list(args.layers), len(arch["sizes"]) - 1)
    if arch.get("kind") == "ff-mlp-int8":
        from edgeff.runtime.int_model import IntFFModel, evaluate_int

        scores = evaluate_int(IntFFModel.from_file(args.model), split.images, split.labels, layers, args.mode)
        arithmetic = "int8 (integer runtime)"
    else:
        from edgeff.train.evaluate import evaluate
        from edgeff.train.model_io import load_network

        scores = evaluate(load_network(args.model)[0], split.images, split.labels, layers, args.mode)
        arithmetic = "float32 (torch)"
    result = {"model": str(args.model), "split": args.split, "arithmetic": arithmetic, **scores}
    lines = [f"{args.model} on {args.split} ({result['n_samples']} samples), {arithmetic}:"]
    if "multi_pass" in result:
        lines.append(f"  multi-pass accuracy {result['multi_pass']:.4f} (goodness of layers {layers})")
        lines += [f"    layer {i + 1} alone {a:.4f}" for i, a in enumerate(result["per_layer"])]
    if "one_pass" in result:
        lines.append(f"  one-pass accuracy   {result['one_pass']:.4f} (softmax head)")
    _print(args, result, "\n".join(lines))


def cmd_quantize(args):
    from edgeff.model_file import load_model
    from edgeff.quant.ptq import quantize

    _, header = load_model(args.model)
    data = _dataset_of(header, args.data_dir)
    if not 0 < args.calibration_samples <= len(data.train):
        raise EdgeFFError(f"--calibration-samples must be between 1 and {len(data.train)}")
    n = args.calibration_samples
    written = quantize(args.model, args.out, data.train.images[:n], data.train.labels[:n], data.fingerprint)
    scales = ", ".join(f"{layer['out_scale']:.4g}" for layer in written["quantization"]["layers"])
    _print(args, {"model": str(args.out), **written["quantization"]},
           f"wrote {args.out}: int8 weights (per channel), activation scales "
           f"{scales}; check it with `edgeff eval {args.out}`")


def cmd_pipeline(args):
    from edgeff.report.pipeline import run_pipeline

    result = run_pipeline(resolve_config(args.config), args.out, args.data_dir, fresh=args.fresh,
                          quiet=args.json)
    _print(args, result, f"report: {result['report']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeff",
        description="EdgeFF: train Forward-Forward networks on a host and take them to microcontrollers.",
        epilog="Start with `edgeff pipeline`; `edgeff COMMAND --help` explains each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_text, func):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(func=func)
        return sp

    def data_dir(sp):
        sp.add_argument("--data-dir", help="MNIST-format IDX directory (default: $EDGEFF_DATA_DIR, then "
                                           "/usr/share/datasets/fashion-mnist)")

    def json_flag(sp):
        sp.add_argument("--json", action="store_true", help="print one machine-readable JSON document")

    sp = add("train", "Train an FF / F-CFF / A-CFF network from a TOML config (resumes from its "
                      "last checkpoint if one is in --out).", cmd_train)
    sp.add_argument("config", help="config file, or a name from models/ such as ff-784-500-500-fast")
    sp.add_argument("--out", help="output directory (default: runs/<config name>)")
    sp.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    sp.add_argument("--seed", type=int, help="override [train] seed")
    sp.add_argument("--epochs", type=int, help="override [train] epochs (per layer for the paper protocol)")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")
    data_dir(sp)
    json_flag(sp)

    sp = add("eval", "Report the accuracy of a model file, multi-pass and/or one-pass; float models run "
                     "in torch, int8 models in the integer runtime.", cmd_eval)
    sp.add_argument("model", help="model file written by `edgeff train` or `edgeff quantize`")
    sp.add_argument("--split", choices=["test", "val", "train"], default="test")
    sp.add_argument("--mode", choices=["multi", "one", "both"], default="both",
                    help="multi-pass (goodness per label), one-pass (softmax head) or both")
    sp.add_argument("--layers", help="comma-separated layers to sum in multi-pass, e.g. 1,2 "
                                     "(default: the layers chosen at training)")
    data_dir(sp)
    json_flag(sp)

    sp = add("quantize", "Post-training quantization: float model file -> int8 model file for the integer "
                         "runtime and boards (per-channel int8 weights, calibrated activation scales).",
             cmd_quantize)
    sp.add_argument("model", help="float model file written by `edgeff train`")
    sp.add_argument("--out", required=True, help="int8 model file to write")
    sp.add_argument("--calibration-samples", type=int, default=2000,
                    help="training samples used to calibrate activation ranges (default: %(default)s)")
    data_dir(sp)
    json_flag(sp)

    sp = add("pipeline", "The main job: train the default collaborative model, evaluate it on the test "
                         "set and write a report folder (Markdown, PNG plots, model file).", cmd_pipeline)
    sp.add_argument("--config", default=DEFAULT_PIPELINE_CONFIG, help="model config (default: %(default)s)")
    sp.add_argument("--out", default="reports/pipeline", help="report folder (default: %(default)s)")
    sp.add_argument("--fresh", action="store_true", help="retrain even if a checkpoint exists")
    data_dir(sp)
    json_flag(sp)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except EdgeFFError as exc:
        print(f"edgeff: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgeff: interrupted; files already written are complete (writes are atomic). "
              "Run the same command again to resume training from the last finished epoch.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
