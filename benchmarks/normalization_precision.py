"""Where int8 accuracy goes: the float network with only its normalized activations quantized.

Each layer's input is L2-normalized to a unit vector u and rounded to a grid of 2^-bits (clamped to
int8 or int16 range), everything else stays float. TFLite's L2_NORMALIZATION is the 7-bit int8 row.

    python benchmarks/normalization_precision.py MODEL [--images 10000]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.data.datasets import load_dataset
from edgeff.data.labels import overlay_labels
from edgeff.model_file import load_model

GRIDS = [("float (no rounding)", None, None), ("int8, scale 2^-7 (TFLite)", 7, 8), ("int8, scale 2^-9", 9, 8),
         ("int16, scale 2^-15 (16x8 mode)", 15, 16)]


def multi_pass_accuracy(tensors, arch, images, labels, bits, width):
    n_layers, c = len(arch["sizes"]) - 1, arch["n_classes"]
    scores = np.zeros((len(images), c))
    for label in range(c):
        x = overlay_labels(images.astype(np.float64) / 255.0, np.full(len(images), label), c, arch["label_value"])
        for i in range(n_layers):
            u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # an all-zero row stays 0
            if bits is not None:
                lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
                u = np.clip(np.round(u * 2.0 ** bits), lo, hi) / 2.0 ** bits
            fold = np.sqrt(x.shape[1]) if arch.get("normalization", "rms") == "rms" else 1.0
            x = np.maximum(fold * u @ tensors[f"layers.{i}.weight"].T + tensors[f"layers.{i}.bias"], 0.0)
            if i + 1 in arch["eval_layers"]:
                scores[:, label] += (x * x).mean(axis=1)
    return float((scores.argmax(axis=1) == labels).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--images", type=int, default=10000)
    args = p.parse_args()
    tensors, header = load_model(args.model)
    arch = header["architecture"]
    data = load_dataset()
    images, labels = data.test.images[:args.images], data.test.labels[:args.images]
    print(f"{args.model}: test multi-pass over layers {arch['eval_layers']}, {len(labels)} images\n")
    print("| normalized activations | accuracy |\n|---|---|")
    for name, bits, width in GRIDS:
        print(f"| {name} | {100 * multi_pass_accuracy(tensors, arch, images, labels, bits, width):.2f} % |")


if __name__ == "__main__":
    main()
