"""The profiler's README tables: training memory per layer, FF against backprop (analytic and measured),
and energy per training sample and per inference on every board in edgeff/hw_profiles/.

  python benchmarks/profiler_tables.py [--int-model 784-500-500=PATH --int-model 784-64-32=PATH]

Networks: 784-500-500 and the board-sized 784-64-32 (10 classes). Memory at batch 1 (a board) and 64;
measured peaks come from edgeff.train.torch_memory (torch float32 in a fresh process) and
edgeff.profiler.memory_measure (the NumPy integer runtime with tracemalloc, for the int8 model files given).
Prints Markdown.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.profiler.energy_model import layer_costs, total, with_energy
from edgeff.profiler.hw_profile import load_profile, profile_names
from edgeff.profiler.memory_measure import measure_int_training_peak
from edgeff.profiler.memory_model import layer_memory, layer_update_bytes, peak_bytes
from edgeff.profiler.profile_report import model_architecture
from edgeff.train.torch_memory import MALLOC_ENV, measure_torch

NETWORKS = {"784-500-500": ([784, 500, 500], [2]), "784-64-32": ([784, 64, 32], [2])}
KIB = 1024


def memory_table(name, sizes, head, batch, int_model):
    print(f"\n### {name}, batch {batch}: training memory per layer (KiB)\n")
    print("| layer | FF float32 | backprop float32 | BP/FF | FF int8 | backprop int8 | BP/FF |")
    print("|---|---|---|---|---|---|---|")
    kinds = {"ff32": ("ff", "float32"), "bp32": ("backprop", "float32"), "ff8": ("ff", "int8"),
             "bp8": ("backprop", "int8")}
    rows = {key: layer_memory(m, p, sizes, batch, 10, head) for key, (m, p) in kinds.items()}
    names = [r.name for r in rows["bp8"]]
    by = {k: {r.name: r.total for r in v} for k, v in rows.items()}
    for n in names:
        cells = []
        for a, b in (("ff32", "bp32"), ("ff8", "bp8")):
            fa, fb = by[a].get(n, 0), by[b].get(n, 0)
            cells += [f"{fa / KIB:,.1f}", f"{fb / KIB:,.1f}", f"{fb / fa:.2f}" if fa else "-"]
        print(f"| {n} | " + " | ".join(cells) + " |")
    peaks = {k: peak_bytes(*kinds[k], v) for k, v in rows.items()}
    print(f"| **peak, analytic** | {peaks['ff32'] / KIB:,.1f} | {peaks['bp32'] / KIB:,.1f} | "
          f"{peaks['bp32'] / peaks['ff32']:.2f} | {peaks['ff8'] / KIB:,.1f} | {peaks['bp8'] / KIB:,.1f} | "
          f"{peaks['bp8'] / peaks['ff8']:.2f} |")
    ff_run, bp_run = (measure_torch(m, sizes, batch) for m in ("ff", "backprop"))
    ff_m, bp_m = ff_run["peak_bytes"], bp_run["peak_bytes"]
    int_cell = "-"
    if int_model:
        from edgeff.runtime.int_model import IntFFModel
        from edgeff.runtime.int_training import IntTrainingConfig

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (2 * batch, sizes[0]), dtype=np.uint8)
        labels = rng.integers(0, 10, 2 * batch)
        arch = model_architecture(int_model)
        analytic = peak_bytes("ff", "int8", layer_memory("ff", "int8", sizes, batch, 10, arch["head_layers"],
                                                         arch["norm_bits"]))
        measured = measure_int_training_peak(IntFFModel.from_file(int_model), IntTrainingConfig(), images, labels,
                                             batch)
        int_cell = f"{measured / KIB:,.1f} (NumPy runtime; {measured / analytic:.2f}× the board's plan)"
    print(f"| **peak, measured** | {ff_m / KIB:,.1f} ({ff_m / peaks['ff32'] - 1:+.1%}) | {bp_m / KIB:,.1f} "
          f"({bp_m / peaks['bp32'] - 1:+.1%}) | {bp_m / ff_m:.2f} | {int_cell} | - | - |")
    per_layer = "; ".join(f"layer {i + 1} {m / KIB:,.1f} / {a / KIB:,.1f}" for i, (m, a) in
                          enumerate(zip(ff_run["layer_bytes"], layer_update_bytes(rows["ff32"]), strict=True)))
    print(f"\nFF float32, what each layer's update adds on top of what is live before it, measured / analytic "
          f"KiB: {per_layer}.")


def energy_table(name, sizes, head):
    print(f"\n### {name}: int8 energy per training sample and per inference (µJ, board energy from cycles)\n")
    print("| board | FF train | backprop train | BP/FF | one-pass inference | multi-pass inference | multi/one |"
          " FF train, op energy (Horowitz) |")
    print("|---|---|---|---|---|---|---|---|")
    head_inputs = sum(sizes[l] for l in head)
    for board in profile_names():
        prof = load_profile(board)
        e = {w: with_energy(layer_costs(w, sizes, 10, head_inputs), prof)
             for w in ("train_ff", "train_backprop", "inference_one_pass", "inference_multi_pass")}
        t = {w: total(rows, "energy_board_uj") for w, rows in e.items()}
        op = total(e["train_ff"], "energy_op_uj")
        print(f"| {board} | {t['train_ff']:,.1f} | {t['train_backprop']:,.1f} | "
              f"{t['train_backprop'] / t['train_ff']:.2f} | {t['inference_one_pass']:,.1f} | "
              f"{t['inference_multi_pass']:,.1f} | {t['inference_multi_pass'] / t['inference_one_pass']:.1f} | "
              f"{'-' if op is None else f'{op:,.2f}'} |")


RESOLUTION_PROBE = """
import json, torch
from pathlib import Path
def rss(key):
    return next(int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text().splitlines()
                if l.startswith(key))
torch.ones(10)
rise = {}
for kib in (64, 128, 256, 512, 1024, 4096):
    Path("/proc/self/clear_refs").write_text("5")
    base = rss("VmRSS:")
    block = torch.ones(kib * 256)
    del block
    rise[kib] = (rss("VmHWM:") - base) // 1024
print(json.dumps(rise))
"""


def resolution_table():
    """How much of a block that is allocated and freed at once reaches the peak-RSS counter."""
    done = subprocess.run([sys.executable, "-c", RESOLUTION_PROBE], capture_output=True, text=True, check=True,
                          env={**os.environ, **MALLOC_ENV})
    rise = json.loads(done.stdout)
    print("\n### Resolution of the RSS measurement: a block allocated, filled and freed\n")
    print("| block (KiB) | " + " | ".join(rise) + " |")
    print("|---|" + "---|" * len(rise))
    print("| VmHWM rise (KiB) | " + " | ".join(str(v) for v in rise.values()) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--int-model", action="append", default=[], metavar="NET=PATH",
                    help="an int8 model file of one of the networks, for the measured NumPy peak")
    args = ap.parse_args()
    int_models = dict(item.split("=", 1) for item in args.int_model)
    for name, (sizes, head) in NETWORKS.items():
        for batch in (1, 64):
            memory_table(name, sizes, head, batch, int_models.get(name))
        energy_table(name, sizes, head)
    resolution_table()


if __name__ == "__main__":
    main()
