"""The vectorized requantization equals the scalar C translation, on random cases and every edge."""
import math
from fractions import Fraction

import numpy as np
import pytest

from edgeff.runtime import requantize as rq
from edgeff.runtime.requantize import INT32_MAX, INT32_MIN
from tests.reference_math import multiply_by_quantized_multiplier_int64_ref, multiply_by_quantized_multiplier_ref

N_RANDOM = 100_000
EDGES = [INT32_MIN, INT32_MIN + 1, -(1 << 30), -65536, -257, -256, -255, -129, -128, -3, -2, -1, 0, 1, 2, 3,
         127, 128, 255, 256, 257, 65535, 1 << 30, INT32_MAX - 1, INT32_MAX]


def _random_int32(rng, n):
    # mix full-range values with small ones, where rounding ties live
    return np.concatenate([rng.integers(INT32_MIN, INT32_MAX, n // 2, endpoint=True),
                           rng.integers(-70000, 70000, n - n // 2)])


def test_c_division_semantics_are_used():
    # C truncates toward zero where Python floors: -2^30 + (1 - 2^30) over 2^31 is 0 in C, -1 in Python
    a, b = -1, 1 << 30
    assert rq.saturating_rounding_doubling_high_mul_ref(a, b) == 0
    assert rq.saturating_rounding_doubling_high_mul_ref(INT32_MIN, INT32_MIN) == INT32_MAX


def test_srdhm_vectorized_equals_reference():
    rng = np.random.default_rng(1)
    a, b = _random_int32(rng, N_RANDOM), _random_int32(rng, N_RANDOM)
    grid = np.array(EDGES, np.int64)
    a = np.concatenate([a, np.repeat(grid, len(grid))])
    b = np.concatenate([b, np.tile(grid, len(grid))])
    got = rq.saturating_rounding_doubling_high_mul(a, b)
    want = [rq.saturating_rounding_doubling_high_mul_ref(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    assert np.array_equal(got, want)


def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    x = np.array([5, -5, 6, -6, 7, -7, 4, -4, INT32_MIN, INT32_MAX])
    assert rq.rounding_divide_by_pot(x, 1).tolist() == [3, -3, 3, -3, 4, -4, 2, -2, -(1 << 30), 1 << 30]
    rng = np.random.default_rng(2)
    xs, es = _random_int32(rng, N_RANDOM), rng.integers(0, 32, N_RANDOM)
    got = rq.rounding_divide_by_pot(xs, es)
    want = [rq.rounding_divide_by_pot_ref(int(x), int(e)) for x, e in zip(xs, es, strict=True)]
    assert np.array_equal(got, want)
    # against exact rational arithmetic: round(x / 2^e), ties away from zero
    for x, e in zip(xs[:2000], es[:2000], strict=True):
        q = Fraction(int(x), 1 << int(e))
        exact = math.floor(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1)
        assert rq.rounding_divide_by_pot_ref(int(x), int(e)) == exact


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_multiply_by_quantized_multiplier_vectorized_equals_reference(rounding):
    rng = np.random.default_rng(3)
    x = _random_int32(rng, N_RANDOM)
    m = rng.integers(1 << 30, INT32_MAX, N_RANDOM, endpoint=True)
    lo = -31 if rounding == "double" else -30
    shift = rng.integers(lo, 8, N_RANDOM)
    if rounding == "single":  # TFLite DCHECKs the result fits int32: keep the left shifts small
        x = np.where(shift > 0, x >> 8, x)
    x = np.concatenate([x, np.array(EDGES), np.array(EDGES)])
    m = np.concatenate([m, np.full(len(EDGES), INT32_MAX), np.full(len(EDGES), 1 << 30)])
    lowest = -31 if rounding == "double" else -30
    shift = np.concatenate([shift, np.zeros(len(EDGES), np.int64), np.full(len(EDGES), lowest)])
    got = rq.multiply_by_quantized_multiplier(x, m, shift, rounding)
    want = [multiply_by_quantized_multiplier_ref(int(a), int(b), int(c), rounding)
            for a, b, c in zip(x, m, shift, strict=True)]
    assert np.array_equal(got, want)


def test_double_and_single_rounding_differ_rarely_and_by_one():
    rng = np.random.default_rng(4)
    x = rng.integers(-(1 << 24), 1 << 24, N_RANDOM)
    m = rng.integers(1 << 30, INT32_MAX, N_RANDOM)
    shift = rng.integers(-20, -5, N_RANDOM)
    d = rq.multiply_by_quantized_multiplier(x, m, shift, "double")
    s = rq.multiply_by_quantized_multiplier(x, m, shift, "single")
    diff = np.abs(d - s)
    assert diff.max() == 1 and 0 < (diff > 0).mean() < 0.05


def test_int64_variant_equals_reference():
    rng = np.random.default_rng(5)
    x = rng.integers(-(1 << 47), 1 << 47, N_RANDOM)
    m = rng.integers(1 << 30, INT32_MAX, N_RANDOM, endpoint=True)
    shift = rng.integers(-31, -14, N_RANDOM)
    got = rq.multiply_by_quantized_multiplier_int64(x, m, shift)
    want = [multiply_by_quantized_multiplier_int64_ref(int(a), int(b), int(c))
            for a, b, c in zip(x, m, shift, strict=True)]
    assert np.array_equal(got, want)
    assert multiply_by_quantized_multiplier_int64_ref(1 << 20, 0x7FFF0000, 0) == (1 << 20) * 0x7FFF >> 15


def test_quantize_multiplier():
    assert rq.quantize_multiplier(0.0) == (0, 0)
    assert rq.quantize_multiplier(0.5) == (1 << 30, 0)
    assert rq.quantize_multiplier(1.0) == (1 << 30, 1)
    # q * 2^31 = 2^31 - 0.5 rounds up to 2^31: the multiplier halves and the shift grows
    assert rq.quantize_multiplier((2 ** 31 - 0.5) / 2 ** 31) == (1 << 30, 1)
    assert rq.quantize_multiplier(1e-12) == (0, 0)   # below 2^-31 * 2^-31: flushed to zero
    rng = np.random.default_rng(6)
    for r in np.exp(rng.uniform(-20, 5, 5000)):
        m, s = rq.quantize_multiplier(float(r))
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (s - 31) - r) <= r * 2.0 ** -30
    with pytest.raises(ValueError):
        rq.quantize_multiplier(float("nan"))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_non_negative_fast_path_equals_reference(rounding, fused, monkeypatch):
    """Both the NumPy and the numexpr-fused non-negative paths give the reference's bits."""
    if not fused:
        monkeypatch.setattr(rq, "numexpr", None)
    elif rq.numexpr is None:
        pytest.skip("numexpr is not installed")
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.integers(0, INT32_MAX, N_RANDOM // 2, endpoint=True),
                        rng.integers(0, 70000, N_RANDOM // 2), [0, 1, INT32_MAX]])
    m = rng.integers(0, INT32_MAX, len(x), endpoint=True)
    shift = rng.integers(-31, 1, len(x))
    got = rq.multiply_by_quantized_multiplier(x, m, shift, rounding)
    want = [multiply_by_quantized_multiplier_ref(int(a), int(b), int(c), rounding)
            for a, b, c in zip(x, m, shift, strict=True)]
    assert np.array_equal(got, want)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_the_fused_relu_epilogue_equals_the_reference_for_any_multiplier_sign(rounding):
    """requantize_output's ReLU shortcut (clamp negative sums to 0 first) holds for non-negative multipliers
    only; a negative one must take the general path, as the C kernels do."""
    from edgeff.runtime.fully_connected import requantize_output
    rng = np.random.default_rng(7)
    acc = rng.integers(-(1 << 20), 1 << 20, (64, 6))
    multiplier = np.array([1 << 30, INT32_MAX, -(1 << 30), -INT32_MAX, 1 << 30, -(3 << 29)], np.int64)
    shift = np.array([-4, -8, -4, -8, 0, -6])
    got = requantize_output(acc, None, multiplier, shift, -128, -128, 127, rounding)
    want = np.array([[max(-128, min(127, multiply_by_quantized_multiplier_ref(int(a), int(m), int(s), rounding) - 128))
                      for a, m, s in zip(row, multiplier, shift, strict=True)] for row in acc])
    assert np.array_equal(got, want)
