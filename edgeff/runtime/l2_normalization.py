"""int8 L2 normalization, mirroring TFLite's reference_integer_ops::L2Normalization bit for bit.

FF normalizes each layer's output length before the next layer. TFLite's kernel: acc = sum((q - zp)^2)
in int32, an inverse square root as a quantized multiplier (GetInvSqrtQuantizedMultiplierExp: 5 Newton-
Raphson steps in gemmlowp Q3.28 fixed point), then each element rescaled to an int8 output of scale
1/128, zero point 0. `*_ref` is the scalar C translation; the unsuffixed functions are vectorized.

`output_shift_bits` is TFLite's kOutputScale (7: output scale 1/128). EdgeFF's int16 activations use the
same algorithm with 15 (scale 1/32768) and an int16 clamp; TFLite has no such op. These are the reference
kernels (pure NumPy); the C twin is c_kernels.CKernels.l2_normalization.
"""
import numpy as np

from edgeff.runtime.requantize import (
    INT32_MAX,
    multiply_by_quantized_multiplier,
    output_dtype,
    saturating_rounding_doubling_high_mul_ref,
    saturating_rounding_multiply_by_pot,
    saturating_rounding_multiply_by_pot_ref,
    wrap_int32,
    wrap_int32_ref,
)

HALF_THREE_Q3 = (1 << 28) + (1 << 27)   # 1.5 in Q3.28
ONE_Q3 = 1 << 28                         # 1.0 in Q3.28
HALF_SQRT2_Q0 = 1518500250               # sqrt(2)/2 in Q0.31
TFLITE_OUTPUT_SHIFT_BITS = 7             # kOutputScale: output scale 1/128
# the widths of the normalized input a FullyConnected takes: TFLite's int8 output, or the same kernel with
# an int16 output (scale 2^-15) feeding a 16x8 FullyConnected
NORM_BITS_INT8, NORM_BITS_INT16 = TFLITE_OUTPUT_SHIFT_BITS, 15


def _count_leading_zeros32(x: int) -> int:
    return 32 - int(x).bit_length()


def inv_sqrt_quantized_multiplier_ref(acc: int, reverse_shift: int = -1) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp: (multiplier, shift) with multiplier*2^shift ~ 1/sqrt(acc)."""
    if acc <= 1:
        return INT32_MAX, 0
    shift = 11
    while acc >= (1 << 29):
        acc = int(acc / 4)  # C division of a positive int
        shift += 1
    pairs = (_count_leading_zeros32(acc) - 1) // 2 - 1
    shift -= pairs
    acc <<= 2 * pairs
    half_input = saturating_rounding_multiply_by_pot_ref(acc >> 1, -1)
    x = ONE_Q3
    for _ in range(5):
        x3 = saturating_rounding_doubling_high_mul_ref(saturating_rounding_doubling_high_mul_ref(x, x), x)
        x3 = saturating_rounding_multiply_by_pot_ref(x3, 6)                 # Rescale<3>: Q9 -> Q3
        t1 = saturating_rounding_doubling_high_mul_ref(HALF_THREE_Q3, x)      # Q6
        t2 = saturating_rounding_doubling_high_mul_ref(half_input, x3)        # Q6
        x = saturating_rounding_multiply_by_pot_ref(wrap_int32_ref(t1 - t2), 3)  # Rescale<3>: Q6 -> Q3
    x = saturating_rounding_doubling_high_mul_ref(x, HALF_SQRT2_Q0)
    if shift < 0:
        x = wrap_int32_ref(x << -shift)  # TFLite: *output_inv_sqrt <<= -*output_shift
        shift = 0
    return x, shift * reverse_shift


def _srdhm_non_negative(a, b):
    return (a * b + np.int64(1 << 30)) >> 31


SCALAR_BELOW = 32  # fewer rows than this: the scalar code beats NumPy's per-call overhead


def inv_sqrt_quantized_multiplier(acc, reverse_shift: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized GetInvSqrtQuantizedMultiplierExp over an array of non-negative int32 sums."""
    acc = np.asarray(acc, np.int64)
    if acc.size < SCALAR_BELOW:
        pairs = [inv_sqrt_quantized_multiplier_ref(int(a), reverse_shift) for a in acc.ravel()]
        return (np.array([m for m, _ in pairs], np.int64).reshape(acc.shape),
                np.array([s for _, s in pairs], np.int64).reshape(acc.shape))
    small = acc <= 1
    a = np.where(small, 2, acc)
    # `while (acc >= 2^29) acc /= 4`: an int32 acc needs at most one step
    big = a >= (1 << 29)
    a = np.where(big, a // 4, a)
    shift = 11 + big.astype(np.int64)
    clz = 32 - np.frexp(a.astype(np.float64))[1].astype(np.int64)  # frexp is exact for ints < 2^53
    pairs = (clz - 1) // 2 - 1
    shift -= pairs
    a = a << (2 * pairs)
    half_input = saturating_rounding_multiply_by_pot(a >> 1, -1)
    x = np.full(a.shape, ONE_Q3, np.int64)
    # Every operand below stays positive: the input is normalized to [0.5, 2) in Q3, so the iterate
    # starts at 1 and moves monotonically toward 1/sqrt(input) in (0.7, 1.5]. SRDHM of non-negative
    # operands is (a*b + 2^30) >> 31 (no sign cases, no MIN*MIN); the tests compare with the C version.
    for _ in range(5):
        x3 = _srdhm_non_negative(_srdhm_non_negative(x, x), x)
        x3 = saturating_rounding_multiply_by_pot(x3, 6)
        t1 = _srdhm_non_negative(HALF_THREE_Q3, x)
        t2 = _srdhm_non_negative(half_input, x3)
        x = saturating_rounding_multiply_by_pot(wrap_int32(t1 - t2), 3)
    x = _srdhm_non_negative(x, HALF_SQRT2_Q0)
    neg = shift < 0
    x = np.where(neg, wrap_int32(x << np.where(neg, -shift, 0)), x)
    shift = np.where(neg, 0, shift)
    x = np.where(small, INT32_MAX, x)
    shift = np.where(small, 0, shift)
    return x, shift * reverse_shift


def l2_normalization(q: np.ndarray, zero_point: int, output_shift_bits=TFLITE_OUTPUT_SHIFT_BITS,
                     out_min=-128, out_max=127, rounding="double") -> np.ndarray:
    """Vectorized kernel over the rows of q; returns int8 (or int16 for a 16-bit range) rows. `rounding`
    is the final rescale's: "double" (TFLite Micro's default) or "single" (TFLITE_SINGLE_ROUNDING)."""
    dtype = output_dtype(out_min, out_max)
    centered = np.asarray(q, np.int64) - zero_point
    acc = wrap_int32(np.einsum("ij,ij->i", centered, centered))
    mult, shift = inv_sqrt_quantized_multiplier(acc, -1)
    y = multiply_by_quantized_multiplier(centered, mult[:, None], shift[:, None] + output_shift_bits, rounding)
    return np.clip(y, out_min, out_max, out=y).astype(dtype)
