"""Max pooling in the integer runtime: int8 MAX_POOL_2D (edgeff.runtime.pooling) on the active kernel set, NHWC,
the same scale and zero point in and out (no tensors). No parameters: nothing to train."""
from dataclasses import dataclass

import numpy as np

from edgeff.ops.passthrough import check_passthrough, tensors, training_buffers, training_shapes
from edgeff.runtime import backend
from edgeff.runtime.int_fully_connected import ACT_MAX, ACT_MIN


@dataclass
class IntMaxPool2d:
    size: int
    out_zero_point: int


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntMaxPool2d:
    check_passthrough(spec, index, quant, where)
    return IntMaxPool2d(spec.size, quant["out_zero_point"])


def forward(layer: IntMaxPool2d, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    # TFLM's fused activation of MAX_POOL_2D is none here: the full int8 range
    return backend.kernels().max_pool2d(q, layer.size, ACT_MIN, ACT_MAX)


__all__ = ["load", "tensors", "forward", "training_shapes", "training_buffers"]
