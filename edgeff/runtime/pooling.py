"""int8 MAX_POOL_2D, as TFLite Micro's reference_integer_ops::MaxPool computes it, for non-overlapping
windows: filter = stride = size, VALID padding (the maxpool2d layer kind's pooling).

    out[n, y, x, c] = clamp(max_{i, j < size} in[n, y*size + i, x*size + j, c], act_min, act_max)

NHWC as the convolution (conv2d.py); rows and columns past the last whole window are dropped (VALID). The
clamp is TFLM's fused activation; max pooling after a ReLU conv never needs it, yet it is part of the op.
"""
import numpy as np


def max_pool2d(x, size, act_min, act_max) -> np.ndarray:
    """int8 NHWC input (N, H, W, C): the int8 output (N, H // size, W // size, C)."""
    x = np.asarray(x)
    n, h, w, c = x.shape
    oh, ow = h // size, w // size
    windows = x[:, : oh * size, : ow * size].reshape(n, oh, size, ow, size, c)
    return np.clip(windows.max(axis=(2, 4)), act_min, act_max).astype(np.int8)
