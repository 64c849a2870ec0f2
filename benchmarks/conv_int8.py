"""The PTQ gap of a layered (conv) FF model split into the BatchNorm fold's error and the quantization's.

Scores one split three ways and prints a Markdown table: the float model in torch (float32), the same model
with the fold's semantics in float64 (edgeff.quant.layered.folded_network: BatchNorm folded into each conv,
the raw input padded with zeros, which is what the int8 convolution computes before rounding; it differs from
torch only at padded borders, see edgeff/ops/conv2d/ptq.py), and each int8 model file given (the integer
runtime). The decision is the class goodness summed over the model's evaluation layers (multi-pass, one pass
for CwC), and the one-pass softmax head.

    python benchmarks/conv_int8.py runs/X/model.safetensors X-int8.safetensors [more int8 files] \\
        --data-dir /usr/share/datasets/fashion-mnist
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.app.options import dataset_of
from edgeff.model_file import load_model
from edgeff.quant.layered import folded_network, folded_outputs
from edgeff.runtime import backend
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import evaluate_int
from edgeff.scoring import evaluate_split
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network


def folded_scores(net, images):
    """(class goodness of every layer, head predictions) of the folded float64 network."""
    acts, logits = folded_outputs(folded_network(net), net, images)
    with torch.no_grad():
        scores = np.stack([net.class_goodness(torch.from_numpy(a)).numpy() for a in acts])
    return scores, logits.argmax(axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("float_model")
    ap.add_argument("int8_models", nargs="+")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--split", choices=["test", "val"], default="test")
    args = ap.parse_args()
    net, header = load_network(args.float_model)
    split = getattr(dataset_of(header, args.data_dir), args.split)
    layers = header["architecture"]["eval_layers"]
    rows = [("float32 (torch)", evaluate(net, split.images, split.labels, layers))]
    scores, head = folded_scores(net, split.images)
    rows.append(("float64, BatchNorm folded (int8's padding)",
                 evaluate_split(lambda: scores, lambda: head, split.labels, layers)))
    for path in args.int8_models:
        calibration = load_model(path)[1]["quantization"]["calibration"]
        model = IntLayeredModel.from_file(path)
        rows.append((f"int8, calibration percentile {calibration['percentile']:g} ({Path(path).name})",
                     evaluate_int(model, split.images, split.labels, layers)))
    torch_goodness, folded_goodness = rows[0][1]["multi_pass"], rows[1][1]["multi_pass"]
    print(f"{args.split} split, {len(split.labels)} images; goodness of layers {layers}; kernels "
          f"{backend.active()}\n")
    print("| arithmetic | goodness % | one-pass head % | goodness - torch (points) | of which fold | of which "
          "quantization |")
    print("|---|---|---|---|---|---|")
    fold = 100 * (folded_goodness - torch_goodness)
    for k, (name, r) in enumerate(rows):
        total = 100 * (r["multi_pass"] - torch_goodness)
        parts = ["", ""] if k == 0 else [f"{fold:+.2f}", "" if k == 1 else f"{total - fold:+.2f}"]
        print(f"| {name} | {100 * r['multi_pass']:.2f} | {100 * r['one_pass']:.2f} | "
              + ("" if k == 0 else f"{total:+.2f}") + f" | {parts[0]} | {parts[1]} |")

if __name__ == "__main__":
    main()
