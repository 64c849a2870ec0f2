"""Host-trainer numbers on the full Fashion-MNIST (60k/10k): accuracy across seeds, time to accuracy.

Every number comes from the `edgeff` command itself (a subprocess: wall time includes start-up and data
loading), then `edgeff eval --json` on the test set. Parts:
  variants  FF, F-CFF, A-CFF (fast protocol) over --seeds seeds: test accuracy mean +- std, paired
            t-test and Cohen's d between variants (paired by seed). Runs --parallel at a time with the
            cores split between them (their times are not the 2-core times: `timed` measures those).
  timed     the time-to-accuracy configs, one at a time on all cores.
  board     the board-sized network, float, one-pass and multi-pass.
  paper     Beigzad 2025's paper protocol with --paper-epochs epochs per layer (1000 is the paper's).

    python benchmarks/trainer_accuracy.py --parts variants,timed,board --seeds 3
Writes results.json, results.md (the tables) and accuracy_vs_time.png to --out.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_text
from edgeff.plots import line_plot

VARIANTS = {"FF": "ff-784-500-500-fast", "F-CFF": "fcff-784-500-500-fast", "A-CFF": "acff-784-500-500-fast"}
TIMED = [("83.0% in <= 2 min", "acff-784-500-500-2min", 0.830, 120.0),
         ("87.5% in <= 7 min", "acff-784-500-500-fast", 0.875, 420.0)]
BOARD = "board-784-64-32"


def edgeff(*args, threads=None):
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    res = subprocess.run([sys.executable, "-m", "edgeff", *map(str, args)], capture_output=True,
                         text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"edgeff {' '.join(map(str, args))} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


def train_and_test(config, out, seed=0, epochs=None, threads=None):
    extra = ["--epochs", epochs] if epochs else []
    t0 = time.perf_counter()
    metrics = edgeff("train", config, "--out", out, "--seed", seed, "--fresh", "--json", *extra,
                     threads=threads)
    wall = time.perf_counter() - t0
    test = edgeff("eval", metrics["model_file"], "--json", threads=threads)
    history = json.loads((Path(out) / "metrics.json").read_text())["history"]
    print(f"  {config} seed {seed}: test multi-pass {test['multi_pass']:.4f}, one-pass "
          f"{test['one_pass']:.4f}, {wall:.0f} s", flush=True)
    return {"config": config, "seed": seed, "wall_s": wall, "test": test, "val": metrics["val"],
            "gamma_final": metrics["gamma_final"], "epochs": metrics["epochs_run"],
            "correlation": metrics["layer_model_correlation"],
            "curve": [(h["elapsed_s"], h.get("val_model")) for h in history]}


def part_variants(args, out):
    jobs = [(name, cfg, seed) for seed in range(args.seeds) for name, cfg in VARIANTS.items()]
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    with ThreadPoolExecutor(args.parallel) as pool:
        runs = list(pool.map(lambda j: (j[0], train_and_test(j[1], out / f"{j[1]}-seed{j[2]}", j[2],
                                                              threads=threads)), jobs))
    by = {name: [r for n, r in runs if n == name] for name in VARIANTS}
    acc = {name: np.array([r["test"]["multi_pass"] for r in rs]) for name, rs in by.items()}
    one = {name: np.array([r["test"]["one_pass"] for r in rs]) for name, rs in by.items()}
    rows = ["| variant | test multi-pass (mean ± std) | test one-pass | per-seed multi-pass | final gamma |",
            "|---|---|---|---|---|"]
    for name, rs in by.items():
        gam = ", ".join(f"{g:.2f}" for g in rs[0]["gamma_final"])
        rows.append(f"| {name} | {100 * acc[name].mean():.2f} ± {100 * acc[name].std(ddof=1):.2f} % | "
                    f"{100 * one[name].mean():.2f} ± {100 * one[name].std(ddof=1):.2f} % | "
                    f"{', '.join(f'{100 * a:.2f}' for a in acc[name])} | {gam} |")
    rows += ["", "| paired comparison (same seeds) | mean difference | t | p (two-sided) | Cohen's d |",
             "|---|---|---|---|---|"]
    pairs = [("F-CFF", "FF"), ("A-CFF", "FF"), ("A-CFF", "F-CFF")]
    comparisons = {}
    for a, b in pairs:
        diff = acc[a] - acc[b]
        t, p = stats.ttest_rel(acc[a], acc[b])
        d = diff.mean() / diff.std(ddof=1) if diff.std(ddof=1) > 0 else float("nan")
        comparisons[f"{a} - {b}"] = {"mean_diff": diff.mean(), "t": t, "p": p, "cohens_d": d}
        rows.append(f"| {a} − {b} | {100 * diff.mean():+.2f} points | {t:.2f} | {p:.3f} | {d:.2f} |")
    plot_curves(by, out / "accuracy_vs_time.png")
    return {"runs": by, "comparisons": comparisons, "table": "\n".join(rows)}


def plot_curves(by, path):
    series = {f"{name} (seed 0)": tuple(zip(*[(s, v) for s, v in rs[0]["curve"] if v is not None], strict=True))
              for name, rs in by.items()}
    line_plot(series, path, "784-500-500, fast protocol", "training wall time in the variants part (s)",
              "validation accuracy, multi-pass")


def part_timed(args, out):
    rows = ["| target | config | epochs | wall time of `edgeff train` | test accuracy (multi-pass) | met |",
            "|---|---|---|---|---|---|"]
    results = []
    for target, config, acc_goal, time_goal in TIMED:
        r = train_and_test(config, out / f"timed-{config}")
        ok = r["test"]["multi_pass"] >= acc_goal and r["wall_s"] <= time_goal
        results.append({**r, "target": target, "met": ok})
        rows.append(f"| {target} | {config} | {r['epochs']} | {r['wall_s']:.0f} s | "
                    f"{100 * r['test']['multi_pass']:.2f} % | {'yes' if ok else 'NO'} |")
    return {"runs": results, "table": "\n".join(rows)}


def part_board(args, out):
    r = train_and_test(BOARD, out / BOARD)
    table = ("| network | test multi-pass | test one-pass | per-layer (multi-pass) | wall time |\n"
             "|---|---|---|---|---|\n"
             f"| {BOARD} | {100 * r['test']['multi_pass']:.2f} % (layers {r['test']['multi_pass_layers']}) | "
             f"{100 * r['test']['one_pass']:.2f} % | "
             f"{', '.join(f'{100 * a:.2f}' for a in r['test']['per_layer'])} | {r['wall_s']:.0f} s |")
    return {"run": r, "table": table}


def part_paper(args, out):
    r = train_and_test("acff-784-500-500-paper", out / "paper-acff", epochs=args.paper_epochs)
    table = ("| protocol | epochs per layer run (paper: 1000) | test multi-pass | test one-pass | wall time |\n"
             "|---|---|---|---|---|\n"
             f"| A-CFF paper protocol (full batch 50,000, Adam 0.03, θ = 2) | {args.paper_epochs} | "
             f"{100 * r['test']['multi_pass']:.2f} % | {100 * r['test']['one_pass']:.2f} % | "
             f"{r['wall_s'] / 60:.1f} min |")
    return {"run": r, "table": table}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="variants,timed,board")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--paper-epochs", type=int, default=50)
    p.add_argument("--out", type=Path, default=Path("runs/bench-trainer"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {"variants": part_variants, "timed": part_timed, "board": part_board, "paper": part_paper}
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.parts.split(","):
        print(f"== {name}", flush=True)
        results[name] = parts[name](args, args.out)
        print(results[name]["table"], flush=True)
        atomic_write_text(results_path, json.dumps(results, indent=2, default=float))
    atomic_write_text(args.out / "results.md", "\n\n".join(f"### {k}\n\n{v['table']}" for k, v in results.items()))


if __name__ == "__main__":
    main()
