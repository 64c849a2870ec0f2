"""Trainable parameters of the light FF models (edgeff/models/ff-conv-*.toml) next to Table III of Ortiz Torres et al..

Counts the conv blocks' parameters (filters, biases, BatchNorm scale and shift) from each layer's torch
module, for the shipped 28x28x1 configs and for the same blocks on a 3-channel input (the table's CIFAR-10
input), and the one-pass head on the last block. No training, no data.

    python benchmarks/conv_params.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.model_description import ModelDescription
from edgeff.package_data import model_config
from edgeff.train.config import load_config
from edgeff.train.conv_network import ConvFFNetwork

TABLE_III = {"ff-conv-tiny": ("FF_tiny", 164_706), "ff-conv-small": ("FF_small", 239_266),
             "ff-conv-medium": ("FF_medium", 484_506), "ff-conv-optimal": ("FF_optimal", 754_386),
             "ff-conv-deep": ("FF_deep", 4_131_346)}


def counts(input_shape, layers) -> tuple[int, int]:
    net = ConvFFNetwork(ModelDescription.chain(input_shape, layers), 10, "cwc")
    return (sum(p.numel() for p in net.layers.parameters()), sum(p.numel() for p in net.head.parameters()))


def main():
    print("| model | Ortiz Torres et al., Table III | EdgeFF 28x28x1: blocks | + one-pass head "
          "| same blocks, 3-channel input |")
    print("|---|---|---|---|---|")
    for name, (paper, table) in TABLE_III.items():
        cfg = load_config(model_config(name))
        blocks, head = counts(cfg.model.input_shape, cfg.model.layers)
        rgb, _ = counts([3, *cfg.model.input_shape[1:]], cfg.model.layers)
        print(f"| {paper} ({name}) | {table:,} | {blocks:,} | {blocks + head:,} | {rgb:,} |")


if __name__ == "__main__":
    main()
