"""Quantizing a FullyConnected that reads an L2-normalized input, as TFLite does: the building block of
each layer kind's post-training quantization (edgeff/ops/<kind>/ptq.py) and of the one-pass head's.

The integer kernel normalizes to unit length (L2_NORMALIZATION); a float network may normalize to another
length, which folds into the weights. Weights are int8 per output channel, symmetric, and the
requantization multipliers are derived from the float32 scales as TFLite derives them, so a .tflite
export requantizes identically.
"""
import math

import numpy as np

from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import float32, multiplier_from_scales


def normalization_fold(normalization: str, width: int) -> float:
    """The factor between the kernel's unit-length normalization and the network's: an "rms" layer sees
    sqrt(D) * u for the unit vector u, so its weights are folded as W' = W * sqrt(D); "length" is u itself."""
    return math.sqrt(width) if normalization == "rms" else 1.0


def weights_on_scales(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 weights of w (out, in) at the given per-output-channel scales, symmetric (-127..127)."""
    return np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)


def per_channel(w: np.ndarray, input_scale: float, output_scale: float):
    """int8 weights, their float32 scales (max|w[c]| / 127) and the (multiplier, shift) of each output
    channel for an input at `input_scale` and an output at `output_scale`."""
    max_abs = np.abs(w).max(axis=1)
    scales = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
    mult, shift = zip(*(multiplier_from_scales(input_scale, s, output_scale) for s in scales), strict=True)
    return weights_on_scales(w, scales), scales, np.array(mult, np.int32), np.array(shift, np.int32)


def relu_output_scale(activities: np.ndarray, percentile: float) -> float:
    """A ReLU output's calibrated scale: the `percentile` of its float activities spread over 256 codes."""
    return float32(max(float(np.percentile(activities, percentile)), 1e-6) / 255.0)


def quantize_head(weight: np.ndarray, bias: np.ndarray, widths: list, normalization: str, logits: np.ndarray):
    """(tensors head.*, logit scale) of the one-pass head: a FullyConnected on the concatenated normalized
    activities of the head layers (`widths` values each, int8 after TFLite's L2_NORMALIZATION, scale 1/128),
    each layer's normalization folded into its columns; int8 logits at the scale of their largest value
    on the calibration inputs (`logits`), zero point 0."""
    hw = weight.astype(np.float64).copy()
    col = 0
    for width in widths:
        hw[:, col:col + width] *= normalization_fold(normalization, width)
        col += width
    logit_scale = float32(max(float(np.abs(logits).max()), 1e-6) / 127.0)
    head_norm_scale = 2.0 ** -NORM_BITS_INT8  # the head keeps TFLite's int8 normalization
    q, scales, mult, shift = per_channel(hw, head_norm_scale, logit_scale)
    return {"head.weight": q, "head.weight_scale": scales,
            "head.bias": np.round(bias / (scales * head_norm_scale)).astype(np.int32),
            "head.multiplier": mult, "head.shift": shift}, logit_scale
