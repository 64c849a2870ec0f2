"""Quantization-aware training (Brevitas) against post-training quantization on the board-sized network.

Per seed: trains the float network (models/board-784-64-32.toml) and the quantization-aware one
(models/board-784-64-32-qat.toml) with `edgeff train` (a finished run in --out is reused), quantizes
both with `edgeff quantize` (PTQ calibrates the float model's ranges; the QAT model brings its own), and
evaluates everything on the test set with `edgeff eval`. Then exports the first QAT model through
Brevitas' QCDQ ONNX path and compares onnxruntime's output with Brevitas' own forward (`edgeff verify`).

    python benchmarks/qat_accuracy.py [--seeds 3] [--out runs/bench-qat]
Prints Markdown tables; writes results.json and results.md to --out.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_text

CONFIGS = {"float, then PTQ": "edgeff/models/board-784-64-32.toml",
           "QAT (Brevitas)": "edgeff/models/board-784-64-32-qat.toml"}


def edgeff(*args, as_json=True):
    res = subprocess.run([sys.executable, "-m", "edgeff", *map(str, args), *(["--json"] if as_json else [])],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"edgeff {' '.join(map(str, args))} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout) if as_json else res.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/bench-qat"))
    args = p.parse_args()
    results = {name: [] for name in CONFIGS}
    for seed in range(args.seeds):
        for name, config in CONFIGS.items():
            run = args.out / f"{Path(config).stem}-seed{seed}"
            if not (run / "model.safetensors").exists():
                edgeff("train", config, "--out", run, "--seed", seed, "--quiet", as_json=False)
            int_path = run / "model-int8.safetensors"
            edgeff("quantize", run / "model.safetensors", "--out", int_path)
            results[name].append({"seed": seed, "float": edgeff("eval", run / "model.safetensors"),
                                  "int8": edgeff("eval", int_path), "model": str(run / "model.safetensors")})
            r = results[name][-1]
            print(f"seed {seed} {name}: model {r['float']['multi_pass']:.4f}, int8 {r['int8']['multi_pass']:.4f}",
                  flush=True)

    rows = ["| board network 784-64-32 | the trained model, multi-pass (one-pass) | int8 in the runtime, "
            "multi-pass (one-pass) | seeds |", "|---|---|---|---|"]
    for name, runs in results.items():
        def stat(part, key):
            v = 100 * np.array([r[part][key] for r in runs])
            return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f} %"
        rows.append(f"| {name} | {stat('float', 'multi_pass')} ({stat('float', 'one_pass')}) | "
                    f"{stat('int8', 'multi_pass')} ({stat('int8', 'one_pass')}) | {len(runs)} |")
    qat_model = Path(results["QAT (Brevitas)"][0]["model"])
    onnx_path = args.out / "board-qat-qcdq.onnx"
    edgeff("export", qat_model, "--format", "onnx", "--out", onnx_path)
    parity = edgeff("verify", qat_model, onnx_path, as_json=False)
    tables = "\n".join(rows) + "\n\nBrevitas QCDQ export of seed 0 against Brevitas' own forward:\n\n" + parity
    print(tables)
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(args.out / "results.md", tables)


if __name__ == "__main__":
    main()
