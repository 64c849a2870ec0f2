"""Activations of a layered int8 model: NHWC inside the convolutions, torch's channel-major order outside.

The conv kernels (conv2d.py, pooling.py) take NHWC, as TFLite, TFLM and CMSIS-NN do. The float model is
NCHW, and two things read its order: the image (a model file's uint8 pixels are C*H*W values, channel-major)
and a flattened activity (flatten, and the one-pass head over it), whose C*H*W entries a dense layer's
weights index in torch's order. So the image is transposed to NHWC once on the way in and a flattened
activity back to channel-major order, which keeps every dense weight as torch trained it (a board export
could fold that transpose into the dense weights instead; the values are the same).
"""
import numpy as np


def image_nhwc(q: np.ndarray, shape: tuple) -> np.ndarray:
    """(N, C*H*W) int8 values in channel-major order, shaped (C, H, W), as an NHWC batch (N, H, W, C)."""
    c, h, w = shape
    return np.ascontiguousarray(q.reshape(len(q), c, h, w).transpose(0, 2, 3, 1))


def flatten_channel_major(q: np.ndarray) -> np.ndarray:
    """An NHWC batch as (N, C*H*W) rows in torch's flatten order (channel, then row, then column)."""
    return np.ascontiguousarray(q.transpose(0, 3, 1, 2)).reshape(len(q), -1)
