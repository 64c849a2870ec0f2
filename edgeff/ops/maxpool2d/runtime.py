"""Max pooling in the integer runtime: int8 MAX_POOL_2D (edgeff.runtime.pooling) on the active kernel set, NHWC,
the same scale and zero point in and out (no tensors). No parameters: nothing to train."""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend, memory_plan
from edgeff.runtime.int_fully_connected import ACT_MAX, ACT_MIN


@dataclass
class IntMaxPool2d:
    size: int
    out_zero_point: int


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntMaxPool2d:
    if quant["in_zero_point"] != quant["out_zero_point"] or quant["in_scale"] != quant["out_scale"]:
        raise EdgeFFError(f"{where}: layer {index + 1} (maxpool2d) must keep its input's scale and zero point; "
                          "the file is corrupt")
    return IntMaxPool2d(spec.size, quant["out_zero_point"])


def tensors(layer: IntMaxPool2d, index: int) -> dict:
    return {}


def forward(layer: IntMaxPool2d, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    # TFLM's fused activation of MAX_POOL_2D is none here: the full int8 range
    return backend.kernels().max_pool2d(q, layer.size, ACT_MIN, ACT_MAX)


def training_shapes(spec, layer: IntMaxPool2d, in_zero_point: int) -> dict:
    """What a training step's plan (edgeff.runtime.memory_plan) needs of the layer: its input and output."""
    return memory_plan.parameterless_shapes(spec)


def training_buffers(spec, index: int, trained: bool) -> list:
    return []   # no parameters, no constants
