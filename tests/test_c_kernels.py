"""The firmware's C kernels (built for this host) give the bits of the reference kernels and of the scalar
references: over 100,000+ random cases each and at the worst-case bounds, kernel by kernel, then for a
whole model's inference and training."""
import ctypes
import platform
import shutil
import subprocess

import numpy as np
import pytest

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.op_registry import KINDS
from edgeff.runtime import backend, c_kernels
from edgeff.runtime.class_goodness import check_scores_fit, class_goodness, group_values, map_class_goodness
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.int_training import IntTrainer, IntTrainingConfig, sigmoid_table
from edgeff.runtime.integer_hash import hash32
from edgeff.runtime.l2_normalization import inv_sqrt_quantized_multiplier_ref
from edgeff.runtime.layout import image_nhwc
from edgeff.runtime.master_weights import weights_from_masters
from edgeff.runtime.reference_kernels import ReferenceKernels
from edgeff.runtime.requantize import INT32_MAX, INT32_MIN
from firmware_bridge.emulator import PROTOCOL_SOURCES
from firmware_bridge.messages import MAX_LAYERS
from tests.reference_math import fully_connected, fully_connected_16x8, multiply_by_quantized_multiplier_ref
from tests.test_requantize import EDGES, N_RANDOM, _random_int32


def _c_builds() -> bool:
    try:
        c_kernels.library()
    except EdgeFFError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _c_builds(), reason="no C compiler: the C kernels cannot build")
REFERENCE = ReferenceKernels()
EF_CWC_MAXPOOL2D = KINDS.index("maxpool2d")   # c_constants.py numbers ef_cwc_layer_kind by the place in KINDS


@pytest.fixture
def lib():
    return c_kernels.library()


def both_backends(fn):
    """fn(kernels) with the C kernel set and with the reference set, each chosen through the backend API."""
    with backend.using("c") as kernels:
        assert backend.active() == "c"
        with_c = fn(kernels)
    with backend.using("reference") as kernels:
        assert backend.active() == "reference"
        return with_c, fn(kernels)


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_multiply_by_quantized_multiplier_equals_reference(lib, rounding):
    rng = np.random.default_rng(10)
    x = _random_int32(rng, N_RANDOM)
    m = rng.integers(1 << 30, INT32_MAX, N_RANDOM, endpoint=True)
    shift = rng.integers(-31 if rounding == "double" else -30, 8, N_RANDOM)
    if rounding == "single":  # TFLite DCHECKs that a single-rounding result fits int32
        x = np.where(shift > 0, x >> 8, x)
    grid = np.array(EDGES)
    x = np.concatenate([x, np.repeat(grid, 4)])
    m = np.concatenate([m, np.tile([INT32_MAX, 1 << 30, INT32_MAX, 1 << 30], len(grid))])
    shift = np.concatenate([shift, np.tile([0, 0, -30, -30], len(grid))])
    got = np.empty(len(x), np.int32)
    lib.ef_multiply_by_quantized_multiplier_n(x.astype(np.int32), m.astype(np.int32), shift.astype(np.int32),
                                              len(x), c_kernels.ROUNDING[rounding], got)
    want = [multiply_by_quantized_multiplier_ref(int(a), int(b), int(c), rounding)
            for a, b, c in zip(x, m, shift, strict=True)]
    assert np.array_equal(got, want)


def _requant_case(rng, rows, units, relu, positive_shifts):
    acc = np.concatenate([_random_int32(rng, rows * units - 4 * units),
                          np.repeat([INT32_MAX, INT32_MIN, 0, -1], units)]).reshape(rows, units)
    bias = rng.integers(-(1 << 20), 1 << 20, units)
    bias[:2] = [INT32_MAX, INT32_MIN]                      # the int32 bias add wraps
    mult = rng.integers(1 << 30, INT32_MAX, units, endpoint=True)
    mult[2:4] = [INT32_MAX, 1 << 30]
    shift = rng.integers(-31, 4 if positive_shifts else 1, units)
    shift[4:6] = [0, -31]
    zp = int(rng.integers(-128, 100))
    act_min = max(-128, zp) if relu else -128
    return acc.astype(np.int32), bias.astype(np.int32), mult, shift, zp, act_min


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("relu, positive_shifts", [(True, False), (False, False), (True, True)])
def test_requantize_equals_numpy(rounding, relu, positive_shifts):
    """The vectorized ReLU form and the general form, against the NumPy kernel: 3 x 40,600 outputs (203
    units: eight-lane blocks and a tail)."""
    rng = np.random.default_rng(11)
    for _ in range(3):
        acc, bias, mult, shift, zp, act_min = _requant_case(rng, 200, 203, relu, positive_shifts)
        if rounding == "single":
            shift = np.minimum(shift, 0)
            acc = np.where(shift > 0, acc >> 8, acc)
        c, numpy = both_backends(lambda k: k.requantize_output(acc, bias, mult, shift, zp, act_min, 127, rounding,
                                                               False))
        assert c.dtype == numpy.dtype == np.int8 and np.array_equal(c, numpy)


def test_requantize_16x8_equals_numpy():
    rng = np.random.default_rng(12)
    acc = rng.integers(-(1 << 46), 1 << 46, (300, 350))
    bias = rng.integers(-(1 << 40), 1 << 40, 350)
    mult = rng.integers(1 << 30, INT32_MAX, 350, endpoint=True)
    shift = rng.integers(-31, 15, 350)
    for zp, act_min in ((-128, -128), (-20, -20)):
        c, numpy = both_backends(lambda k: k.requantize_output(acc, bias, mult, shift, zp, act_min, 127, "double",
                                                               True))
        assert np.array_equal(c, numpy)


def test_inv_sqrt_equals_reference(lib):
    """One at a time (the board) and eight at a time (the host's AVX2 lanes, which the normalization takes
    for blocks of rows), on 100,000 accumulators and every power-of-two edge; wrapped negative sums too."""
    rng = np.random.default_rng(13)
    accs = np.concatenate([np.arange(0, 70_000), rng.integers(0, INT32_MAX, 30_000, endpoint=True),
                           (1 << np.arange(31)) - 1, 1 << np.arange(31), (1 << np.arange(1, 31)) + 1, [INT32_MAX],
                           [-1, -2, INT32_MIN, INT32_MIN + 1], rng.permutation(1 << np.arange(20, 31)) - 3])
    want = np.array([inv_sqrt_quantized_multiplier_ref(int(a)) for a in accs])
    m, s = ctypes.c_int32(), ctypes.c_int32()
    for a, w in zip(accs, want, strict=True):
        lib.ef_inv_sqrt_quantized_multiplier(int(a), ctypes.byref(m), ctypes.byref(s))
        assert (m.value, s.value) == tuple(w), a
    for start in (0, 3):   # eight-lane blocks at two alignments, and a scalar tail
        got_m, got_s = np.empty(len(accs) - start, np.int32), np.empty(len(accs) - start, np.int32)
        lib.ef_inv_sqrt_quantized_multiplier_n(accs[start:].astype(np.int32), len(accs) - start, got_m, got_s)
        assert np.array_equal(np.stack([got_m, got_s], axis=1), want[start:])


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("bits", [7, 15])
@pytest.mark.parametrize("zero_point", [-128, 0, 5])
def test_l2_normalization_equals_numpy(bits, zero_point, rounding):
    """Rows whose centred values all lie in [0, 255] take the vectorized form; others the general one."""
    rng = np.random.default_rng(14)
    limit = 1 << bits
    relu_rows = rng.integers(zero_point, 128, (1500, 67))
    q = np.concatenate([rng.integers(-128, 128, (1500, 67)), relu_rows,
                        np.full((2, 67), -128), np.full((2, 67), 127), np.full((2, 67), zero_point),
                        np.where(np.arange(67) == 3, 127, zero_point)[None].repeat(2, 0),
                        np.where(np.arange(67) == 3, zero_point + 1, zero_point)[None]]).astype(np.int8)
    c, numpy = both_backends(lambda k: k.l2_normalization(q, zero_point, bits, -limit, limit - 1, rounding))
    assert c.dtype == numpy.dtype and np.array_equal(c, numpy)


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("units, relu, clamp_above_zp", [(64, True, 0), (67, True, 3), (6, True, 0), (67, False, 0)])
def test_label_rows_equal_numpy(units, relu, clamp_above_zp, rounding):
    """The multi-pass first layer (eight-lane fused form and its scalar tail) against the NumPy epilogue and
    goodness of shared + label pixel x label column, for 300 images x 10 labels."""
    lib, rng = c_kernels.library(), np.random.default_rng(units)
    shared = rng.integers(-(1 << 22), 1 << 22, (300, units)).astype(np.int32)
    label_pixel = rng.integers(-128, 128, 300).astype(np.int8)
    columns = rng.integers(-127, 128, (10, units)).astype(np.int32)
    _, bias, mult, shift, zp, act_min = _requant_case(rng, 5, units, relu, positive_shifts=not relu)
    shift = np.minimum(shift, 0) if rounding == "single" else shift
    act_min += clamp_above_zp
    out, g = c_kernels.label_rows(shared, label_pixel, columns, bias, mult, shift, zp, act_min, rounding)
    acc = shared[:, None, :] + label_pixel.astype(np.int32)[:, None, None] * columns[None]
    want = REFERENCE.requantize_output(acc.reshape(-1, units), bias, mult, shift, zp, act_min, 127, rounding, False)
    want_g = REFERENCE.goodness(want, zp)
    assert lib is not None and np.array_equal(out, want) and np.array_equal(g, want_g)
    want_set = REFERENCE.label_rows(shared, label_pixel, columns, bias, mult, shift, zp, act_min, 7, rounding)
    assert np.array_equal(out, want_set[0]) and np.array_equal(g, want_set[1])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="compares the AVX2 build with a baseline x86-64 build")
def test_avx2_paths_equal_the_boards_scalar_loops(tmp_path, monkeypatch):
    """The host's AVX2 loops against the same sources built for baseline x86-64 (no AVX2: the scalar loops
    the board runs), kernel by kernel on random rows, both roundings."""
    monkeypatch.setenv("EDGEFF_CACHE_DIR", str(tmp_path))
    flags = [f if f != "-march=native" else "-march=x86-64" for f in c_kernels.FLAGS]
    scalar, avx2 = c_kernels.bind(ctypes.CDLL(str(c_kernels.build(flags)))), c_kernels.library()
    rng = np.random.default_rng(21)

    def same(kernel, inputs, outputs, *args):
        got = [[np.zeros_like(o) for o in outputs] for _ in range(2)]
        for lib, outs in zip((scalar, avx2), got, strict=True):
            getattr(lib, kernel)(*inputs, *args, *outs)
        assert all(np.array_equal(a, b) for a, b in zip(*got, strict=True)), kernel

    accs = np.concatenate([rng.integers(0, INT32_MAX, 5000), np.arange(-3, 4), [INT32_MAX]]).astype(np.int32)
    same("ef_inv_sqrt_quantized_multiplier_n", [accs, len(accs)], [np.empty(len(accs), np.int32)] * 2)
    for rounding in (0, 1):
        for depth, zp in ((67, -128), (784, -128), (64, 5)):
            q = np.concatenate([rng.integers(zp, 128, (600, depth)), rng.integers(-128, 128, (200, depth))])
            q = q.astype(np.int8)
            same("ef_l2_normalize_s8", [q, len(q), depth, zp, rounding], [np.empty(q.shape, np.int8)])
            same("ef_l2_normalize_s16", [q, len(q), depth, zp, rounding], [np.empty(q.shape, np.int16)])
        acc, bias, mult, shift, zp, act_min = _requant_case(rng, 300, 203, relu=True, positive_shifts=False)
        mult = mult.astype(np.int32)
        shift = shift.astype(np.int32)
        same("ef_requantize_s8", [acc, 300, 203, bias, mult, shift, zp, act_min, 127, rounding],
             [np.empty((300, 203), np.int8)])
        shared = rng.integers(-(1 << 22), 1 << 22, (50, 203)).astype(np.int32)
        pixel = rng.integers(-128, 128, 50).astype(np.int8)
        columns = rng.integers(-127, 128, (10, 203)).astype(np.int32)
        same("ef_ff_label_rows_s8", [shared, pixel, 50, columns, 10, 203, bias, mult, shift, zp, act_min, rounding],
             [np.empty((50, 10 * 203), np.int8), np.empty((50, 10), np.int32)])


def _shipped_conv_group_values() -> list:
    """The class-group sizes (10 classes: the shipped configs train on MNIST) of every layer of every shipped
    conv model (edgeff/models/ff-conv-*.toml), those the C goodness kernel takes (<= C_MAX_GOODNESS_UNITS)."""
    from edgeff.package_data import MODELS_DIR
    from edgeff.train.config import description_of, load_config

    sizes = {group_values(layer.out_shape, 10) for path in sorted(MODELS_DIR.glob("ff-conv-*.toml"))
             for layer in description_of(load_config(path)).layers}
    assert sizes, MODELS_DIR   # no shipped conv model found: the sweep would silently lose its model widths
    return sorted(s for s in sizes if s <= c_kernels.C_MAX_GOODNESS_UNITS)


def _goodness_widths() -> list:
    """Every width up to 64 (the short rows and the loop's start), a geometric sweep to the largest group
    C_MAX_GOODNESS_UNITS, the shipped conv models' class-group sizes, and the largest group itself."""
    sweep = np.unique(np.geomspace(65, c_kernels.C_MAX_GOODNESS_UNITS, 60).astype(int))
    conv = _shipped_conv_group_values()
    print(f"shipped conv models' class-group sizes: {conv[0]} ... {conv[-1]} ({len(conv)} sizes)")
    return sorted({*range(1, 65), *sweep.tolist(), *conv, c_kernels.C_MAX_GOODNESS_UNITS})


def test_goodness_equals_numpy():
    """ef_goodness (called directly, so no case falls back to NumPy) against the NumPy goodness on 240,458
    random rows over 140 widths from 1 to C_MAX_GOODNESS_UNITS (both printed), each width under a random zero point and
    under one of -128, 0, 127."""
    rng, results, widths = np.random.default_rng(15), 0, _goodness_widths()
    for i, width in enumerate(widths):
        rows = max(8, min(1000, 2_000_000 // width))
        for zp in (int(rng.integers(-128, 128)), (-128, 0, 127)[i % 3]):
            a = rng.integers(-128, 128, (rows, width)).astype(np.int8)
            assert np.array_equal(c_kernels.goodness(a, zp), REFERENCE.goodness(a, zp)), (width, zp)
            results += rows
    print(f"{results} random rows over {len(widths)} widths")
    assert results >= 100_000


def test_goodness_at_the_int32_bound():
    """The largest group the C kernel takes (C_MAX_GOODNESS_UNITS values), every value at the int8 end
    farthest from the zero point, for each of the 256 zero points: the sum reaches 33,025 * 255^2 =
    2,147,450,625 at zero points -128 and 127, just under INT32_MAX, and must be exact (no wrap)."""
    width, zps = c_kernels.C_MAX_GOODNESS_UNITS, np.arange(-128, 128)
    assert (width + 1) * 255 ** 2 > INT32_MAX >= width * 255 ** 2   # the bound is the largest that fits
    far = np.where(zps < 0, 127, -128)                                # the end farthest from each zero point
    got = np.concatenate([c_kernels.goodness(np.full((1, width), end, np.int8), int(zp))
                          for zp, end in zip(zps, far, strict=True)])
    want = width * (far.astype(np.int64) - zps) ** 2
    assert np.array_equal(got, want) and got.max() == width * 255 ** 2


def test_hash32_equals_numpy(lib):
    idx = np.arange(0, 1 << 32, 40_009, dtype=np.uint64)
    for seed, step in ((0, 0), (7, 123456), (0xFFFFFFFF, (1 << 32) - 1)):
        want = hash32(seed, step, idx)
        assert all(lib.ef_hash32(seed, step, int(i)) == int(w) for i, w in zip(idx, want, strict=True))


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("lr_shift", [4, 14, 32, 40])
def test_master_update_equals_numpy(rounding, lr_shift):
    """The C update against the reference update, clamping at both int16 ends included."""
    rng = np.random.default_rng(16)
    rows, depth = 120, 1500   # 105,000 updated weights
    master = rng.integers(-32768, 32768, (rows, depth)).astype(np.int16)
    master[0, :3] = [32767, -32768, 0]
    active = np.sort(rng.choice(rows, 70, replace=False))
    grad = rng.integers(-(1 << 45), 1 << 45, (70, depth))
    grad[0, :3] = [1 << 45, -(1 << 45), 0]

    def update(kernels):
        m, w = master.copy(), np.zeros((rows, depth), np.int8)
        kernels.update_weight_rows(m, w, active, grad, lr_shift, rounding == "stochastic", 9, 77 * 64)
        return m, w

    (cm, cw), (nm, nw) = both_backends(update)
    assert np.array_equal(cm, nm) and np.array_equal(cw, nw)
    assert not np.array_equal(cm, master)


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("lr_shift", [1, 12, 23, 24, 40])
def test_board_row_update_equals_the_dense_update(lib, rounding, lr_shift):
    """ef_update_weight_row_pair (the board's update of one unit from two passes: listed inputs only, zero
    gradients skipped with their hash draws, the stochastic step in int32 up to shift 23) against the reference
    update of whole rows from the int64 gradient, the largest gradients and both int16 ends included."""
    rng = np.random.default_rng(lr_shift)
    units, depth, limit, seed, stream = 200, 256, 32768 * 255, 7, 5 * 64 + 2
    rows = rng.integers(-limit, limit + 1, (units, 2))
    rows[0], rows[1], rows[2] = (-limit, -limit), (limit, limit), (0, 3)
    n = rng.integers(-128, 128, (units, 2, depth)).astype(np.int8)
    n[rng.random(n.shape) < 0.5] = 0
    n[:, :, rng.random(depth) < 0.3] = 0                           # inputs zero in both passes
    n[:2, :, :8] = -128                                            # |grad| = 2 * 2^15 * 255 * 128: the bound
    master = rng.integers(-32768, 32768, (units, depth)).astype(np.int16)
    master[:2, 8:12] = [32767, -32768, 32767, -32768]
    weight = weights_from_masters(master)
    grad = (rows[:, :, None] * n.astype(np.int64)).sum(axis=1)
    m_ref, w_ref = master.copy(), weight.copy()
    REFERENCE.update_weight_rows(m_ref, w_ref, np.arange(units), grad, lr_shift, rounding == "stochastic", seed, stream)
    key = (seed * 0x9E3779B1 + stream * 0x85EBCA77) & 0xFFFFFFFF  # ef_hash_key
    lib.ef_update_weight_row_pair.argtypes = [np.ctypeslib.ndpointer(np.int16), np.ctypeslib.ndpointer(np.int8),
                                              ctypes.c_int32, ctypes.c_int32, np.ctypeslib.ndpointer(np.int8),
                                              np.ctypeslib.ndpointer(np.int8), np.ctypeslib.ndpointer(np.uint8),
                                              ctypes.c_int32, ctypes.c_int32, ctypes.c_int, ctypes.c_uint32,
                                              ctypes.c_uint32]
    for j in range(units):
        m, w = master[j].copy(), weight[j].copy()
        inputs = np.flatnonzero(n[j, 0] | n[j, 1]).astype(np.uint8)
        lib.ef_update_weight_row_pair(m, w, int(rows[j, 0]), int(rows[j, 1]), n[j, 0].copy(), n[j, 1].copy(),
                                      inputs, len(inputs), lr_shift, int(rounding == "stochastic"), key, j * depth)
        master[j], weight[j] = m, w
    assert np.array_equal(master, m_ref) and np.array_equal(weight, w_ref)
    assert np.abs(grad).max() == 2 * limit * 128


FC_SHAPES = [(500, 64), (1, 1), (256, 4), (257, 65), (784, 130), (64, 3)]   # (depth, units)


def _fc_case(rng, rows, depth, units):
    """Random int8 inputs and weights, the first row and unit at the extremes (largest |accumulator|)."""
    x = rng.integers(-128, 128, (rows, depth)).astype(np.int8)
    w = rng.integers(-127, 128, (units, depth)).astype(np.int8)
    x[0], x[1], w[0] = -128, 127, -127
    bias = rng.integers(-(1 << 20), 1 << 20, units).astype(np.int32)
    mult = rng.integers(1 << 30, INT32_MAX, units).astype(np.int32)
    shift = rng.integers(-20, -5, units).astype(np.int32)
    return x, w, bias, mult, shift


@pytest.mark.parametrize("depth, units", FC_SHAPES)
def test_fully_connected_for_the_board_equals_numpy(lib, depth, units):
    """The board's whole FC (dot products in C, blocked by 4 units, 64 accumulators and 256 inputs: the
    shapes cross every block edge) against accumulate + requantize; 400 rows per shape."""
    rng = np.random.default_rng(depth * 1000 + units)
    x, w, bias, mult, shift = _fc_case(rng, 400, depth, units)
    for zp, act_min in ((-128, -128), (-30, -30)):
        got = np.empty((400, units), np.int8)
        lib.ef_fully_connected_s8(x, 400, depth, w, units, bias, mult, shift, zp, act_min, 127, 0, got)
        assert np.array_equal(got, fully_connected(x, w, bias, 0, mult, shift, zp, act_min, 127))
    x16 = rng.integers(-32768, 32768, (400, depth)).astype(np.int16)
    bias16 = rng.integers(-(1 << 40), 1 << 40, units)
    got = np.empty((400, units), np.int8)
    lib.ef_fully_connected_s16(x16, 400, depth, w, units, bias16, mult, shift - 8, -128, -128, 127, got)
    assert np.array_equal(got, fully_connected_16x8(x16, w, bias16, mult, shift - 8, -128, -128, 127))


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("depth, units", FC_SHAPES)
def test_fused_layer_equals_numpy(depth, units, rounding):
    """ef_ff_layer_s8 (normalize, FC, goodness per row) against the three NumPy kernels."""
    rng = np.random.default_rng(depth + units)
    a, w, bias, mult, shift = _fc_case(rng, 400, depth, units)
    for zp, act_min in ((-128, -128), (3, -128)):
        n, out, g = c_kernels.ff_layer(a, zp, w, bias, mult, shift, -128, act_min, rounding)
        n_ref, out_ref, g_ref = REFERENCE.ff_layer(a, zp, w, bias, mult, shift, -128, act_min, 7, rounding)
        assert np.array_equal(n, n_ref) and np.array_equal(out, out_ref) and np.array_equal(g, g_ref)


def test_model_inference_and_training_equal_numpy(int_model):
    """The whole integer model, scores and trained weights, under both backends."""
    _, int_path, data_dir = int_model
    data = load_dataset(data_dir, val_size=100)
    images, labels = data.train.images[:96], data.train.labels[:96]

    def run(_kernels):
        model = IntFFModel.from_file(int_path)
        scores, logits = model.label_scores(images), model.head_logits(images)
        trainer = IntTrainer(model, IntTrainingConfig(lr_shift=14))
        for s in range(0, 96, 8):
            trainer.step(images[s:s + 8], labels[s:s + 8])
        return [scores, logits] + trainer.weight_masters + [l.weight for l in model.layers]

    c, numpy = both_backends(run)
    assert all(np.array_equal(a, b) for a, b in zip(c, numpy, strict=True))


def test_build_failure_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(c_kernels, "FLAGS", [*c_kernels.FLAGS, "-no-such-flag"])
    monkeypatch.setenv("EDGEFF_CACHE_DIR", str(tmp_path))
    c_kernels._load.cache_clear()
    try:
        with pytest.raises(EdgeFFError, match="EDGEFF_KERNELS=c but the C kernels are unavailable: building the C "
                                              "kernels failed"), backend.using("c"):
            pass
        with pytest.warns(UserWarning, match="reference NumPy kernels"), backend.using("auto"):
            assert backend.active() == "reference"
        assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    finally:
        c_kernels._load.cache_clear()


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="gcc-arm-none-eabi is not installed")
def test_library_builds_for_cortex_m4_without_float_or_runtime_calls(tmp_path):
    """The board build (kernels and protocol): C99 for a Cortex-M4 with a soft-float ABI. Any float (or 64-bit
    division) would pull in a libgcc helper such as __aeabi_fadd; every undefined symbol must be one of ours
    or memset/memcpy, which compilers call for zeroed arrays and the board support provides."""
    sources = sorted(c_kernels.source_dir().glob("*.c")) + PROTOCOL_SOURCES
    objects = []
    for src in sources:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-O2",
                        "-Wall", "-Wextra", "-Werror", f"-I{c_kernels.source_dir()}", "-c", str(src), "-o", str(obj)],
                       check=True)
        objects.append(str(obj))
    nm = subprocess.run(["arm-none-eabi-nm", "--undefined-only", *objects], capture_output=True, text=True, check=True)
    undefined = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip().startswith("U ")}
    assert undefined and all(name.startswith("ef_") or name in ("memset", "memcpy") for name in undefined), undefined


class _Layer(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("d_in", ctypes.c_int32), ("d_out", ctypes.c_int32),
                ("weight", ctypes.c_void_p), ("weight_master", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("bias_master", ctypes.c_void_p),
                ("multiplier", ctypes.c_void_p), ("shift", ctypes.c_void_p),
                ("out_zero_point", ctypes.c_int32), ("act_min", ctypes.c_int32),
                ("goodness_multiplier", ctypes.c_int32), ("goodness_shift", ctypes.c_int32),
                ("normalized", ctypes.c_void_p), ("output", ctypes.c_void_p)]


class _Trainer(ctypes.Structure):
    _fields_ = [("n_layers", ctypes.c_int32), ("n_classes", ctypes.c_int32), ("n_inputs", ctypes.c_int32),
                ("layers", _Layer * 8), ("gamma_q", ctypes.c_int32 * 8), ("coupling_q", ctypes.c_int32),
                ("adaptive", ctypes.c_int32), ("label_q", ctypes.c_int32), ("neutral_label_q", ctypes.c_int32),
                ("rounding", ctypes.c_int32),
                ("sigmoid_lut", ctypes.c_void_p), ("softplus", ctypes.c_int32),
                ("arg_multiplier", ctypes.c_int32), ("arg_shift", ctypes.c_int32), ("theta_q", ctypes.c_int32),
                ("lr_shift", ctypes.c_int32), ("gamma_shift", ctypes.c_int32), ("stochastic", ctypes.c_int32),
                ("seed", ctypes.c_uint32), ("step", ctypes.c_uint32), ("input", ctypes.c_void_p)]


def _c_trainer(trainer: IntTrainer):
    """The C trainer over copies of the Python trainer's state; returns (struct, arrays it points into)."""
    model, config, k = trainer.model, trainer.config, trainer.constants
    keep = {}

    def ptr(name, array):
        keep[name] = np.ascontiguousarray(array)
        return keep[name].ctypes.data

    t = _Trainer(n_layers=len(model.layers), n_classes=model.n_classes, n_inputs=model.arch["sizes"][0],
                 coupling_q=trainer.coupling_q, adaptive=int(trainer.collab_mode == "adaptive"),
                 label_q=model.quant["label_q"], neutral_label_q=model.quant["neutral_label_q"],
                 rounding=c_kernels.ROUNDING[model.rounding],
                 sigmoid_lut=ptr("lut", trainer.lut), softplus=int(config.loss == "softplus"),
                 arg_multiplier=k.arg_multiplier, arg_shift=k.arg_shift, theta_q=k.theta_q,
                 lr_shift=config.lr_shift, gamma_shift=config.gamma_shift,
                 stochastic=int(config.rounding == "stochastic"), seed=config.seed & 0xFFFFFFFF,
                 step=trainer.step_count, input=ptr("input", np.zeros(2 * model.arch["sizes"][0], np.int8)))
    for i, layer in enumerate(model.layers):
        t.gamma_q[i] = int(trainer.gamma_q[i])
        t.layers[i] = _Layer(
            kind=KINDS.index("dense"), d_in=layer.weight.shape[1], d_out=layer.weight.shape[0],
            weight=ptr(f"w{i}", layer.weight.copy()),
            weight_master=ptr(f"m{i}", trainer.weight_masters[i].copy()), bias=ptr(f"b{i}", layer.bias.copy()),
            bias_master=ptr(f"bm{i}", trainer.bias_masters[i].astype(np.int32)),
            multiplier=ptr(f"mult{i}", layer.multiplier), shift=ptr(f"shift{i}", layer.shift),
            out_zero_point=layer.out_zero_point, act_min=layer.act_min,
            goodness_multiplier=layer.goodness_multiplier, goodness_shift=layer.goodness_shift,
            normalized=ptr(f"n{i}", np.zeros(2 * layer.weight.shape[1], np.int8)),
            output=ptr(f"o{i}", np.zeros(2 * layer.weight.shape[0], np.int8)))
    return t, keep


def test_the_compiled_sigmoid_table_is_the_runtimes(lib):
    """The board's table (lib/sigmoid_table.c, written once from sigmoid_table()) has the same 256 entries."""
    table = np.ctypeslib.as_array((ctypes.c_int16 * 256).in_dll(lib, "ef_sigmoid_q15"))
    assert np.array_equal(table, sigmoid_table())


@pytest.mark.parametrize("loss, collab, rounding", [("symba", "adaptive", "stochastic"),
                                                    ("softplus", "none", "nearest")])
def test_board_training_step_equals_the_runtime(lib, int_model, loss, collab, rounding):
    """ef_ff_train_step, sample by sample as the firmware runs it, against IntTrainer.step at batch 1:
    the same negative labels, verdicts, master weights, weights, biases and gamma after every step."""
    _, int_path, data_dir = int_model
    model = IntFFModel.from_file(int_path)
    if any(layer.norm_bits != 7 for layer in model.layers):
        pytest.skip("the board's training step runs int8 normalized inputs")
    data = load_dataset(data_dir, val_size=100)
    trainer = IntTrainer(model, IntTrainingConfig(lr_shift=12, loss=loss, rounding=rounding, seed=5))
    trainer.collab_mode = collab
    trainer.gamma_q = np.array([300, 150], np.int64) if collab == "adaptive" else trainer.gamma_q
    lib.ef_ff_train_step.argtypes = [ctypes.POINTER(_Trainer), np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS"),
                                     ctypes.c_int32, ctypes.c_int32]
    lib.ef_ff_train_step.restype = ctypes.c_int32
    lib.ef_random_negative_label.restype = ctypes.c_int32
    t, keep = _c_trainer(trainer)
    updated = 0
    for s in range(40):
        image, label = data.train.images[s:s + 1], data.train.labels[s:s + 1]
        negative = lib.ef_random_negative_label(t.seed, t.step, int(label[0]), model.n_classes)
        assert negative == trainer.negative_labels(image, label.astype(np.int64))[0]
        before = trainer.weight_masters[0].copy()
        correct = trainer.step(image, label, np.array([negative]))["correct"]
        assert lib.ef_ff_train_step(ctypes.byref(t), np.ascontiguousarray(image[0]), int(label[0]), negative) == correct
        updated += not np.array_equal(before, trainer.weight_masters[0])
        for i, layer in enumerate(model.layers):
            assert np.array_equal(keep[f"m{i}"], trainer.weight_masters[i]), (s, i)
            assert np.array_equal(keep[f"w{i}"], layer.weight) and np.array_equal(keep[f"b{i}"], layer.bias)
            assert np.array_equal(keep[f"bm{i}"], trainer.bias_masters[i])
        assert list(t.gamma_q)[:len(model.layers)] == trainer.gamma_q.tolist() and t.step == trainer.step_count
    assert updated >= 5  # the steps really changed the weights (nearest rounding skips the small ones)



class _CwcLayer(ctypes.Structure):
    _fields_ = [*((name, ctypes.c_int32) for name in ("kind", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c",
                                                      "out_zero_point", "class_multiplier", "class_shift", "pool")),
                ("block", c_kernels.Conv2dBlock), ("explicit_pad", ctypes.c_int32), ("pad_value", ctypes.c_void_p),
                ("trained", ctypes.c_int32)]


class _CwcModel(ctypes.Structure):
    _fields_ = [("n_layers", ctypes.c_int32), ("n_classes", ctypes.c_int32), ("frac_bits", ctypes.c_int32),
                ("rounding", ctypes.c_int32), ("eval_mask", ctypes.c_uint32), ("layers", _CwcLayer * MAX_LAYERS),
                ("lr_shift", ctypes.c_int32), ("stochastic", ctypes.c_int32), ("seed", ctypes.c_uint32),
                ("step", ctypes.c_uint32), ("slot", ctypes.c_void_p * 2),
                *((name, ctypes.c_void_p) for name in ("prepool", "goodness", "dgoodness", "row_sums", "scratch"))]


def _fitting_shifts(counts, multipliers, shifts, rounding):
    """The shifts lowered, the largest first, until check_scores_fit takes them: random factors at (or just
    under) the largest the model checks allow."""
    shifts = list(shifts)
    while True:
        try:
            check_scores_fit("case", counts, multipliers, shifts, rounding)
            return shifts
        except EdgeFFError:
            shifts[int(np.argmax(shifts))] -= 1


def _c_decisions(lib, shape, pools, n_classes, zps, mult, shift, rounding, eval_layers, images):
    """ef_cwc_classify (the firmware's decision: cwc_model.c's class goodness, the sum over the evaluation
    layers, the first highest) on max-pooling layers, image by image: (decisions, int64 scores)."""
    c, h, w = shape
    m = _CwcModel(n_layers=len(pools), n_classes=n_classes, rounding=c_kernels.ROUNDING[rounding],
                  eval_mask=sum(1 << (l - 1) for l in eval_layers))
    for i, pool in enumerate(pools):
        m.layers[i] = _CwcLayer(kind=EF_CWC_MAXPOOL2D, in_h=h, in_w=w, in_c=c, out_h=h // pool, out_w=w // pool,
                                out_c=c, out_zero_point=zps[i], class_multiplier=int(mult[i]),
                                class_shift=int(shift[i]), pool=pool)
        h, w = h // pool, w // pool
    keep = [np.zeros(c * shape[1] * shape[2], np.int8) for _ in range(2)] + [np.zeros(n_classes, np.int32)]
    m.slot[0], m.slot[1], m.goodness = (a.ctypes.data for a in keep)
    scores, decisions = np.zeros((len(images), n_classes), np.int64), np.empty(len(images), np.int64)
    lib.ef_cwc_classify.argtypes = [ctypes.POINTER(_CwcModel), ctypes.c_void_p, ctypes.c_void_p]
    lib.ef_cwc_classify.restype = ctypes.c_int32
    for i in range(len(images)):   # in_c = n_classes * k >= 2: first_input copies the image, never writes it
        decisions[i] = lib.ef_cwc_classify(ctypes.byref(m), images[i].ctypes.data, scores[i].ctypes.data)
    return decisions, scores


def _reference_decisions(shape, pools, n_classes, zps, mult, shift, rounding, eval_layers, images):
    """The runtime's decision: class_goodness of each layer's output, map_class_goodness (IntLayeredModel's) to
    the common fixed point, the sum over the evaluation layers, NumPy's argmax (the first highest)."""
    q, raw = image_nhwc((images ^ np.uint8(0x80)).view(np.int8), shape), []
    with backend.using("reference"):
        for pool, zp in zip(pools, zps, strict=True):
            q = REFERENCE.max_pool2d(q, pool, -128, 127)
            raw.append(class_goodness(q, zp, n_classes))
    scores = map_class_goodness(np.stack(raw), np.array(mult), np.array(shift), rounding)
    scores = scores[np.array(eval_layers) - 1].sum(axis=0)
    return scores.argmax(axis=1), scores


def _random_decision_case(rng):
    """(n_classes, (C, H, W) input, the pooling windows of 1 to 4 layers, halving the sides now and then)."""
    n_classes, side = int(rng.integers(2, 11)), int(rng.integers(2, 9))
    pools, h = [], side
    for _ in range(int(rng.integers(1, 5))):
        pools.append(2 if h >= 2 and rng.random() < 0.3 else 1)
        h //= pools[-1]
    return n_classes, (n_classes * int(rng.integers(1, 4)), side, side), pools


def _group_counts(shape, pools, n_classes):
    c, h, counts = shape[0], shape[1], []
    for pool in pools:
        h //= pool
        counts.append(group_values((c, h, h), n_classes))
    return counts


def _check_decisions(lib, shape, pools, n_classes, zps, mult, shift, rounding, eval_layers, images):
    """The C decisions and scores equal the runtime's; returns the reference scores."""
    case = (shape, pools, n_classes, [int(z) for z in zps], mult, shift, rounding, eval_layers)
    got, got_scores = _c_decisions(lib, *case, images)
    want, want_scores = _reference_decisions(*case, images)
    assert np.array_equal(got_scores, want_scores) and np.array_equal(got, want), case
    return want_scores


def test_class_decision_equals_the_runtime(lib):
    """ef_cwc_classify's decision and scores against the runtime's on 100,000+ images over random layers (1 to
    4, pooled or not), classes (2 to 10), zero points, roundings, evaluation layers and class-goodness factors
    (multipliers in [2^30, 2^31) or 0, shifts lowered to where check_scores_fit takes them, half from its
    largest): a third of the images two-level and a third with one class's group copied onto another's, so that
    classes tie and the first highest must win."""
    rng, decided, tied = np.random.default_rng(22), 0, 0
    while decided < 100_000:
        n_classes, shape, pools = _random_decision_case(rng)
        rounding, n_layers = str(rng.choice(["double", "single"])), len(pools)
        mult = rng.integers(1 << 30, INT32_MAX, n_layers, endpoint=True)
        mult[rng.random(n_layers) < 0.1] = 0
        shift = np.where(rng.random(n_layers) < 0.5, 30, rng.integers(-31, 31, n_layers))
        shift = _fitting_shifts(_group_counts(shape, pools, n_classes), mult, shift, rounding)
        eval_layers = sorted(int(l) for l in rng.choice(np.arange(1, n_layers + 1), int(rng.integers(1, n_layers + 1)),
                                                         replace=False))
        images = _decision_images(rng, 250, shape, n_classes)
        scores = _check_decisions(lib, shape, pools, n_classes, rng.integers(-128, 128, n_layers), mult, shift,
                                  rounding, eval_layers, images)
        decided += len(images)
        tied += int(((scores == scores.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())
    assert tied > 10_000   # ties decided by the first highest, not a rare accident


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_class_decision_at_the_bounds(lib, rounding, n_layers):
    """Two classes of the largest group (33,025 values) in each of 1 or 2 layers, every value at the int8 end
    farthest from the zero point (G = 33,025 * 255^2), multipliers INT32_MAX and the largest shifts
    check_scores_fit takes: the sum nears INT32_MAX; the classes tie (class 0 wins), or one pixel one step in
    from the end in either class's group breaks the tie (if the mapping keeps the difference)."""
    per_class = c_kernels.C_MAX_GOODNESS_UNITS // 25
    shape, pools = (2 * per_class, 5, 5), [1] * n_layers
    counts = _group_counts(shape, pools, 2)
    assert counts == [c_kernels.C_MAX_GOODNESS_UNITS] * n_layers
    mult = [INT32_MAX] * n_layers
    shift = _fitting_shifts(counts, mult, [30] * n_layers, rounding)
    with pytest.raises(EdgeFFError):   # the largest shifts: one more on any layer is refused
        check_scores_fit("case", counts, mult, [shift[0] + 1, *shift[1:]], rounding)
    for zp, end, inner in ((-128, 255, 254), (127, 0, 1)):   # q = pixel - 128: 127 or -128
        images = np.full((3, int(np.prod(shape))), end, np.uint8)
        images[1, 0] = images[2, per_class * 25] = inner     # class 0's first value, class 1's first value
        scores = _check_decisions(lib, shape, pools, 2, [zp] * n_layers, mult, shift, rounding,
                                  list(range(1, n_layers + 1)), images)
        assert scores[0, 0] == scores[0, 1] > INT32_MAX // 2 and scores.max() <= INT32_MAX


def _decision_images(rng, n, shape, n_classes):
    """Uniform images, images of two levels (many tied classes) and one class's group copied onto another's
    (exact ties), a third each."""
    d = int(np.prod(shape))
    images = rng.integers(0, 256, (n, d)).astype(np.uint8)
    two = rng.random(n) < 1 / 3
    images[two] = rng.choice(np.array([0, 255], np.uint8), (int(two.sum()), d))
    nhwc = image_nhwc(images.view(np.int8), shape).view(np.uint8)
    groups = nhwc.reshape(n, shape[1], shape[2], n_classes, -1)
    copied = ~two & (rng.random(n) < 0.5)
    src, dst = rng.integers(0, n_classes, 2)
    groups[copied, :, :, dst] = groups[copied, :, :, src]
    return np.ascontiguousarray(groups.reshape(n, shape[1], shape[2], shape[0]).transpose(0, 3, 1, 2)).reshape(n, d)
