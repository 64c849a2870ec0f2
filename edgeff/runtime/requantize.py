"""Integer rescaling as TFLite / TFLM / gemmlowp do it: QuantizeMultiplier and MultiplyByQuantizedMultiplier.

Two implementations with one API: `*_ref` functions are literal scalar translations of the C code
(Python ints, C's truncating division and int32 wrap-around spelled out) and are the specification; the
unsuffixed functions are vectorized NumPy (int64 lanes holding int32 values) and are what the kernels
call. Tests prove them equal on random cases and on every edge (INT32_MIN, saturation, ties); the scalar
forms only the tests use (MultiplyByQuantizedMultiplier itself among them) live in tests/reference_math.py.

Default rounding is TFLM's "double rounding": SaturatingRoundingDoublingHighMul then RoundingDivideByPOT.
`rounding="single"` selects TFLITE_SINGLE_ROUNDING (one 64-bit multiply, add, shift).
"""
import math

import numpy as np

try:  # optional: fuses the elementwise integer passes into one multithreaded loop, same results
    import numexpr
except ImportError:
    numexpr = None

FUSE_ABOVE = 1 << 14  # elements; below this NumPy's own loops are as fast

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------- scalar reference (the specification)

def wrap_int32_ref(x: int) -> int:
    """Two's-complement wrap to int32, as a C int32 overflow does on every target we care about."""
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def _c_div(a: int, b: int) -> int:
    """C integer division: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def saturating_rounding_doubling_high_mul_ref(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return wrap_int32_ref(_c_div(ab + nudge, 1 << 31))


def rounding_divide_by_pot_ref(x: int, exponent: int) -> int:
    assert 0 <= exponent <= 31
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def saturating_rounding_multiply_by_pot_ref(x: int, exponent: int) -> int:
    """gemmlowp SaturatingRoundingMultiplyByPOT on int32: saturating left shift, or rounding right shift."""
    if exponent <= 0:
        return rounding_divide_by_pot_ref(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    if x > threshold:
        return INT32_MAX
    if x < -threshold:
        return INT32_MIN
    return wrap_int32_ref(x << exponent)


def quantize_multiplier(real_multiplier: float, rounding="double") -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31).

    Rounds half away from zero (C's round), not to even (Python's round). Runs once at Prepare time;
    it is the only place a float meets the integer path.
    """
    if real_multiplier == 0.0:
        return 0, 0
    if not math.isfinite(real_multiplier) or real_multiplier < 0:
        raise ValueError(f"multiplier must be finite and non-negative, got {real_multiplier}")
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(math.floor(q * (1 << 31) + 0.5))  # q > 0: half away from zero
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if rounding == "single" and shift > 30:
        return INT32_MAX, 30
    return q_fixed, shift


# ---------------------------------------------------------------- vectorized (what the kernels run)

def float32(value: float) -> float:
    """The value as a .tflite file stores a scale (float32), back as a Python float."""
    return float(np.float32(value))


def multiplier_from_scales(input_scale: float, weight_scale: float, output_scale: float) -> tuple[int, int]:
    """(multiplier, shift) exactly as TFLite's Prepare derives them from a .tflite file's float32 scales:
    QuantizeMultiplier(double(s_in) * double(s_w) / double(s_out)). The quantizer uses it too, so an
    exported model requantizes with the very integers the runtime uses."""
    return quantize_multiplier(float32(input_scale) * float32(weight_scale) / float32(output_scale))


def output_dtype(out_min: int, out_max: int):
    """The narrowest integer type holding a clamp range: what a kernel with that range outputs."""
    return next(t for t in (np.int8, np.int16, np.int32)
                if np.iinfo(t).min <= out_min and out_max <= np.iinfo(t).max)


def wrap_int32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).astype(np.int32).astype(np.int64)


def _trunc_shift_right_31(x: np.ndarray) -> np.ndarray:
    """x / 2^31 truncated toward zero, for int64 x: add 2^31 - 1 to negatives, then shift."""
    return (x + ((x >> 63) & np.int64((1 << 31) - 1))) >> 31


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """Elementwise SRDHM on int32 values held in int64 (no wrap needed: only MIN*MIN leaves int32)."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    nudge = np.int64(1 << 30) + ((ab >> 63) & np.int64(1 - (1 << 31)))   # 2^30, or 1 - 2^30 if ab < 0
    out = _trunc_shift_right_31(ab + nudge)
    both_min = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(both_min, np.int64(INT32_MAX), out) if both_min.any() else out


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    x = np.asarray(x, np.int64)
    if exponent <= 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    out = wrap_int32(x << exponent)
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, out))


def multiply_by_quantized_multiplier(x, multiplier, shift, rounding="double") -> np.ndarray:
    """Elementwise TFLite MultiplyByQuantizedMultiplier; multiplier/shift broadcast (per-channel)."""
    x = np.asarray(x, np.int64)
    multiplier, shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    if rounding == "single":
        total = 31 - shift
        return wrap_int32((x * multiplier + (np.int64(1) << (total - 1))) >> total)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    if not left.any() and x.size and x.min() >= 0 and multiplier.min() >= 0:
        return _multiply_non_negative(x, multiplier, right)
    if left.any():
        x = wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def _multiply_non_negative(x, multiplier, right):
    """The same result for x >= 0, multiplier >= 0 and no left shift (ReLU outputs, L2 norms):
    SRDHM's product is non-negative, so its nudge is 2^30 and its division a plain shift, and
    RoundingDivideByPOT of a non-negative value is (v + 2^(r-1)) >> r."""
    half = np.where(right > 0, np.int64(1) << np.maximum(right - 1, 0), 0)
    if numexpr is not None and x.size >= FUSE_ABOVE:
        return numexpr.evaluate("(((x * m + 1073741824) >> 31) + h) >> r",
                                local_dict={"x": x, "m": multiplier, "h": half, "r": right})
    v = (x * multiplier + np.int64(1 << 30)) >> 31
    return (v + half) >> right


def multiply_by_quantized_multiplier_int64(x, multiplier, shift) -> np.ndarray:
    """Elementwise 16x8 variant (int64 accumulator, reduced 16-bit multiplier)."""
    x = np.asarray(x, np.int64)
    multiplier, shift = np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - shift
    return wrap_int32((x * reduced + (np.int64(1) << (total - 1))) >> total)
