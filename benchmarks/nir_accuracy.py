"""The NIR export's table (docs/nir.md): ANN against spiking accuracy over T, the smallest T within 1 point, and
energy per inference on neuromorphic chips against an MCU, for the board network and FF 784-500-500.

Runs the CLI end to end on Fashion-MNIST (the default data): `edgeff train` (a few epochs; a model already in
--out is reused), `edgeff export --format nir`, `edgeff verify --json --multi-pass --plot`; with sinabs installed (the
`nir-check` extra), sinabs' predictions against EdgeFF's simulator (reset by subtraction) at the table's T.
Progress on stderr.

    python benchmarks/nir_accuracy.py --out reports/nir   # about 10 minutes on 2 cores
"""
import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeff.data.datasets import load_dataset
from edgeff.export import nir_graph
from edgeff.export.nir_simulator import Simulator

CONFIGS = {"board-784-64-32": 5, "ff-784-500-500-fast": 3}   # config -> training epochs (short runs)


def edgeff(*args) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "edgeff", *map(str, args)], capture_output=True, text=True)
    if res.returncode not in (0, 1):   # verify exits 1 when no T comes within a point: still a result
        sys.exit(f"edgeff {' '.join(map(str, args))} failed:\n{res.stderr}")
    return res


def run(config: str, epochs: int, out: Path, timesteps: str, images) -> dict:
    folder = out / config
    model = folder / "model.safetensors"
    if not model.exists():
        print(f"{config}: training {epochs} epochs", file=sys.stderr)
        edgeff("train", config, "--epochs", epochs, "--out", folder, "--quiet")
    print(f"{config}: exporting and simulating", file=sys.stderr)
    edgeff("export", model, "--format", "nir", "--out", folder / "model.nir")
    extra = ["--images", images] if images else []
    res = edgeff("verify", model, folder / "model.nir", "--timesteps", timesteps, "--json", "--multi-pass",
                 "--plot", folder / "accuracy_vs_t.png", *extra)
    result = json.loads(res.stdout)
    if importlib.util.find_spec("sinabs"):
        result["sinabs"] = sinabs_agreement(model, folder / "model.nir", result, images)
    return result


def table_t(result: dict) -> int:
    """The T the energy table reports: the smallest within 1 point under NIR's rule, else the largest."""
    return result["smallest_t_within_one_point"]["nir"] or result["rows"][-1]["timesteps"]


def sinabs_agreement(model_path, nir_path, result: dict, images) -> dict:
    from edgeff.export.nir_sinabs import sinabs_outputs

    t = table_t(result)
    print(f"{Path(model_path).parent.name}: sinabs at T = {t}", file=sys.stderr)
    model = nir_graph.FloatModel(model_path)
    test = load_dataset(None).test
    currents = model.currents(test.images[:int(images)] if images else test.images)
    graph = nir_graph.read(nir_path)
    theirs = sinabs_outputs(graph, currents, t)
    ours = Simulator(graph).run(currents, [t], "subtract")[t]["outputs"]["output"]
    return {"timesteps": t, "agreement": float((theirs.argmax(1) == ours.argmax(1)).mean()),
            "mean_relative_difference": float(np.abs(theirs - ours).mean() / np.abs(ours).mean())}


def table(results: dict) -> str:
    steps = [r["timesteps"] for r in next(iter(results.values()))["rows"]]
    lines = ["| model | ANN | rate model (T → ∞) | reset | " + " | ".join(f"T={t}" for t in steps)
             + " | smallest T within 1 point |", "|---" * (5 + len(steps)) + "|"]
    for name, r in results.items():
        for reset, label in (("nir", "NIR's IF rule (to v_reset)"), ("subtract", "by subtraction")):
            lines.append(f"| {name} | {100 * r['ann_accuracy']:.2f} % | {100 * r['rate_model_accuracy']:.2f} % | "
                         f"{label} | " + " | ".join(f"{100 * row[f'accuracy_{reset}']:.2f}" for row in r["rows"])
                         + f" | {r['smallest_t_within_one_point'][reset] or 'none'} |")
    lines += ["", "| model | ANN multi-pass | reset | " + " | ".join(f"T={t}" for t in steps) + " |",
              "|---" * (3 + len(steps)) + "|"]
    for name, r in results.items():
        for reset, label in (("nir", "NIR's IF rule (to v_reset)"), ("subtract", "by subtraction")):
            lines.append(f"| {name} | {100 * r['ann_multi_pass_accuracy']:.2f} % | {label} | "
                         + " | ".join(f"{100 * row[f'multi_pass_accuracy_{reset}']:.2f}" for row in r["rows"]) + " |")
    lines += ["", "| model | T | agreement with the ANN (NIR rule / subtraction) | sinabs agreeing with EdgeFF's "
              "simulator (subtraction) | synaptic ops / inference | Loihi µJ | ODIN µJ | MCU int8 one-pass µJ "
              "(board) | of which the input layer |", "|---" * 9 + "|"]
    for name, r in results.items():
        t = table_t(r)
        cross = r.get("sinabs")
        sinabs = (f"{100 * cross['agreement']:.2f} % (outputs {100 * cross['mean_relative_difference']:.2f} % apart)"
                  if cross else "not installed")
        row = next(x for x in r["rows"] if x["timesteps"] == t)
        mcu = r["mcu"]
        lines.append(f"| {name} | {t} | {100 * row['agreement_nir']:.2f} % / {100 * row['agreement_subtract']:.2f} % | "
                     f"{sinabs} | {row['synaptic_ops_nir']:,.0f} | {row['energy_uj']['loihi']:.3g} | "
                     f"{row['energy_uj']['odin']:.3g} | {mcu['energy_board_uj']:.3g} ({mcu['board']}) | "
                     f"{mcu['first_layer_energy_board_uj']:.3g} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="reports/nir", help="folder for the models, exports and curves")
    p.add_argument("--timesteps", default="4,8,16,32,64,128,256")
    p.add_argument("--images", help="test images (default: all)")
    args = p.parse_args()
    results = {config: run(config, epochs, Path(args.out), args.timesteps, args.images)
               for config, epochs in CONFIGS.items()}
    (Path(args.out) / "nir_accuracy.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
