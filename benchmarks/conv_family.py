"""The light FF models (Ortiz Torres et al., Table III, adapted to 28x28x1) and the board-sized model under one
protocol:
Fashion-MNIST test accuracy against parameter count, MACs per image and training time on this machine.

Every config is trained with channel-wise competitive FF as configured (its schedule, optimizer and batch),
for the same epochs on the same images (benchmarks/conv_accuracy.py's run, which keeps every run under
--out, so an interrupted benchmark resumes and a finished run is read back). Prints a Markdown table, or one
JSON document with --json, and plots accuracy against parameters with the training time beside each point.

    python benchmarks/conv_family.py --epochs 1 --train-size 10000 --plot docs/conv_family.png
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
from conv_accuracy import DATA, mean_std, run
from conv_params import counts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import Split, load_dataset
from edgeff.model_description import ModelDescription
from edgeff.package_data import model_config
from edgeff.profiler.energy_model import layer_costs
from edgeff.train.config import load_config

FAMILY = ("ff-conv-board", "ff-conv-tiny", "ff-conv-small", "ff-conv-medium", "ff-conv-optimal")


def describe(name: str) -> dict:
    """Parameters (conv blocks, one-pass head) and one image's MACs through every block, from the config."""
    cfg = load_config(model_config(name))
    blocks, head = counts(cfg.model.input_shape, cfg.model.layers)
    description = ModelDescription.chain(cfg.model.input_shape, cfg.model.layers)
    macs = sum(row.macs for row in layer_costs("inference_one_pass", description, 10))
    return {"config": name, "params": blocks, "head_params": head, "macs": macs}


def table(rows: list, epochs: int, n_train: int) -> str:
    lines = [f"{epochs} epochs on {n_train} training images, seeds {rows[0]['seeds']}", "",
             "| config | parameters (blocks) | MACs / image | train s / run | test % goodness | test % one-pass head |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['params']:,} | {r['macs']:,} | {r['train_seconds']:.0f} | "
                     f"{r['goodness']} | {r['head']} |")
    return "\n".join(lines)


def plot(rows: list, path: Path, epochs: int, n_train: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label in (("goodness_values", "class goodness"), ("head_values", "one-pass head")):
        x = [r["params"] for r in rows]
        y = [100 * np.mean(r[key]) for r in rows]
        err = [100 * np.std(r[key], ddof=1) if len(r[key]) > 1 else 0 for r in rows]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, linestyle="none", label=label)
    for r in rows:
        ax.annotate(f"{r['config'].removeprefix('ff-conv-')}\n{r['train_seconds']:.0f} s",
                    (r["params"], 100 * np.mean(r["goodness_values"])), textcoords="offset points",
                    xytext=(6, -18), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters of the conv blocks")
    ax.set_ylabel("Fashion-MNIST test accuracy (%)")
    ax.set_title(f"CwC FF models, {epochs} epoch(s) on {n_train} images (train s per run)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=list(FAMILY))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-size", type=int, help="train on the first N training images (default: all)")
    ap.add_argument("--val-size", type=int, default=1000, help="validation images held out of training")
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--out", default="runs/conv_family")
    ap.add_argument("--plot", type=Path, help="write the accuracy-against-parameters plot here (PNG)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [describe(name) for name in args.configs]   # a bad config name fails before any training
    data = load_dataset(args.data_dir, val_size=args.val_size)
    if args.train_size:
        data.train = Split(data.train.images[:args.train_size], data.train.labels[:args.train_size])
    for row in rows:
        runs = [run(row["config"], None, seed, args.epochs, data, Path(args.out)) for seed in args.seeds]
        row.update(seeds=args.seeds, train_seconds=float(np.mean([r["train_seconds"] for r in runs])),
                   goodness_values=[r["test"]["multi_pass"] for r in runs],
                   head_values=[r["test"]["one_pass"] for r in runs])
        row.update(goodness=mean_std(row["goodness_values"]), head=mean_std(row["head_values"]))
    if args.plot:
        plot(rows, args.plot, args.epochs, len(data.train))
    if args.json:
        print(json.dumps({"epochs": args.epochs, "n_train": len(data.train), "rows": rows}))
    else:
        print(table(rows, args.epochs, len(data.train)))


if __name__ == "__main__":
    main()
