"""Wall time of one sweep run by `edgeff sweep` with 1 and with 2 local Ray workers (--cpus 1, --cpus 2; one
CPU per trial), and their ratio. Each run starts from an empty results folder, so it runs every trial; the
time includes Ray's start, data loading and every trial's training and scoring. With --repeats N the two
settings alternate N times (1, 2, 1, 2, ...), so a drift in the machine's load reaches both alike; the table
gives the mean and std of each and the speed-up of every repeat.

    python benchmarks/sweep_scaling.py [--seeds 2] [--epochs 2] [--repeats 1] [--data-dir DIR]
Prints a Markdown table (docs/sweep.md) and writes it with the raw times to --out/scaling.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_text

SPEC = """
name = "scaling"
seeds = {seeds}
data_dir = "{data_dir}"
cpus_per_trial = 1
config = "ff-784-500-500-fast"
[set.train]
epochs = {epochs}
[set.eval]
head_epochs = 1
[grid]
model.sizes = [[784, 100, 100], [784, 200, 200]]
"""


def timed_sweep(spec: Path, out: Path, cpus: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "edgeff", "sweep", str(spec), "--out", str(out), "--cpus", str(cpus),
                          "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"edgeff sweep --cpus {cpus} failed:\n{res.stderr[-3000:]}")
    return wall


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-dir", default=os.environ.get("EDGEFF_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
    p.add_argument("--out", type=Path, default=Path("runs/bench-sweep-scaling"))
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = args.out / "scaling.toml"
    spec.write_text(SPEC.format(seeds=args.seeds, data_dir=Path(args.data_dir).resolve(), epochs=args.epochs))
    trials = 2 * args.seeds
    load = os.getloadavg()[0]
    walls = {1: [], 2: []}
    for repeat in range(args.repeats):
        for cpus in walls:
            walls[cpus].append(timed_sweep(spec, args.out / f"cpus{cpus}", cpus))
            print(f"repeat {repeat + 1}/{args.repeats}, --cpus {cpus}: {walls[cpus][-1]:.1f} s", file=sys.stderr)
    speedups = [one / two for one, two in zip(walls[1], walls[2], strict=True)]

    def spread(values, unit=""):
        sd = f" ± {statistics.stdev(values):.2f}{unit}" if len(values) > 1 else ""
        return f"{statistics.mean(values):.2f}{unit}{sd}"

    rows = ["| workers (`--cpus`) | trials | runs | wall time of `edgeff sweep` | per trial | speed-up over 1 worker "
            "(per repeat) |", "|---|---|---|---|---|---|"]
    rows += [f"| {cpus} | {trials} | {len(w)} | {spread(w, ' s')} | {statistics.mean(w) / trials:.1f} s | "
             + (f"{spread(speedups, 'x')} ({', '.join(f'{x:.2f}x' for x in speedups)})" if cpus == 2 else "1.00x")
             + " |" for cpus, w in walls.items()]
    table = "\n".join(rows)
    print(f"{os.cpu_count()} cores, load average {load:.2f} at the start; 784-100-100 and 784-200-200, fast "
          f"protocol, {args.epochs} epochs, {args.seeds} seeds, {args.repeats} repeats\n{table}")
    atomic_write_text(args.out / "scaling.json", json.dumps({"wall_s": walls, "speedups": speedups, "trials": trials,
                                                             "load": load, "table": table}, indent=2))


if __name__ == "__main__":
    main()
