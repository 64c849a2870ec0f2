"""FF goodness in integers: sum over a layer of (q - zp)^2, accumulated in int32.

Exact everywhere (board, TFLite, NumPy): each term is at most 255^2 for int8, so an int32 holds the sum
of up to 33,000 units. Its real value is scale^2 * G (divide by the width for "mean" goodness).
The reference kernel (pure NumPy); the C twin is c_kernels.CKernels.goodness.
"""
import numpy as np

from edgeff.runtime.requantize import INT32_MAX


def goodness(q: np.ndarray, zero_point: int) -> np.ndarray:
    centered = np.asarray(q, np.int64) - zero_point
    g = np.einsum("...i,...i->...", centered, centered)
    if g.size and g.max() > INT32_MAX:
        raise OverflowError("goodness overflows int32: the layer is too wide for int32 accumulation")
    return g
