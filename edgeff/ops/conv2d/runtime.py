"""The conv block in the integer runtime, for inference: int8 CONV_2D with the BatchNorm folded into its filters
and bias, fused ReLU (the clamp at the output zero point), then MAX_POOL_2D when the block pools.

NHWC activations and OHWI filters (edgeff.runtime.conv2d); the kernels run on the active kernel set
(edgeff.runtime.backend: the NumPy reference or the C twins), never chosen here. Max pooling after the clamp
commutes with it and with the requantization (both monotone), so pooling the int8 output is pooling the real
one; MAX_POOL_2D keeps the scale and zero point.

Tensors of layer i (edgeff/ops/conv2d/ptq.py makes them): layers.<i>.weight int8 (O, k, k, C), bias int32 (O,),
multiplier / shift int32 (O,), pad_value int8 (C,); its quantization header entry holds in/out scale and zero
point and the fold. The input is padded with pad_value: where that is the input's zero point (TFLite's
padding, the default) the kernel pads itself, skipping the taps outside the input; otherwise (BatchNorm's
zero, `edgeff quantize --conv-padding batchnorm`) the input is padded explicitly and the convolution is VALID.
Inference only: the block has no integer update rule yet, so integer training, board images and ONNX exports
of a conv model are refused (edgeff.runtime.int_model.IntFFModel says so); its TFLite form is
edgeff/ops/conv2d/tflite_writer.py.
"""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.int_fully_connected import ACT_MAX, ACT_MIN, check_requantization, checked_tensor


@dataclass
class IntConv2d:
    weight: np.ndarray        # int8 OHWI (out, kernel, kernel, in)
    bias: np.ndarray          # int32 (out,)
    multiplier: np.ndarray    # int32 (out,)
    shift: np.ndarray         # int32 (out,)
    out_zero_point: int
    act_min: int              # fused ReLU: the output zero point
    stride: int
    padding: int
    conv_size: tuple          # (height, width) of the convolution's output, before pooling
    pool: int
    pad_value: np.ndarray     # int8 (in,): what the input is padded with, per channel


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntConv2d:
    """Layer `index` (0-based) from model-file tensors and its quantization header entry, checked."""
    p = f"layers.{index}."
    zp = quant["out_zero_point"]
    if not ACT_MIN <= zp <= ACT_MAX:
        raise EdgeFFError(f"{where}: layer {index + 1} output zero point {zp} is outside int8")
    layout = spec.int8_tensors(None)
    weight, bias, multiplier, shift, pad_value = (checked_tensor(where, tensors, p + name, np.dtype(dtype), shape)
                                                  for name, (dtype, shape) in layout.items())
    check_requantization(where, p + "multiplier", multiplier, shift)
    return IntConv2d(weight, bias, multiplier, shift, zp, max(ACT_MIN, zp), spec.stride, spec.padding,
                     spec.conv_shape[1:], spec.pool, pad_value)


def tensors(layer: IntConv2d, index: int) -> dict:
    p = f"layers.{index}."
    return {p + "weight": layer.weight, p + "bias": layer.bias, p + "multiplier": layer.multiplier,
            p + "shift": layer.shift, p + "pad_value": layer.pad_value}


def forward(layer: IntConv2d, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    """The block's int8 NHWC output for the int8 NHWC input q (zero point `zero_point`)."""
    kernels = backend.kernels()
    s, p = layer.stride, layer.padding
    if p and (layer.pad_value != zero_point).any():
        q = np.pad(q.astype(np.int16) - layer.pad_value, ((0, 0), (p, p), (p, p), (0, 0))) + layer.pad_value
        q, p = q.astype(np.int8), 0
    out = kernels.conv2d(q, zero_point, layer.weight, layer.bias, layer.multiplier, layer.shift,
                         layer.out_zero_point, layer.act_min, ACT_MAX, (s, s), (p, p), layer.conv_size, rounding)
    return kernels.max_pool2d(out, layer.pool, ACT_MIN, ACT_MAX) if layer.pool > 1 else out
