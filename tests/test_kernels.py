"""Reference and fast kernels agree bit for bit, on random cases and at the worst-case bounds."""
import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime import fully_connected as fc
from edgeff.runtime.goodness import goodness
from edgeff.runtime.l2_normalization import (
    inv_sqrt_quantized_multiplier,
    inv_sqrt_quantized_multiplier_ref,
    l2_normalization,
)
from edgeff.runtime.reference_kernels import ReferenceKernels
from edgeff.runtime.requantize import (
    INT32_MAX,
)
from tests.reference_math import (
    fully_connected,
    fully_connected_16x8,
    l2_normalization_ref,
    multiply_by_quantized_multiplier_int64_ref,
    multiply_by_quantized_multiplier_ref,
)


def test_inv_sqrt_multiplier_vectorized_equals_reference_everywhere_it_matters():
    rng = np.random.default_rng(0)
    accs = np.concatenate([np.arange(0, 70_000), rng.integers(0, INT32_MAX, 30_000, endpoint=True),
                           (1 << np.arange(31)) - 1, 1 << np.arange(31), (1 << np.arange(1, 31)) + 1,
                           [INT32_MAX]])
    mult, shift = inv_sqrt_quantized_multiplier(accs)
    ref = [inv_sqrt_quantized_multiplier_ref(int(a)) for a in accs]
    assert np.array_equal(mult, [m for m, _ in ref]) and np.array_equal(shift, [s for _, s in ref])


def test_inv_sqrt_multiplier_is_accurate():
    for acc in (2, 3, 10, 1000, 78400, 1 << 29, INT32_MAX):
        m, s = inv_sqrt_quantized_multiplier_ref(acc)
        assert abs(m * 2.0 ** (s - 31) * np.sqrt(acc) - 1) < 1e-5  # Q3.28 Newton-Raphson precision
    assert inv_sqrt_quantized_multiplier_ref(0) == (INT32_MAX, 0)   # TFLite treats 0 as 1
    assert inv_sqrt_quantized_multiplier_ref(1) == (INT32_MAX, 0)


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("zero_point", [-128, 0, 5])
def test_l2_normalization_vectorized_equals_reference(zero_point, rounding):
    rng = np.random.default_rng(1)
    rows = [rng.integers(-128, 128, (3000, 37)),          # random: 111,000 elements
            np.full((2, 37), -128), np.full((2, 37), 127),  # all equal: extremes of the norm
            np.where(np.arange(37) == 3, 127, zero_point)[None].repeat(2, 0)]  # one non-zero element
    q = np.concatenate(rows)
    got = l2_normalization(q, zero_point, rounding=rounding)
    assert np.array_equal(got, l2_normalization_ref(q, zero_point, rounding=rounding))


def test_l2_normalization_is_a_unit_vector_at_scale_one_128th():
    rng = np.random.default_rng(2)
    q = rng.integers(-128, 128, (100, 500))
    n = l2_normalization(q, -128)
    x = q + 128.0
    want = x / np.linalg.norm(x, axis=1, keepdims=True) * 128
    assert np.abs(n - np.clip(want, -128, 127)).max() <= 1
    one_hot = np.where(np.arange(10) == 0, 127, -128)[None]
    assert l2_normalization(one_hot, -128)[0, 0] == 127  # 1.0 saturates to 127/128, as in TFLite


def test_l2_normalization_matches_tflite_formula_elementwise():
    q = np.array([[3, -7, 12, 0, 100]])
    acc = int(sum(int(v) ** 2 for v in q[0]))
    m, s = inv_sqrt_quantized_multiplier_ref(acc)
    for rounding in ("double", "single"):
        expected = [max(-128, min(127, multiply_by_quantized_multiplier_ref(int(v), m, s + 7, rounding))) for v in q[0]]
        assert l2_normalization(q, 0, rounding=rounding)[0].tolist() == expected


def test_accumulate_fast_equals_reference_on_random_and_worst_case():
    rng = np.random.default_rng(3)
    for k, zp in ((784, 0), (1024, 0), (500, -128), (33, 7)):
        x = rng.integers(-128, 128, (64, k))
        w = rng.integers(-127, 128, (40, k)).astype(np.int8)
        assert np.array_equal(fc.accumulate(x, w, zp), fc.accumulate_ref(x, w, zp))
    # worst case for float32: K = 1024, every product +-128*128 = 2^14: partial sums reach 2^24 exactly
    x = np.full((4, 1024), -128)
    w = np.full((3, 1024), -128, np.int8)
    assert fc._bound(x, w, 0) == 1 << 24
    assert np.all(fc.accumulate(x, w, 0) == 1 << 24)
    # one step past it the fast path must leave float32 and still be exact
    x2 = np.full((2, 1025), -128)
    w2 = np.full((2, 1025), -128, np.int8)
    assert np.all(fc.accumulate(x2, w2, 0) == 1025 << 14)
    # zero-point-shifted inputs (values up to 255) with alternating signs: exact through float64
    x3 = np.tile([127, -128], (3, 2048))
    w3 = np.tile([127, -127], (2, 2048)).astype(np.int8)
    assert np.array_equal(fc.accumulate(x3, w3, -128), fc.accumulate_ref(x3, w3, -128))


def test_fully_connected_equals_a_scalar_loop():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (5, 20))
    w = rng.integers(-127, 128, (6, 20)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 6).astype(np.int32)
    mult = rng.integers(1 << 30, INT32_MAX, 6)
    shift = rng.integers(-12, -6, 6)
    got = fully_connected(x, w, bias, -128, mult, shift, -128, -128, 127)
    for n in range(5):
        for c in range(6):
            acc = sum(int(w[c, k]) * (int(x[n, k]) + 128) for k in range(20)) + int(bias[c])
            y = multiply_by_quantized_multiplier_ref(acc, int(mult[c]), int(shift[c])) - 128
            assert got[n, c] == min(127, max(-128, y))


def test_fully_connected_16x8():
    rng = np.random.default_rng(5)
    x = rng.integers(-32768, 32768, (8, 300))
    w = rng.integers(-127, 128, (10, 300)).astype(np.int8)
    bias = rng.integers(-(1 << 40), 1 << 40, 10)
    mult = rng.integers(1 << 30, INT32_MAX, 10)
    shift = rng.integers(-20, -10, 10)
    got = fully_connected_16x8(x, w, bias, mult, shift)
    acc = fc.accumulate_ref(x, w, 0) + bias
    want = [[max(-32768, min(32767, multiply_by_quantized_multiplier_int64_ref(int(a), int(m), int(s))))
             for a, m, s in zip(row, mult, shift, strict=True)] for row in acc]
    assert np.array_equal(got, want)


def test_goodness_is_exact_and_refuses_overflow():
    q = np.array([[-128, -127, 127], [0, 0, 0]])
    assert goodness(q, -128).tolist() == [0 + 1 + 255 ** 2, 3 * 128 ** 2]
    assert goodness(np.full((1, 33025), 127), -128)[0] == 33025 * 255 ** 2  # the largest that fits int32
    with pytest.raises(OverflowError):
        goodness(np.full((1, 33026), 127), -128)


def test_fused_relu_clamp_before_rescale_changes_nothing():
    """requantize_output clamps negative accumulators to 0 under a fused ReLU: same bits as without."""
    rng = np.random.default_rng(6)
    acc = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 50_000), rng.integers(-5000, 5000, 50_000)])
    bias = rng.integers(-1000, 1000, 100_000)
    mult = rng.integers(1 << 30, INT32_MAX, 100_000)
    shift = rng.integers(-31, 1, 100_000)
    got = fc.requantize_output(acc, bias, mult, shift, -128, -128, 127)
    raw = [multiply_by_quantized_multiplier_ref(((int(a) + int(b) + (1 << 31)) % (1 << 32)) - (1 << 31), int(m), int(s))
           for a, b, m, s in zip(acc, bias, mult, shift, strict=True)]
    assert np.array_equal(got, np.clip(np.array(raw) - 128, -128, 127))


def test_backend_is_chosen_once_by_name(monkeypatch):
    """The variable and the API pick the kernel set; a name that is none of them is refused, naming the choices."""
    monkeypatch.setenv("EDGEFF_KERNELS", "numpy")
    with pytest.raises(EdgeFFError, match="EDGEFF_KERNELS=numpy names no kernel backend: choose one of auto, c, "
                                          "reference"):
        backend.choice()
    with pytest.raises(EdgeFFError, match=r"backend.use\('fast'\) names no kernel backend"):
        backend.use("fast")
    monkeypatch.setenv("EDGEFF_KERNELS", "reference")
    assert backend.choice() == "reference"
    with backend.using("reference") as kernels:
        assert backend.active() == "reference" and type(kernels) is ReferenceKernels and backend.kernels() is kernels
    monkeypatch.setenv("EDGEFF_KERNELS", "auto")
    assert backend.choice() == "auto"   # using() gave the choice back to the variable
