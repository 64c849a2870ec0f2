"""FF goodness in integers: sum over a layer of (q - zp)^2, accumulated in int32.

Exact everywhere (board, TFLite, NumPy): each term is at most 255^2 for int8, so an int32 holds the sum
of up to 33,000 units. Its real value is scale^2 * G (divide by the width for "mean" goodness).
Rows of int8 values go to the C kernels when they are available (c_kernels.py).
"""
import numpy as np

from edgeff.runtime import c_kernels
from edgeff.runtime.requantize import INT32_MAX

C_MAX_UNITS = INT32_MAX // (255 * 255)   # the C kernel cannot overflow below this width


def goodness(q: np.ndarray, zero_point: int) -> np.ndarray:
    q = np.asarray(q)
    if q.ndim == 2 and q.dtype == np.int8 and q.shape[1] <= C_MAX_UNITS and c_kernels.library():
        return c_kernels.goodness(q, zero_point).astype(np.int64)
    centered = np.asarray(q, np.int64) - zero_point
    g = np.einsum("...i,...i->...", centered, centered)
    if g.size and g.max() > INT32_MAX:
        raise OverflowError("goodness overflows int32: the layer is too wide for int32 accumulation")
    return g
