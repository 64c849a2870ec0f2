"""The float twin of `edgeff finetune --last-k K` on a layered (conv) CwC model: the same fine-tuning in torch.

The float model's blocks with BatchNorm folded in float64 (edgeff.quant.layered.folded_network, batchnorm
padding: torch's semantics, what the int8 model computes before rounding), the last K trainable blocks trained
on their own CwC loss (cross-entropy of the class goodness, each block's input detached) by plain SGD on the
folded filters and biases at lr 2^-lr_shift, batch 1, in the sample order edgeff finetune draws
(edgeff.runtime.finetune: the seeded permutation of the training split), the earlier blocks frozen. This is
the integer rule's update in real numbers (edgeff/ops/conv2d/runtime.py), so the two are compared at the same
step. With --int8 INT8 (that float model quantized) the blocks start from what the int8 model computes instead, in
real numbers (edgeff.quant.layered.dequantized_network: its filters, biases and padding dequantized, its outputs
saturating at the int8 range, no rounding): the same start as the device's integer training, so the two differ by
the arithmetic alone. Prints the test accuracy (class goodness of the model's evaluation layers) before and after,
and the wall time of the training.

    OMP_NUM_THREADS=1 python benchmarks/conv_finetune.py runs/X/model.safetensors [--int8 INT8] --last-k 1 \\
        --lr-shift 14 --epochs 1 [--samples N] --data-dir /usr/share/datasets/fashion-mnist
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.app.options import dataset_of
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.quant.layered import dequantized_network, folded_network
from edgeff.scoring import multi_pass_accuracy
from edgeff.train.model_io import load_network

CHUNK = 500


@torch.no_grad()
def accuracy(folded, net, images, labels, eval_layers) -> float:
    parts = []
    for s in range(0, len(images), CHUNK):
        acts = folded.activities(net.inputs(images[s:s + CHUNK]).double())
        parts.append(torch.stack([net.class_goodness(h) for h in acts]).numpy())
    return multi_pass_accuracy(np.concatenate(parts, axis=1), labels, eval_layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="float layered (cwc) model file")
    ap.add_argument("--int8", help="start from this int8 model of MODEL, in real numbers (default: MODEL folded)")
    ap.add_argument("--last-k", type=int, default=1)
    ap.add_argument("--lr-shift", type=int, required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    net, header = load_network(args.model)
    _, int_like = load_model(args.model)
    data = dataset_of(int_like, args.data_dir)
    eval_layers = header["architecture"]["eval_layers"]
    try:
        folded = dequantized_network(net, args.int8) if args.int8 else folded_network(net, "batchnorm")
    except EdgeFFError as exc:
        sys.exit(f"error: {exc}")
    trained = net.trained[-args.last_k:]
    for k, layer in enumerate(folded.layers):
        layer.requires_grad_(k in trained)
    optimizer = torch.optim.SGD([p for k in trained for p in folded.layers[k].parameters()], lr=2.0 ** -args.lr_shift)
    test = data.test
    before = accuracy(folded, net, test.images, test.labels, eval_layers)
    n = min(args.samples or len(data.train), len(data.train))
    x_all = net.inputs(data.train.images).double()
    labels = torch.from_numpy(data.train.labels.astype(np.int64))
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(data.train))[:n]
        for s in order:
            h, total = x_all[s:s + 1], 0
            for k in range(net.n_layers):
                h = folded.run(h, k, k + 1)[0]   # the input detached: no gradient crosses a block
                if k in trained:
                    total = total + F.cross_entropy(net.class_goodness(h), labels[s:s + 1])
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
    seconds = time.perf_counter() - t0
    after = accuracy(folded, net, test.images, test.labels, eval_layers)
    print(json.dumps({"model": args.model, "start": f"{args.int8} in real numbers" if args.int8 else "the model folded",
                      "trained_layers": [k + 1 for k in trained], "samples": n,
                      "epochs": args.epochs, "lr": f"2^-{args.lr_shift}", "optimizer": "SGD, batch 1",
                      "test_before": before, "test_after": after, "train_seconds": round(seconds, 1)}, indent=2))


if __name__ == "__main__":
    main()
