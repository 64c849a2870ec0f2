"""Convolutional FF against backprop of the same layers on Fashion-MNIST: test accuracy over seeds.

For every seed, trains the chosen layered config twice with `edgeff`'s trainer (edgeff.train.conv_trainer):
as configured (channel-wise competitive FF, or the overlay) and with objective = "backprop" (the same
blocks, trained end to end through the softmax head, the same epochs), then scores the test set: FF by the
goodness of its [eval] layers and by its one-pass head, backprop by its head. Prints a table of mean +- std
over the seeds, the paired difference FF - backprop (per seed), and FF's early exit at three thresholds.
Progress goes to stderr; --json prints one JSON document instead of the table. Each run keeps its model and
checkpoints under --out, so an interrupted benchmark resumes.

    python benchmarks/conv_accuracy.py ff-conv-tiny --seeds 0 1 2 --epochs 3
    python benchmarks/conv_accuracy.py ff-conv-small --train-size 10000 --epochs 5
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import Split, load_dataset
from edgeff.package_data import model_config
from edgeff.profiler.energy_model import inference_macs
from edgeff.train import conv_trainer
from edgeff.train.config import load_config
from edgeff.train.evaluate import early_exit_table, evaluate
from edgeff.train.model_io import load_network

DATA = "/usr/share/datasets/fashion-mnist"
THRESHOLDS = (0.5, 0.8, 0.95)


def run(cfg_name, objective, seed, epochs, data, out: Path) -> dict:
    cfg = load_config(model_config(cfg_name))
    cfg.model.objective = objective or cfg.model.objective
    cfg.train.seed, cfg.train.epochs = seed, epochs
    cfg.train.milestones = [m for m in cfg.train.milestones if m < epochs]   # scaled runs keep their last epochs
    label = cfg.model.objective
    print(f"== {cfg.name} {label} seed {seed}: {epochs} epochs on {len(data.train)} images", file=sys.stderr)
    metrics = conv_trainer.train(cfg, data, out / f"{cfg.name}-{label}-s{seed}")
    net = load_network(metrics["model_file"])[0]
    layers = metrics["val"].get("multi_pass_layers", [net.n_layers])
    mode = "one" if label == "backprop" else "both"
    test = evaluate(net, data.test.images, data.test.labels, layers, mode)
    result = {"objective": label, "seed": seed, "train_seconds": metrics["train_seconds"], "test": test}
    if label != "backprop":
        macs = inference_macs(net.description, net.n_classes, net.objective)
        result["early_exit"] = early_exit_table(net, data.test.images, data.test.labels, THRESHOLDS, layers, macs)
    return result


def mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{100 * v.mean():.2f} ± {100 * v.std(ddof=1) if len(v) > 1 else 0:.2f}"


def table(results: list, cfg_name: str, epochs: int, n_train: int) -> str:
    ff = [r for r in results if r["objective"] != "backprop"]
    bp = [r for r in results if r["objective"] == "backprop"]
    lines = [f"{cfg_name}, {epochs} epochs, {n_train} training images, seeds {[r['seed'] for r in ff]}", "",
             "| model | test accuracy % (mean ± std) | train s / run |", "|---|---|---|"]
    name, seconds = f"FF ({ff[0]['objective']})", np.mean([r["train_seconds"] for r in ff])
    lines.append(f"| {name}, goodness of layers {ff[0]['test']['multi_pass_layers']} | "
                 f"{mean_std([r['test']['multi_pass'] for r in ff])} | {seconds:.0f} |")
    lines.append(f"| {name}, one-pass softmax head | {mean_std([r['test']['one_pass'] for r in ff])} | |")
    lines.append(f"| backprop, same layers | {mean_std([r['test']['one_pass'] for r in bp])} | "
                 f"{np.mean([r['train_seconds'] for r in bp]):.0f} |")
    diff = [f["test"]["multi_pass"] - b["test"]["one_pass"] for f, b in zip(ff, bp, strict=True)]
    lines += ["", f"paired difference FF (goodness) - backprop, by seed: {mean_std(diff)} points "
                  f"({', '.join(f'{100 * d:+.2f}' for d in diff)})", "",
              "| early exit threshold | accuracy % (mean ± std) | MACs / image |", "|---|---|---|"]
    for i, t in enumerate(THRESHOLDS):
        rows = [r["early_exit"][i] for r in ff]
        lines.append(f"| {t} | {mean_std([e['accuracy'] for e in rows])} | "
                     f"{np.mean([e['macs_per_image'] for e in rows]):,.0f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a layered config (edgeff/models/ff-conv-*.toml) or its path")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, help="epochs for FF and backprop alike (default: the config's)")
    ap.add_argument("--train-size", type=int, help="train on the first N training images (default: all)")
    ap.add_argument("--val-size", type=int, default=1000, help="validation images held out of training")
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--out", default="runs/conv_accuracy")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = load_config(model_config(args.config))
    epochs = args.epochs or cfg.train.epochs
    data = load_dataset(args.data_dir, val_size=args.val_size)
    if args.train_size:
        data.train = Split(data.train.images[:args.train_size], data.train.labels[:args.train_size])
    results = []
    for seed in args.seeds:
        for objective in (None, "backprop"):
            results.append(run(args.config, objective, seed, epochs, data, Path(args.out)))
    if args.json:
        print(json.dumps({"config": cfg.name, "epochs": epochs, "n_train": len(data.train), "results": results}))
    else:
        print(table(results, cfg.name, epochs, len(data.train)))


if __name__ == "__main__":
    main()
