"""int8 (and 16x8) FullyConnected, as TFLite's reference_integer_ops::FullyConnected computes it.

    acc[n, c] = sum_k w[c, k] * (x[n, k] - zp_in) + bias[c]          (int32; int64 for 16x8)
    out = clamp(MultiplyByQuantizedMultiplier(acc, M[c], shift[c]) + zp_out, act_min, act_max)

Weights are symmetric (zero point 0), per-tensor or per-channel (M, shift broadcast over c).
`accumulate_ref` is the plain exact product (int64 NumPy matmul, slow); `accumulate` is the fast path:
BLAS in float32 when every partial sum provably stays below 2^24 (int8 x int8 with K <= 1024 and a zero
input zero point, as after L2 normalization), else float64 below 2^53, else the exact int64 product.
Integers below those bounds are exact in float, whatever order BLAS sums them in (tested at the
worst-case bound). Both return the same accumulators (int32 from the float32 path, else int64). These are
the reference kernels (pure NumPy); the C twin of the requantization is c_kernels.CKernels.
"""
import numpy as np

from edgeff.runtime.requantize import (
    INT32_MAX,
    INT32_MIN,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_int64,
    output_dtype,
    wrap_int32,
)

FLOAT32_EXACT = 1 << 24
FLOAT64_EXACT = 1 << 53


def accumulate_ref(x: np.ndarray, w: np.ndarray, input_zero_point: int) -> np.ndarray:
    """Exact sum_k w[c,k] * (x[n,k] - zp) as int64, the plain way."""
    return (np.asarray(x, np.int64) - input_zero_point) @ np.asarray(w, np.int64).T


def _bound(x, w, input_zero_point) -> int:
    """Largest |partial sum| the product could reach: K * max|x - zp| * max|w|. Its types alone settle
    it for int8 x int8 with K <= 1024 (no scan of the data)."""
    if x.dtype == np.int8 and w.dtype == np.int8 and input_zero_point == 0 and w.shape[1] * 128 * 128 <= FLOAT32_EXACT:
        return w.shape[1] * 128 * 128
    x_span = max(abs(int(x.min()) - input_zero_point), abs(int(x.max()) - input_zero_point)) if x.size else 0
    return w.shape[1] * x_span * (int(np.abs(w.astype(np.int64)).max()) if w.size else 0)


def accumulate(x: np.ndarray, w: np.ndarray, input_zero_point: int) -> np.ndarray:
    """Same result as accumulate_ref, through float64 BLAS while it is provably exact."""
    bound = _bound(x, w, input_zero_point)
    if bound > FLOAT64_EXACT:
        return accumulate_ref(x, w, input_zero_point)
    dtype = np.float32 if bound <= FLOAT32_EXACT else np.float64
    xf = np.asarray(x, dtype) - dtype(input_zero_point) if input_zero_point else np.asarray(x, dtype)
    return (xf @ np.asarray(w, dtype).T).astype(np.int32 if dtype == np.float32 else np.int64)


def requantize_output(acc, bias, multiplier, shift, output_zero_point, act_min, act_max,
                      rounding="double", wide=False) -> np.ndarray:
    """The FC epilogue: add the bias, rescale, add the output zero point, clamp.

    wide=False: int8 inputs, int32 bias and accumulator, MultiplyByQuantizedMultiplier.
    wide=True: 16x8 (int16 inputs), int64 bias and accumulator, the reduced-multiplier int64 variant.
    Returns the narrowest integer type of [act_min, act_max] (output_dtype).
    """
    dtype = output_dtype(act_min, act_max)
    acc = np.asarray(acc, np.int64)
    # a new array either way: the steps below work in place and must not touch the caller's
    acc = acc + np.asarray(bias, np.int64) if bias is not None else acc.copy()
    if wide:
        y = multiply_by_quantized_multiplier_int64(acc, multiplier, shift)
        y += output_zero_point
        return np.clip(y, act_min, act_max, out=y).astype(dtype)
    if acc.size and (acc.max() > INT32_MAX or acc.min() < INT32_MIN):
        acc = wrap_int32(acc)  # the board accumulates in int32
    if act_min >= output_zero_point and np.all(np.asarray(shift) <= 0) and np.all(np.asarray(multiplier) >= 0):
        # fused ReLU: with a non-negative multiplier a negative accumulator rescales to <= 0 and clamps to
        # act_min either way, so clamping it to 0 first changes nothing and lets the rescale take its
        # non-negative path (QuantizeMultiplier's multipliers are all >= 2^30; a negative one takes the general)
        np.maximum(acc, 0, out=acc)
    y = multiply_by_quantized_multiplier(acc, multiplier, shift, rounding)
    y += output_zero_point
    return np.clip(y, act_min, act_max, out=y).astype(dtype)


