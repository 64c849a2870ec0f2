"""The PTQ gap of a layered (conv) FF model split into the BatchNorm fold's error and the quantization's.

Scores one split three ways and prints a Markdown table: the float model in torch (float32), the same model
with the fold's semantics in float64 (edgeff.quant.layered.folded_network: BatchNorm folded into each conv,
the input padded with pre-BatchNorm zeros, which is what the int8 convolution computes before rounding by
default and differs from torch at padded borders; or padded with BatchNorm's zero, `--conv-padding batchnorm`,
torch's semantics; see edgeff/ops/conv2d/ptq.py), and each int8 model file given (the integer runtime), whose
fold share is that of its padding. The decision is the class goodness summed over the model's evaluation
layers (multi-pass, one pass for CwC), and the one-pass softmax head.

    python benchmarks/conv_int8.py runs/X/model.safetensors X-int8.safetensors [more int8 files] \\
        --data-dir /usr/share/datasets/fashion-mnist [--fold-each]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.app.options import dataset_of
from edgeff.model_file import load_model
from edgeff.ops.conv2d.ptq import PADDINGS
from edgeff.quant.layered import folded_network, folded_outputs
from edgeff.runtime import backend
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import evaluate_int
from edgeff.scoring import evaluate_split, multi_pass_accuracy
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network


def folded_scores(net, images, conv_padding, only=None):
    """(class goodness of every layer, head predictions) of the folded float64 network (`only` these layers
    folded)."""
    acts, logits = folded_outputs(folded_network(net, conv_padding, only), net, images)
    with torch.no_grad():
        scores = np.stack([net.class_goodness(torch.from_numpy(a)).numpy() for a in acts])
    return scores, logits.argmax(axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("float_model")
    ap.add_argument("int8_models", nargs="+")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--fold-each", action="store_true", help="also each conv block's fold alone")
    args = ap.parse_args()
    net, header = load_network(args.float_model)
    split = getattr(dataset_of(header, args.data_dir), args.split)
    layers = header["architecture"]["eval_layers"]
    reference = evaluate(net, split.images, split.labels, layers)
    folded = {}
    for padding in PADDINGS:
        scores, head = folded_scores(net, split.images, padding)
        folded[padding] = evaluate_split(lambda: scores, lambda: head, split.labels, layers)  # noqa: B023
    print(f"{args.split} split, {len(split.labels)} images; goodness of layers {layers}; kernels "
          f"{backend.active()}\n")
    print("| arithmetic | goodness % | one-pass head % | goodness - torch (points) | of which fold | of which "
          "quantization |")
    print("|---|---|---|---|---|---|")

    def row(name, r, fold=None):
        total = 100 * (r["multi_pass"] - reference["multi_pass"])
        parts = [f"{total:+.2f}", f"{fold:+.2f}" if fold is not None else f"{total:+.2f}",
                 f"{total - fold:+.2f}" if fold is not None else ""]
        print(f"| {name} | {100 * r['multi_pass']:.2f} | {100 * r['one_pass']:.2f} | " + " | ".join(parts) + " |")

    print(f"| float32 (torch) | {100 * reference['multi_pass']:.2f} | {100 * reference['one_pass']:.2f} | | | |")
    for padding, r in folded.items():
        row(f"float64, BatchNorm folded, {padding} padding", r)
    for path in args.int8_models:
        quant = load_model(path)[1]["quantization"]
        padding = quant["conv_padding"]
        r = evaluate_int(IntLayeredModel.from_file(path), split.images, split.labels, layers)
        row(f"int8, {padding} padding, calibration percentile {quant['calibration']['percentile']:g}, "
            f"{quant['rounding']} rounding ({Path(path).name})", r,
            100 * (folded[padding]["multi_pass"] - reference["multi_pass"]))
    if args.fold_each:   # each block's fold alone (the padded ones differ from torch at their borders)
        print("\n| folded alone, zero-point padding | goodness % | goodness - torch (points) |\n|---|---|---|")
        for i, spec in enumerate(net.specs):
            if spec.kind == "conv2d":
                scores, _ = folded_scores(net, split.images, "zero-point", [i])
                accuracy = multi_pass_accuracy(scores, split.labels, layers)
                print(f"| layer {i + 1} (padding {spec.padding}) | {100 * accuracy:.2f} | "
                      f"{100 * (accuracy - reference['multi_pass']):+.2f} |")


if __name__ == "__main__":
    main()
