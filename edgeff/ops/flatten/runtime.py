"""Flatten in the integer runtime: an NHWC int8 activity as rows in torch's channel-major order
(edgeff.runtime.layout), so the dense layer after it keeps its trained weights. The same scale and zero point
in and out (no tensors). No parameters: nothing to train."""
from dataclasses import dataclass

import numpy as np

from edgeff.ops.passthrough import check_passthrough, tensors, training_buffers, training_shapes
from edgeff.runtime.layout import flatten_channel_major


@dataclass
class IntFlatten:
    out_zero_point: int


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntFlatten:
    check_passthrough(spec, index, quant, where)
    return IntFlatten(quant["out_zero_point"])


def forward(layer: IntFlatten, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    return flatten_channel_major(q)


__all__ = ["load", "tensors", "forward", "training_shapes", "training_buffers"]
