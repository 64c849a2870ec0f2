"""Quantizing a FullyConnected that reads an L2-normalized input, as TFLite does: the building block of
each layer kind's post-training quantization (edgeff/ops/<kind>/ptq.py) and of the one-pass head's.

The integer kernel normalizes to unit length (L2_NORMALIZATION); a float network may normalize to another
length, which folds into the weights. Weights are int8 per output channel, symmetric, and the
requantization multipliers are derived from the float32 scales as TFLite derives them, so a .tflite
export requantizes identically.
"""
import math

import numpy as np

from edgeff.runtime.requantize import multiplier_from_scales


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
