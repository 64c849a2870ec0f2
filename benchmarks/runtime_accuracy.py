"""Integer runtime accuracy on Fashion-MNIST: PTQ int8 against float, and integer-only training of the
board-sized network (from a PTQ model and from scratch) against the same network trained in float.

Everything runs through the `edgeff` command. Float models come from benchmarks/trainer_accuracy.py
(--runs, seed 0); integer training uses `edgeff finetune` at batch size 1, the board's rule, with a
power-of-two learning-rate schedule given as epochs:lr_shift[:negatives] stages.

    python benchmarks/runtime_accuracy.py --runs runs/bench-trainer --out runs/bench-runtime
Prints Markdown tables and writes int_training_curve.png and results.json to --out.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_text
from edgeff.plots import line_plot

VARIANTS = {"FF": "ff-784-500-500-fast", "F-CFF": "fcff-784-500-500-fast", "A-CFF": "acff-784-500-500-fast"}
BOARD = "board-784-64-32"


def edgeff(*args):
    res = subprocess.run([sys.executable, "-m", "edgeff", *map(str, args), "--json"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"edgeff {' '.join(map(str, args))} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


NORMS = {7: "int8 (TFLite L2_NORMALIZATION)", 15: "int16 (16x8 FC)"}


def ptq_table(runs: Path, out: Path):
    rows = ["| model | normalized activations | float test multi-pass | int8 test multi-pass | difference | "
            "float one-pass | int8 one-pass | difference |", "|---|---|---|---|---|---|---|---|"]
    results = {}
    for name, cfg in VARIANTS.items():
        float_path = runs / f"{cfg}-seed0" / "model.safetensors"
        f = edgeff("eval", float_path)
        for bits, norm in NORMS.items():
            int_path = out / f"{cfg}-int8-norm{bits}.safetensors"
            edgeff("quantize", float_path, "--out", int_path, "--norm-bits", bits)
            q = edgeff("eval", int_path)
            results[f"{name} norm{bits}"] = {"float": f, "int8": q}
            rows.append(f"| {name} 784-500-500 | {norm} | {100 * f['multi_pass']:.2f} % | "
                        f"{100 * q['multi_pass']:.2f} % | {100 * (q['multi_pass'] - f['multi_pass']):+.2f} | "
                        f"{100 * f['one_pass']:.2f} % | {100 * q['one_pass']:.2f} % | "
                        f"{100 * (q['one_pass'] - f['one_pass']):+.2f} |")
            print(rows[-1], flush=True)
    return results, "\n".join(rows)


def integer_training(start_path: Path, out: Path, schedule, label: str):
    """Run `edgeff finetune` epoch by epoch following the schedule; return the per-epoch history."""
    history, current = [], start_path
    for i, (epochs, lr_shift, negatives) in enumerate(schedule):
        nxt = out / f"{label}-{i}.safetensors"
        r = edgeff("finetune", current, "--out", nxt, "--epochs", epochs, "--lr-shift", lr_shift,
                   "--negatives", negatives)
        for h in r["history"]:
            history.append({**h, "epoch": len(history) + 1, "lr_shift": lr_shift, "negatives": negatives})
            print(f"  {label} epoch {len(history)} (lr 2^-{lr_shift}, {negatives} negatives): "
                  f"val {h['val_multi_pass']:.4f}", flush=True)
        current = nxt
    return history, current


def parse_schedule(text):
    """'3:14,1:18:hard' -> [(3, 14, 'random'), (1, 18, 'hard')]: epochs, lr_shift, negatives."""
    out = []
    for part in text.split(","):
        fields = part.split(":")
        out.append((int(fields[0]), int(fields[1]), fields[2] if len(fields) > 2 else "random"))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/bench-trainer"))
    p.add_argument("--out", type=Path, default=Path("runs/bench-runtime"))
    p.add_argument("--ptq-schedule", default="1:20:hard,1:22:hard",
                   help="epochs:lr_shift[:negatives],... from the PTQ model")
    p.add_argument("--scratch-schedule", default="2:14,2:16,2:16:hard,3:17:hard,3:18:hard,2:19:hard,2:20:hard",
                   help="epochs:lr_shift[:negatives],... from scratch (negatives: random or hard)")
    p.add_argument("--parts", default="ptq,training")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "ptq" in args.parts:
        runs, table = ptq_table(args.runs, args.out)
        results["ptq"] = {"runs": runs, "table": table}
    if "training" in args.parts:
        float_path = args.runs / BOARD / "model.safetensors"
        float_test = edgeff("eval", float_path)
        float_hist = json.loads((args.runs / BOARD / "metrics.json").read_text())["history"]
        ptq_path, scratch_path = args.out / "board-int8.safetensors", args.out / "board-scratch-int8.safetensors"
        edgeff("quantize", float_path, "--out", ptq_path)
        edgeff("quantize", float_path, "--out", scratch_path, "--from-scratch", "0")
        curves = {}
        for label, start, schedule in (("from PTQ", ptq_path, args.ptq_schedule),
                                       ("from scratch", scratch_path, args.scratch_schedule)):
            hist, final = integer_training(start, args.out, parse_schedule(schedule), label.replace(" ", "-"))
            test = edgeff("eval", final, "--mode", "multi")
            start_test = edgeff("eval", start, "--mode", "multi")
            curves[label] = {"history": hist, "test": test, "start_test": start_test, "schedule": schedule}
        rows = ["| board network 784-64-32 | test multi-pass | against float | training |", "|---|---|---|---|",
                f"| float (torch, Adam, {len(float_hist)} epochs) | {100 * float_test['multi_pass']:.2f} % | | "
                f"fast protocol |"]
        for label, c in curves.items():
            rows.append(f"| int8 {label} (start {100 * c['start_test']['multi_pass']:.2f} %) | "
                        f"{100 * c['test']['multi_pass']:.2f} % | "
                        f"{100 * (c['test']['multi_pass'] - float_test['multi_pass']):+.2f} | "
                        f"integer rule, batch 1, epochs:lr_shift {c['schedule']} |")
        results["training"] = {"float_test": float_test, "curves": curves, "table": "\n".join(rows)}
        series = {"float32 (torch, Adam, mini-batch)": ([h["epoch"] for h in float_hist],
                                                        [h["val_model"] for h in float_hist])}
        for label, c in curves.items():
            # training from the PTQ model continues after the float epochs; from scratch starts at 0
            offset = len(float_hist) if label == "from PTQ" else 0
            series[f"int8 integer rule, {label}"] = ([offset + h["epoch"] for h in c["history"]],
                                                     [h["val_multi_pass"] for h in c["history"]])
        line_plot(series, args.out / "int_training_curve.png", "board network 784-64-32",
                  "epoch (50,000 samples)", "validation accuracy, multi-pass")
    tables = "\n\n".join(part["table"] for part in results.values())
    print(tables)
    atomic_write_text(results_path, json.dumps(results, indent=2))
    atomic_write_text(args.out / "results.md", tables)


if __name__ == "__main__":
    main()
