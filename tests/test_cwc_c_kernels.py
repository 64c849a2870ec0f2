"""The C twin of a conv block's integer CwC rule (edgeff/csrc/kernels/cwc_train.c) gives the bits of the NumPy
specification (edgeff/runtime/conv2d_training.py, edgeff/runtime/cwc_loss.py) at batch 1: the update on 100,000
random cases of tiny random blocks and at the worst-case bounds, the loss derivative on 100,000 random goodness
vectors, ef_round_shift against round_shift at every shift the rule uses, the generated table, and a whole
`edgeff finetune --last-k 1` with either kernel set."""
import ctypes
from dataclasses import replace

import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.ops.conv2d.runtime import IntConv2d, update_scales
from edgeff.runtime import backend, c_kernels, conv2d_training, pooling
from edgeff.runtime.conv2d_training import BIAS_MASTER_LIMIT, Kept, bias_from_master
from edgeff.runtime.cwc_loss import POW2_TABLE, Q15, loss_derivative
from edgeff.runtime.integer_hash import hash32
from edgeff.runtime.master_weights import round_shift, weights_from_masters
from tests.conftest import run_cli
from tests.test_c_kernels import _c_builds
from tests.test_conv_training import tiny  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(not _c_builds(), reason="no C compiler: the C kernels cannot build")

GROUP = 100          # cases drawn at once for one random block shape (the data differ per case)
N_CASES = 100_000


def _block(rng):
    """A random tiny block: (layer with consistent masters, in zero point, kept-forward shape, in/out scale)."""
    while True:
        kh, kw, stride, pad, pool = (*rng.integers(1, 6, 2), rng.integers(1, 3), rng.integers(0, 3),
                                     rng.integers(1, 4))
        h, w, c = *rng.integers(1, 9, 2), rng.integers(1, 13)
        oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
        if oh >= pool and ow >= pool:
            break
    n_classes = rng.integers(1, 5)
    o = n_classes * rng.integers(1, 12 // n_classes + 1)
    multiplier = rng.integers(1 << 30, 1 << 31, o).astype(np.int32)
    shift = rng.integers(-12, 1, o).astype(np.int32)
    dead = rng.random(o) < 0.15                  # multiplier 0: the channel outputs its zero point, a zero step
    multiplier[dead], shift[dead] = 0, 0
    zp = int(rng.integers(-128, 100))
    layer = IntConv2d(np.zeros((o, kh, kw, c), np.int8), np.zeros(o, np.int32), multiplier, shift, zp, zp,
                      int(stride), int(pad), (int(oh), int(ow)), int(pool), np.zeros(c, np.int8))
    in_scale, out_scale = 2.0 ** rng.uniform(-10, -2, 2)
    return layer, int(rng.integers(-128, 128)), (h, w, c), n_classes, in_scale, out_scale


def _states(rng, layer, n):
    """n random (masters (some at the int16 ends), bias masters (some near their limit))."""
    o, taps = len(layer.bias), layer.weight[0].size
    master = rng.integers(-32768, 32768, (n, o, taps))
    ends = rng.random(master.shape) < 0.05
    master[ends] = rng.choice([-32768, -32767, 32767], ends.sum())
    bias_master = rng.integers(-(1 << 30), 1 << 30, (n, o)) * rng.choice([1, 1 << 8], (n, o))
    near = rng.random((n, o)) < 0.1
    bias_master[near] = rng.choice([-1, 1], near.sum()) * (BIAS_MASTER_LIMIT - rng.integers(0, 1 << 12, near.sum()))
    return master.astype(np.int16).reshape(n, *layer.weight.shape), bias_master.astype(np.int64)


def _kept(rng, layer, in_zp, in_shape, n):
    """n kept forwards (rows): inputs, conv outputs in the clamp's range (ties and both ends often), their
    pooling."""
    x = rng.integers(-128, 128, (n, *in_shape))
    extreme = rng.random(n) < 0.2
    x[extreme] = rng.choice([-128, 127, in_zp], x[extreme].shape)
    lo = layer.act_min
    spread = rng.choice([3, 256], (n, 1, 1, 1))   # few distinct values: ties in the pooling windows
    conv = np.clip(lo + (rng.integers(-2, 256, (n, *layer.conv_size, len(layer.bias))) % spread), lo, 127)
    conv = conv.astype(np.int8)
    out = pooling.max_pool2d(conv, layer.pool, -128, 127) if layer.pool > 1 else conv
    return Kept(x.astype(np.int8), in_zp, layer.padding, conv, out)


def _dgoodness(rng, n, n_classes):
    """n rows of dL/dG (Q15): uniform, the ends and zeros, and the loss derivative of random goodness."""
    kind = rng.integers(0, 3, (n, 1))
    uniform = rng.integers(-Q15, Q15 + 1, (n, n_classes))
    ends = rng.choice([-Q15, 0, Q15], (n, n_classes))
    real = loss_derivative(rng.integers(0, 1 << 20, (n, n_classes)), rng.integers(0, n_classes, n), 12)
    return np.select([kind == 0, kind == 1], [uniform, ends], real)


def _stepped(layer, master, bias_master):
    """The block with the filters and bias its masters round to (masters with leading axes give those axes)."""
    return replace(layer, weight=weights_from_masters(master), bias=bias_from_master(bias_master))


def _run_both(layer, kept, dg, master, bias_master, scales, lr_shift, stochastic, seed, stream):
    """(reference state, C state) after one step from the same start: (filters, bias, masters, bias masters)."""
    states = []
    for step in (conv2d_training.step, c_kernels.conv2d_cwc_step):
        m, b = master.copy(), bias_master.copy()
        block = _stepped(layer, m, b)
        step(block, kept, dg, m, b, scales, lr_shift, stochastic, seed, stream)
        states.append((block.weight, block.bias, m, b))
    return states


def _lr_shift(rng, g, scales):
    """A step size that moves a typical case's masters by a few units to past their ends (else every step would
    round to 0)."""
    typical = int(np.median(np.abs(g * scales.weight_multiplier[:, None]).reshape(len(g), -1).max(axis=1)))
    target = typical.bit_length() - scales.weight_shift - int(rng.integers(-2, 8))
    return int(np.clip(target, 0, 62 - max(scales.weight_shift, scales.bias_shift)))


def test_the_c_update_equals_the_specification_on_random_blocks():
    """GROUP cases per random block, stepped alike (one step size and noise stream) from their own data: the
    reference steps them together (update's leading axes), the C kernel one by one, as a board."""
    lib, rng = c_kernels.library(), np.random.default_rng(190)
    cases = changed = 0
    row = np.empty(5 * 5 * 12, np.int32)
    while cases < N_CASES:
        layer, in_zp, in_shape, n_classes, in_scale, out_scale = _block(rng)
        positions = (layer.conv_size[0] // layer.pool) * (layer.conv_size[1] // layer.pool)
        scales = update_scales(layer, in_scale, out_scale, positions * len(layer.bias) // n_classes)
        kept, dg = _kept(rng, layer, in_zp, in_shape, GROUP), _dgoodness(rng, GROUP, n_classes)
        master, bias_master = _states(rng, layer, GROUP)
        start = master.copy()
        g, h = conv2d_training.gradient_rows(layer, kept, dg)
        lr_shift, stochastic, seed, stream = (_lr_shift(rng, g, scales), bool(rng.integers(2)),
                                              int(rng.integers(1 << 32)), int(rng.integers(1 << 32)))
        ref = _stepped(layer, master.copy(), bias_master.copy())
        ref_master, ref_bias_master = master.copy(), bias_master.copy()
        conv2d_training.update(ref, ref_master, ref_bias_master, scales, g, h, lr_shift, stochastic, seed, stream)
        c = _stepped(layer, master, bias_master)
        block = c_kernels.Conv2dBlock(c_kernels.Conv2dShape(*in_shape, *layer.conv_size, len(layer.bias),
                                                            *layer.weight.shape[1:3], layer.stride, layer.stride,
                                                            layer.padding, layer.padding),
                                      in_zp, layer.out_zero_point, layer.act_min, 127, layer.pool, 0)
        constants = (layer.multiplier, layer.shift, scales.weight_multiplier, scales.bias_multiplier)
        block.multiplier, block.shift, block.step_weight_multiplier, block.step_bias_multiplier = (
            a.ctypes.data for a in constants)
        block.step_weight_shift, block.step_bias_shift = scales.weight_shift, scales.bias_shift
        for r in range(GROUP):
            block.weight, block.bias = c.weight[r].ctypes.data, c.bias[r].ctypes.data
            block.weight_master, block.bias_master = master[r].ctypes.data, bias_master[r].ctypes.data
            lib.ef_conv2d_cwc_step(ctypes.byref(block), kept.input[r], kept.conv[r], kept.out[r],
                                   dg[r].astype(np.int32), n_classes, lr_shift, int(stochastic), seed, stream, row)
        for a, b, name in ((ref.weight, c.weight, "filters"), (ref.bias, c.bias, "bias"),
                           (ref_master, master, "masters"), (ref_bias_master, bias_master, "bias masters")):
            bad = np.flatnonzero([not np.array_equal(x, y) for x, y in zip(a, b, strict=True)])
            assert not len(bad), (name, cases + bad[0], layer, lr_shift, stochastic, seed, stream)
        changed += int((ref_master != start).reshape(GROUP, -1).any(axis=1).sum())
        cases += GROUP
    assert changed > 0.5 * cases, changed      # most steps move some master: the comparison is not of no-ops


def _worst_block(pool, kernel, channels):
    """A block at every bound: 33,025 pooled positions (the most the C int32 row sums take), each output
    |a - zp| = 255 and live (zero point 127, all outputs -128, a clamp that cuts none), every input |x - zp| = 255,
    each channel at the largest step multiplier update_scales gives."""
    ph, pw = 25, 1321                             # 33,025 = (2^31 - 1) // 255^2
    conv_size = (ph * pool, pw * pool)
    pad = kernel // 2
    o = 2
    layer = IntConv2d(np.zeros((o, kernel, kernel, channels), np.int8), np.zeros(o, np.int32),
                      np.full(o, 1 << 30, np.int32), np.zeros(o, np.int32), 127, -129, 1, pad, conv_size, pool,
                      np.zeros(channels, np.int8))
    x = np.full((1, *conv_size, channels), -128, np.int8)
    conv = np.full((1, *conv_size, o), -128, np.int8)
    kept = Kept(x, 127, pad, conv, pooling.max_pool2d(conv, pool, -128, 127) if pool > 1 else conv)
    return layer, kept


@pytest.mark.parametrize("pool, kernel, channels", [(1, 1, 1), (2, 3, 2)])
@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
def test_the_c_update_equals_the_specification_at_the_worst_case_bounds(pool, kernel, channels, rounding):
    layer, kept = _worst_block(pool, kernel, channels)
    positions = 25 * 1321
    assert positions * 255 * 255 <= c_kernels.INT32_MAX < (positions + 1) * 255 * 255
    scales = update_scales(layer, 1.0, 1.0, positions)   # equal channels: each at the largest multiplier
    assert (scales.weight_multiplier >= 1 << (62 - scales.weight_gradient_bits - 2)).all()
    o, taps = len(layer.bias), layer.weight[0].size
    dg = np.array([[Q15, -Q15]])                   # e_j = +-2^15, one class a channel
    # masters at the int16 ends and bias masters at the limit, each pushed past it by its step
    master = np.where(np.arange(o)[:, None] == 0, 32767, -32768) * np.ones((o, taps), np.int64)
    master = master.astype(np.int16).reshape(layer.weight.shape)
    bias_master = np.array([BIAS_MASTER_LIMIT, -BIAS_MASTER_LIMIT], np.int64)
    g, h = conv2d_training.gradient(layer, kept, dg)
    # g = e * sum over positions of (-255) * 255 at each tap inside the input: ~2^46, exact in int64
    assert np.abs(g).max() == Q15 * positions * 255 * 255
    assert (np.abs(g * scales.weight_multiplier[:, None]) < 1 << 62).all()
    for lr_shift in (0, 20, 62 - max(scales.weight_shift, scales.bias_shift)):
        ref, c = _run_both(layer, kept, dg, master, bias_master, scales, lr_shift, rounding == "stochastic", 7, 9)
        for a, b in zip(ref, c, strict=True):
            np.testing.assert_array_equal(a, b)
        if lr_shift == 0:                          # steps far past the ends: clamped there, not wrapped around
            # channel 0: e = +2^15 and (a - zp)(x - zp_in) = 255^2, so g > 0 and its masters swing down from one
            # end to the other; channel 1 up. The bias sums (a - zp) < 0: channel 0's bias up, channel 1's down
            assert (c[2][0] == -32768).all() and (c[2][1] == 32767).all()
            assert (c[0][0] == -127).all() and (c[0][1] == 127).all()
            assert list(c[3]) == [BIAS_MASTER_LIMIT, -BIAS_MASTER_LIMIT]
            assert list(c[1]) == [c_kernels.INT32_MAX, -c_kernels.INT32_MAX]


def test_a_batch_is_summed_before_its_one_rounding_and_refused_past_the_bound():
    """The C set takes one sample; a batch (the host's --batch-size > 1) goes to the specification, which sums its
    gradients before one rounding (not three steps one after the other) and refuses a summed gradient past the
    int64 bound before touching anything."""
    rng = np.random.default_rng(5)
    layer, in_zp, in_shape, n_classes, in_scale, out_scale = _block(rng)
    positions = (layer.conv_size[0] // layer.pool) * (layer.conv_size[1] // layer.pool)
    scales = update_scales(layer, in_scale, out_scale, positions * len(layer.bias) // n_classes)
    kept, dg = _kept(rng, layer, in_zp, in_shape, 3), _dgoodness(rng, 3, n_classes)
    master, bias_master = (a[0] for a in _states(rng, layer, 1))
    with backend.using("c") as kernels:
        m, b = master.copy(), bias_master.copy()
        block = _stepped(layer, m, b)
        kernels.conv2d_cwc_step(block, kept, dg, m, b, scales, 3, True, 1, 2)
        one_by_one = _stepped(layer, master.copy(), bias_master.copy())
        mo, bo = one_by_one.weight.astype(np.int16) << 8, one_by_one.bias.astype(np.int64) << 8
        mo[...], bo[...] = master, bias_master
        for r in range(3):
            kernels.conv2d_cwc_step(one_by_one, Kept(kept.input[r:r + 1], in_zp, kept.pad, kept.conv[r:r + 1],
                                                     kept.out[r:r + 1]), dg[r:r + 1], mo, bo, scales, 3, True, 1, 2)
    want = _stepped(layer, master.copy(), bias_master.copy())
    wm, wb = master.copy(), bias_master.copy()
    conv2d_training.update(want, wm, wb, scales, *conv2d_training.gradient(layer, kept, dg), 3, True, 1, 2)
    for x, y in ((block.weight, want.weight), (block.bias, want.bias), (m, wm), (b, wb)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(m, mo)
    # one position at every bound: one sample's |g| = 2^15 * 255^2 stays below 2^32, three reach past it
    worst = IntConv2d(np.zeros((1, 1, 1, 1), np.int8), np.zeros(1, np.int32), np.full(1, 1 << 30, np.int32),
                      np.zeros(1, np.int32), 127, -129, 1, 0, (1, 1), 1, np.zeros(1, np.int8))
    scales = update_scales(worst, 1.0, 1.0, 1)
    full = np.full((3, 1, 1, 1), -128, np.int8)
    m, b = np.full((1, 1, 1, 1), 5 << 8, np.int16), np.full(1, 7 << 8, np.int64)
    block = _stepped(worst, m, b)
    with backend.using("c") as kernels:
        one, mo, bo = _stepped(worst, m, b), m.copy(), b.copy()
        kernels.conv2d_cwc_step(one, Kept(full[:1], 127, 0, full[:1], full[:1]), np.full((1, 1), Q15), mo, bo,
                                scales, 8, False, 0, 0)   # one sample is fine
        assert mo.ravel().tolist() != [5 << 8]
        with pytest.raises(EdgeFFError, match=r"summed filter gradient reached 2\^32.*smaller --batch-size"):
            kernels.conv2d_cwc_step(block, Kept(full, 127, 0, full, full), np.full((3, 1), Q15), m, b, scales, 8,
                                    False, 0, 0)
    assert m.ravel().tolist() == [5 << 8] and b.tolist() == [7 << 8]
    assert block.weight.ravel().tolist() == [5] and block.bias.tolist() == [7]


@pytest.mark.parametrize("stochastic", [False, True])
def test_round_shift_in_c_equals_the_runtimes_at_every_shift(stochastic):
    """ef_round_shift (ff_update.c), which the C rule reuses, against master_weights.round_shift: left shifts,
    shifts below, at and above 32 (the noise then fills the top 32 bits of the fraction), up to 62."""
    lib, rng = c_kernels.library(), np.random.default_rng(8)
    for shift in range(-3, 63):
        bound = 1 << (59 if shift <= 0 else 62)
        v = np.concatenate([rng.integers(-bound, bound, 300), [0, 1, -1, bound - 1, -bound, 1 << max(shift - 1, 0),
                                                              -(1 << max(shift - 1, 0))]])
        want = round_shift(v, shift, stochastic, 11, 13)
        noise = hash32(11, 13, np.arange(len(v)))
        got = [lib.ef_round_shift(int(x), shift, int(stochastic), int(n) if stochastic else 0)
               for x, n in zip(v, noise, strict=True)]
        np.testing.assert_array_equal(got, want, err_msg=f"shift {shift}")


def _goodness_vectors(rng, n, n_classes):
    kind = rng.integers(0, 6, n)[:, None]
    wide = rng.integers(-(1 << 31), 1 << 31, (n, n_classes))
    near = rng.integers(0, 1 << 16, (n, n_classes)) + rng.integers(0, 1 << 28, (n, 1))
    ties = rng.integers(0, 3, (n, n_classes)) * rng.integers(1, 1 << 12, (n, 1))
    equal = np.repeat(rng.integers(-(1 << 31), 1 << 31, (n, 1)), n_classes, axis=1)
    gap = np.where(rng.random((n, n_classes)) < 0.5, (1 << 31) - 1, -(1 << 31))   # e of the low ones underflows
    small = rng.integers(0, 1 << 10, (n, n_classes))
    return np.select([kind == 0, kind == 1, kind == 2, kind == 3, kind == 4], [wide, near, ties, equal, gap], small)


def test_the_c_loss_derivative_equals_the_runtimes():
    lib, rng = c_kernels.library(), np.random.default_rng(23)
    total = 0
    for n_classes in range(1, 13):
        for frac_bits in (12, 0, 20):
            n = 8000 if frac_bits == 12 else 500
            g = _goodness_vectors(rng, n, n_classes).astype(np.int32)
            labels = rng.integers(0, n_classes, n)
            want = loss_derivative(g, labels, frac_bits)
            got = np.empty((n, n_classes), np.int32)
            for r in range(n):
                lib.ef_cwc_loss_derivative_q15(g[r], n_classes, int(labels[r]), frac_bits, got[r])
            np.testing.assert_array_equal(got, want, err_msg=f"{n_classes} classes, frac bits {frac_bits}")
            total += n
    assert total >= 100_000


def test_the_compiled_pow2_table_is_the_runtimes():
    """ef_pow2_q15 (generated into ff_constants.h from cwc_loss.POW2_TABLE) holds the runtime's 256 entries."""
    table = np.ctypeslib.as_array((ctypes.c_uint16 * 256).in_dll(c_kernels.library(), "ef_pow2_q15"))
    assert np.array_equal(table, POW2_TABLE)


def test_finetune_last_k_gives_the_same_file_with_either_kernel_set(tiny, tmp_path, monkeypatch):  # noqa: F811
    int_path, data = tiny
    files = {}
    for name in ("c", "reference"):
        monkeypatch.setenv(backend.VARIABLE, name)
        files[name] = tmp_path / f"{name}.safetensors"
        res = run_cli("finetune", int_path, "--last-k", "1", "--epochs", "1", "--lr-shift", "6", "--out",
                      files[name], "--data-dir", data)
        assert res.returncode == 0, res.stderr
    assert files["c"].read_bytes() == files["reference"].read_bytes()
    before, _ = load_model(int_path)
    after, _ = load_model(files["c"])
    assert not np.array_equal(before["layers.1.weight"], after["layers.1.weight"])   # the step did train
