"""Speed of the integer runtime against torch float32 on the same network, measured side by side.

  inference: multi-pass scores of N test images x 10 labels. Both sides use the shared first-layer
             matmul + rank-1 label correction (FFNetwork.label_scores vs IntFFModel.label_scores).
  training:  one FF step (positive + negative pass, SymBa, update of every layer): torch float32 with
             Adam against the integer rule (IntTrainer.step), at batch sizes 1 (a board) and 64.
  int8 GEMM: the exact float32 BLAS path the runtime takes against torch._int_mm.
Each timing is the best of --repeats runs. Prints a Markdown table with the ratios.

    python benchmarks/runtime_speed.py --float-model FLOAT --int-model INT8 [--images 10000]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import load_dataset
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainer, IntTrainingConfig
from edgeff.train.config import config_from_dict
from edgeff.train.evaluate import images_to_input
from edgeff.train.model_io import load_network
from edgeff.train.trainer import build_optimizer, train_step


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def inference_row(net, model, images, repeats):
    x0 = images_to_input(images, net.n_classes)
    t_float = best_of(lambda: [net.label_scores(x0[i:i + 2000]) for i in range(0, len(x0), 2000)], repeats)
    t_int = best_of(lambda: model.label_scores(images), repeats)
    n = len(images) * net.n_classes
    return {"what": f"multi-pass inference, {len(images)} images x {net.n_classes} labels",
            "float_per_s": n / t_float, "int_per_s": n / t_int, "unit": "image-labels/s"}


def training_row(net, model, images, labels, batch, steps):
    cfg = config_from_dict({"model": {"sizes": net.sizes}, "collab": {"mode": net.collab_mode},
                            "train": {"loss": "symba", "batch_size": batch}})
    opt = build_optimizer(net, cfg)
    x0 = images_to_input(images, net.n_classes)
    y = torch.from_numpy(labels)
    y_neg = (y + 1) % net.n_classes
    trained = list(range(net.n_layers))

    def float_steps():
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            train_step(net, opt, x0[sl], y[sl], y_neg[sl], trained, cfg)

    trainer = IntTrainer(model, IntTrainingConfig(lr_shift=24))

    def int_steps():
        for s in range(steps):
            sl = slice(s * batch, (s + 1) * batch)
            trainer.step(images[sl], labels[sl])

    t_float, t_int = best_of(float_steps, 3), best_of(int_steps, 3)
    n = steps * batch
    return {"what": f"training step, batch {batch}", "float_per_s": n / t_float, "int_per_s": n / t_int,
            "unit": "samples/s"}


def int_mm_row(repeats, m=20000, k=504, n=504):
    """The int8 GEMM options for a 500-wide layer (torch._int_mm needs K and N multiples of 8)."""
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-127, 128, (n, k)).astype(np.int8)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b).T.contiguous()
    af, bf = a.astype(np.float32), b.astype(np.float32).T.copy()
    t_int_mm = best_of(lambda: torch._int_mm(ta, tb), repeats)
    t_np = best_of(lambda: af @ bf, repeats)
    macs = m * k * n
    return {"what": f"int8 GEMM {m}x{k}x{n}: NumPy float32 BLAS (exact here) vs torch._int_mm",
            "float_per_s": macs / t_np, "int_per_s": macs / t_int_mm, "unit": "MAC/s"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float-model", required=True)
    p.add_argument("--int-model", required=True)
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    net, _ = load_network(args.float_model)
    model = IntFFModel.from_file(args.int_model)
    data = load_dataset()
    images = data.test.images[:args.images]
    rows = [inference_row(net, model, images, args.repeats),
            training_row(net, IntFFModel.from_file(args.int_model), data.train.images, data.train.labels, 1, 300),
            training_row(net, IntFFModel.from_file(args.int_model), data.train.images, data.train.labels, 64, 30),
            int_mm_row(args.repeats)]
    print(f"network {net.sizes}, torch {torch.__version__} with {torch.get_num_threads()} threads\n")
    print("| measurement | torch float32 | EdgeFF int8 runtime | int8 / float |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['what']} | {r['float_per_s']:,.0f} {r['unit']} | {r['int_per_s']:,.0f} {r['unit']} | "
              f"{r['int_per_s'] / r['float_per_s']:.2f}x |")
    print("\n(last row: first column NumPy float32 BLAS on int8 values, second torch._int_mm)")


if __name__ == "__main__":
    main()
