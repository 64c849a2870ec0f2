"""Flatten in the integer runtime: an NHWC int8 activity as rows in torch's channel-major order
(edgeff.runtime.layout), so the dense layer after it keeps its trained weights. The same scale and zero point
in and out (no tensors). No parameters: nothing to train."""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import memory_plan
from edgeff.runtime.layout import flatten_channel_major


@dataclass
class IntFlatten:
    out_zero_point: int


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntFlatten:
    if quant["in_zero_point"] != quant["out_zero_point"] or quant["in_scale"] != quant["out_scale"]:
        raise EdgeFFError(f"{where}: layer {index + 1} (flatten) must keep its input's scale and zero point; "
                          "the file is corrupt")
    return IntFlatten(quant["out_zero_point"])


def tensors(layer: IntFlatten, index: int) -> dict:
    return {}


def forward(layer: IntFlatten, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    return flatten_channel_major(q)


def training_shapes(spec, layer: IntFlatten, in_zero_point: int) -> dict:
    """What a training step's plan (edgeff.runtime.memory_plan) needs of the layer: its input and output."""
    return memory_plan.parameterless_shapes(spec)


def training_buffers(spec, index: int, trained: bool) -> list:
    return []   # no parameters, no constants
