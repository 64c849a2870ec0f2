"""Issue 19's transfer scenario: a conv model pre-trained on the host on clean images, its last K blocks fine-tuned
on the device on a shifted camera's images, in float and in integers.

The host's float model is quantized with calibration on the host's clean training images (the device's images
are not on the host). Each sensor shift (edgeff.data.sensor_shifts: exposure, mount) gets a shifted copy of the
dataset (`write_shifted_copy`, IDX files in WORK/data-SHIFT) that the commands read with --data-dir; the test is
the shifted test images. For each shift, K and step 2^-S it runs, one at a time:

    before:  edgeff eval MODEL (float32 torch) and edgeff eval INT8, on the shifted test images
    float:   benchmarks/conv_finetune.py MODEL --last-k K --lr-shift S   (SGD on the folded float64 blocks;
             its test_before is the folded float64 model on the shifted test images)
    twin:    the same with --int8 INT8: SGD from what the int8 model computes, in real numbers (its start is
             the integer training's, so int8 − twin is the integer arithmetic's share alone)
    integer: edgeff finetune INT8 --last-k K --lr-shift S, then edgeff eval of its output

Both fine-tunings see the same shifted training images in the same order (each --seed: the sample order, and the
integer rule's stochastic rounding), batch 1, one epoch (or --samples of it). Every command's JSON is kept in
WORK/results, so a second call with the same WORK reuses what is there (an interrupted run resumes; a new K, S or
seed runs only what is new). Progress on stderr; the table (or --json) on stdout.

    OMP_NUM_THREADS=1 python benchmarks/conv_transfer.py /work/runs/board-s0/model.safetensors \\
        --data-dir /usr/share/datasets/fashion-mnist --work /tmp/transfer --shift mount exposure \\
        --last-k 1 2 --lr-shift 14 16 [--samples N] [--seed 0 1 2]
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_bytes
from edgeff.data.sensor_shifts import SHIFTS, write_shifted_copy
from edgeff.errors import EdgeFFError

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_PERCENTILE = "99.99"   # the board model's best PTQ (docs/conv_int8.md)


class Runner:
    """Runs one command at a time and keeps its JSON document under a name, or returns the kept one."""

    def __init__(self, work: Path):
        self.results = work / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}

    def __call__(self, name: str, argv: list) -> dict:
        kept = self.results / f"{name}.json"
        if kept.is_file():
            return json.loads(kept.read_text())
        argv = [str(a) for a in argv]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(argv)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise EdgeFFError(f"{name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
        result = {**json.loads(done.stdout), "wall_s": round(time.perf_counter() - t0, 1)}
        atomic_write_bytes(kept, json.dumps(result, indent=2).encode())
        return result


def edgeff(*args) -> list:
    return [sys.executable, "-m", "edgeff", *args]


def measure(args) -> dict:
    work = Path(args.work)
    run = Runner(work)
    int8 = work / "int8.safetensors"
    # the host quantizes on its own clean data
    run("quantize", edgeff("quantize", args.model, "--out", int8, "--calibration-percentile", CALIBRATION_PERCENTILE,
                           "--data-dir", args.data_dir, "--json"))
    samples = ["--samples", args.samples] if args.samples else []
    n = args.samples or "all"
    table = {}
    for shift in args.shift:
        data = write_shifted_copy(args.data_dir, work / f"data-{shift}", shift)
        before = {"float32": run(f"{shift}-before-float32",
                                 edgeff("eval", args.model, "--mode", "multi", "--data-dir", data, "--json")),
                  "int8": run(f"{shift}-before-int8",
                              edgeff("eval", int8, "--mode", "multi", "--data-dir", data, "--json"))}
        rows = []
        for k, s, seed in itertools.product(args.last_k, args.lr_shift, args.seed):
            # seed 0's names carry no seed, as the results kept before --seed existed
            name = f"{shift}-k{k}-s{s}-n{n}" + (f"-seed{seed}" if seed else "")
            seeded = ["--seed", seed]
            float_sgd = [sys.executable, ROOT / "benchmarks" / "conv_finetune.py", args.model, "--last-k", k,
                         "--lr-shift", s, "--data-dir", data, *samples, *seeded]
            flt = run(f"{name}-float", float_sgd)
            twin = run(f"{name}-twin", [*float_sgd, "--int8", int8])
            tuned = work / f"{name}.safetensors"
            fin = run(f"{name}-int8", edgeff("finetune", int8, "--last-k", k, "--lr-shift", s, "--out", tuned,
                                             "--data-dir", data, "--json", *samples, *seeded))
            ev = run(f"{name}-int8-eval", edgeff("eval", tuned, "--mode", "multi", "--data-dir", data, "--json"))
            rows.append({"last_k": k, "lr_shift": s, "seed": seed, "samples": flt["samples"],
                         "float64": flt["test_after"], "float64_before": flt["test_before"], "twin": twin["test_after"],
                         "twin_before": twin["test_before"], "int8": ev["multi_pass"],
                         "float_wall_s": flt["wall_s"], "int8_wall_s": fin["wall_s"]})
        table[shift] = {"float32_before": before["float32"]["multi_pass"],
                        "int8_before": before["int8"]["multi_pass"], "rows": rows}
    return {"model": args.model, "calibration": f"clean training images, percentile {CALIBRATION_PERCENTILE}",
            "shifts": table}


def points(x: float) -> str:
    return f"{100 * x:+.2f}".replace("-", "−")


def markdown(result: dict) -> str:
    lines = []
    for shift, t in result["shifts"].items():
        first = t["rows"][0] if t["rows"] else None
        lines += [f"shift {shift}, shifted test images:", "",
                  "| fine-tuning | seed | samples | float64 SGD, test % | float64 SGD from int8, test % "
                  "| int8 integer rule, test % | int8 − float | int8 − from int8 | float gain | int8 gain |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  f"| none (float32 torch {100 * t['float32_before']:.2f}) | | | "
                  + (f"{100 * first['float64_before']:.2f} (folded) | {100 * first['twin_before']:.2f}" if first
                     else " | ")
                  + f" | {100 * t['int8_before']:.2f} | "
                  + (f"{points(t['int8_before'] - first['float64_before'])} | "
                     f"{points(t['int8_before'] - first['twin_before'])}" if first else " | ") + " | | |"]
        for r in t["rows"]:
            lines.append(f"| last {r['last_k']}, S = {r['lr_shift']} | {r['seed']} | {r['samples']:,} "
                         f"| {100 * r['float64']:.2f} | {100 * r['twin']:.2f} "
                         f"| {100 * r['int8']:.2f} | {points(r['int8'] - r['float64'])} "
                         f"| {points(r['int8'] - r['twin'])} "
                         f"| {points(r['float64'] - r['float64_before'])} | {points(r['int8'] - t['int8_before'])} |")
        lines += ["", *_over_seeds(t["rows"], "float64", "float"), *_over_seeds(t["rows"], "twin", "from int8"), ""]
    return "\n".join(lines)


def _over_seeds(rows: list, reference: str, label: str) -> list:
    """int8 − reference, mean ± sample standard deviation over the seeds, for each K and S run with more than
    one."""
    groups = {}
    for r in rows:
        groups.setdefault((r["last_k"], r["lr_shift"]), []).append(100 * (r["int8"] - r[reference]))
    return [f"last {k}, S = {s}, int8 − {label} over {len(d)} seeds: {np.mean(d):+.2f} ± {np.std(d, ddof=1):.2f} "
            f"points (worst {min(d):+.2f})".replace("-", "−") for (k, s), d in groups.items() if len(d) > 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="the host's float layered (cwc) model file")
    ap.add_argument("--data-dir", required=True, help="the host's clean MNIST-format IDX directory")
    ap.add_argument("--work", required=True, help="directory for the shifted data, the models and the results")
    ap.add_argument("--shift", nargs="+", choices=sorted(SHIFTS), default=["mount", "exposure"])
    ap.add_argument("--last-k", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--lr-shift", nargs="+", type=int, default=[14, 16])
    ap.add_argument("--samples", type=int, help="training samples of the epoch (default: all)")
    ap.add_argument("--seed", nargs="+", type=int, default=[0], help="seeds of the sample order and rounding")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    args = ap.parse_args()
    try:
        result = measure(args)
    except EdgeFFError as exc:
        sys.exit(f"error: {exc}")
    print(json.dumps(result, indent=2) if args.json else markdown(result))


if __name__ == "__main__":
    main()
