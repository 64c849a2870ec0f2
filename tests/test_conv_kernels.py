"""The int8 CONV_2D and MAX_POOL_2D kernels: the C twins give the reference kernels' bits on 100,000+
random output values of hundreds of random geometries and at the worst-case bounds; the reference
convolution itself equals an independent float64 convolution followed by the documented double rounding
(scalar Python-int arithmetic), and the reference pooling a literal loop; both reference kernels equal
TensorFlow Lite Micro's own, and the C sources built without AVX2 (the board's loops) equal the reference."""
import ctypes
import platform

import numpy as np
import pytest

from edgeff.runtime import backend, c_kernels, conv2d
from edgeff.runtime.c_kernels import C_CONV_MAX_WINDOW
from edgeff.runtime.requantize import INT32_MAX, INT32_MIN, wrap_int32_ref
from tests.reference_math import multiply_by_quantized_multiplier_ref
from tests.test_c_kernels import _c_builds, both_backends

needs_c = pytest.mark.skipif(not _c_builds(), reason="no C compiler: the C kernels cannot build")
N_OUTPUTS = 100_000


def _random_conv(rng, max_side=12):
    """One random convolution: geometry (kernel 1..5, padding 0..k-1 or SAME / VALID, stride 1..2, channels
    1..16), zero points, int32 biases (some within a few thousand of the int32 bounds, so that the bias add
    wraps), per-channel multipliers over [2^30, 2^31) and shifts either across the valid range or scaled
    to the accumulators (so that most outputs land inside the clamp rather than saturate)."""
    kh, kw = rng.integers(1, 6, 2)
    sh, sw = rng.integers(1, 3, 2)
    c_in, c_out = rng.integers(1, 17, 2)
    mode = rng.choice(["explicit", "same", "valid"], p=[0.6, 0.2, 0.2])
    h, w = (int(rng.integers(max(k, 1), max_side + 1)) for k in (kh, kw))
    if mode == "explicit":
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))
        out = (conv2d.output_size(h, kh, sh, ph), conv2d.output_size(w, kw, sw, pw))
    else:
        (ph, oh), (pw, ow) = conv2d.geometry(h, kh, sh, mode), conv2d.geometry(w, kw, sw, mode)
        out = (oh, ow)
    n = int(rng.integers(1, 4))
    zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
    x = rng.integers(-128, 128, (n, h, w, c_in)).astype(np.int8)
    f = rng.integers(-128, 128, (c_out, kh, kw, c_in)).astype(np.int8)
    near_bounds = rng.integers(0, 4000, c_out)
    bias = np.where(rng.random(c_out) < 0.15, np.where(rng.random(c_out) < 0.5, INT32_MAX - near_bounds,
                                                       INT32_MIN + near_bounds),
                    rng.integers(-(1 << 20), 1 << 20, c_out)).astype(np.int32)
    mult = rng.integers(1 << 30, INT32_MAX, c_out, endpoint=True).astype(np.int32)
    if rng.random() < 0.3:
        shift = rng.integers(-31, 8, c_out).astype(np.int32)
    else:  # a typical accumulator (int8 values have a standard deviation of 74) rescales to about 2^5
        typical = np.sqrt(kh * kw * c_in) * 74 * np.hypot(74, zp_in)
        shift = (5 - np.round(np.log2(typical)) + rng.integers(-2, 2, c_out)).astype(np.int32)
    clamp = rng.integers(0, 3)
    act_min, act_max = ((max(-128, zp_out), 127), (-128, 127), tuple(sorted(rng.integers(-128, 128, 2))))[clamp]
    args = (x, zp_in, f, bias, mult, shift, zp_out, int(act_min), int(act_max), (int(sh), int(sw)), (ph, pw), out)
    return args, rng.choice(["double", "single"], p=[0.8, 0.2])


def _single_rounding_safe(args):
    """TFLITE_SINGLE_ROUNDING's shift is at most 30 (QuantizeMultiplier clips it) and its left shifts stay
    in int32 there: clip the shifts of a single-rounding case as its Prepare would."""
    shift = np.minimum(args[5], 0)
    return (*args[:5], shift, *args[6:])


@needs_c
def test_c_convolution_equals_the_reference_on_random_cases():
    """400 random geometries, their batches together over 100,000 output values, through both backends."""
    rng = np.random.default_rng(190)
    outputs = inside = 0
    for _ in range(400):
        args, rounding = _random_conv(rng)
        if rounding == "single":
            args = _single_rounding_safe(args)
        c, ref = both_backends(lambda k, args=args, rounding=rounding: k.conv2d(*args, rounding))
        assert c.dtype == ref.dtype == np.int8 and c.shape == ref.shape and np.array_equal(c, ref), args[9:]
        outputs += ref.size
        inside += int(((ref > args[7]) & (ref < args[8])).sum())
    assert outputs >= N_OUTPUTS
    assert inside > outputs // 5   # a quarter are not clamped away: the rescale itself is compared


def _bound_case(x_value, f_value, zp_in, bias, mult, shift, zp_out, window=(5, 5, 16), side=7, pad=4):
    kh, kw, c = window
    x = np.full((1, side, side, c), x_value, np.int8)
    f = np.full((3, kh, kw, c), f_value, np.int8)
    f[1] = -f_value if f_value != -128 else 127
    out = (conv2d.output_size(side, kh, 1, pad), conv2d.output_size(side, kw, 1, pad))
    b, m, s = (np.full(3, v, np.int32) for v in (bias, mult, shift))
    return x, zp_in, f, b, m, s, zp_out, -128, 127, (1, 1), (pad, pad), out


@needs_c
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_c_convolution_equals_the_reference_at_the_bounds(rounding):
    """All -128 / all 127 inputs and filters, zero points at both ends (|x - zp| = 255), the largest
    window of the tests and of the C kernel's int32 sum (C_CONV_MAX_WINDOW taps, its sum 2,147,483,520 in
    magnitude), the extreme multipliers and shifts, biases at the int32 bounds."""
    shifts = (-31, -20, 0, 7) if rounding == "double" else (-31, -20, 0)
    cases = []
    for xv, fv, zp in ((-128, -128, 127), (127, -128, -128), (127, 127, -128), (-128, 127, 127), (0, 0, 0)):
        for mult in (1 << 30, INT32_MAX):
            for shift in shifts:
                for bias in (INT32_MIN, -1, 0, INT32_MAX):
                    cases.append(_bound_case(xv, fv, zp, bias, mult, shift, -128 if shift < 0 else 0))
        cases.append(_bound_case(xv, fv, zp, 0, INT32_MAX, -31, 0, window=(1, 1, C_CONV_MAX_WINDOW), side=1, pad=0))
    for args in cases:
        c, ref = both_backends(lambda k, args=args: k.conv2d(*args, rounding))
        assert np.array_equal(c, ref), (args[0].flat[0], args[1], args[2].flat[0], args[3][0], args[4][0], args[5][0])
    # the window past the C sum's bound goes to the reference kernel, with the same bits
    big = _bound_case(-128, -128, 127, 0, INT32_MAX, -31, 0, window=(1, 1, C_CONV_MAX_WINDOW + 1), side=1, pad=0)
    c, ref = both_backends(lambda k: k.conv2d(*big, rounding))
    assert np.array_equal(c, ref)


def _float_conv(x, zp_in, f, stride, pad, out_size):
    """The convolution in float64 straight from its definition: every tap of every output position that
    falls inside the input, no padded copy and no im2col."""
    (n, h, w, _), (o, kh, kw, _), (sh, sw), (ph, pw), (oh, ow) = x.shape, f.shape, stride, pad, out_size
    xs, fs = x.astype(np.float64) - zp_in, f.astype(np.float64)
    acc = np.zeros((n, oh, ow, o))
    for ky in range(kh):
        for kx in range(kw):
            iy, ix = np.arange(oh) * sh - ph + ky, np.arange(ow) * sw - pw + kx
            vy, vx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
            taps = xs[:, np.clip(iy, 0, h - 1)][:, :, np.clip(ix, 0, w - 1)] * (vy[:, None] & vx[None, :])[..., None]
            acc += np.einsum("nyxc,oc->nyxo", taps, fs[:, ky, kx])
    return acc


def test_reference_convolution_equals_float64_and_the_documented_rounding():
    """300 random cases: the reference's int8 outputs equal the float64 convolution's exact integer sums
    plus bias, wrapped to int32, rescaled by the scalar MultiplyByQuantizedMultiplier (Python ints), plus
    the zero point, clamped; and within 1 of rounding the real product acc * M * 2^(shift - 31) directly
    (the double rounding's documented cost), equal to it in almost every case."""
    rng = np.random.default_rng(191)
    reference = backend.using("reference")
    compared = off_by_one = 0
    with reference as kernels:
        for _ in range(300):
            args, rounding = _random_conv(rng, max_side=7)
            if rounding == "single":
                args = _single_rounding_safe(args)
            x, zp_in, f, bias, mult, shift, zp_out, act_min, act_max, stride, pad, out = args
            got = kernels.conv2d(*args, rounding)
            acc = _float_conv(x, zp_in, f, stride, pad, out)
            assert np.abs(acc).max() < 2 ** 52 and np.array_equal(acc, np.round(acc))   # exact in float64
            want = np.empty(got.shape, np.int64)
            real_rounded = np.empty(got.shape, np.int64)
            for idx in np.ndindex(*got.shape):
                o = idx[3]
                total = wrap_int32_ref(int(acc[idx]) + int(bias[o]))
                y = multiply_by_quantized_multiplier_ref(total, int(mult[o]), int(shift[o]), rounding)
                want[idx] = min(max(y + zp_out, act_min), act_max)
                real = np.floor(total * float(mult[o]) * 2.0 ** (int(shift[o]) - 31) + 0.5)
                real_rounded[idx] = min(max(real + zp_out, act_min), act_max)
            assert np.array_equal(got, want), (stride, pad, out, rounding)
            # left shifts wrap in int32 (as on the board) where the real product does not: compare the rest
            fair = np.broadcast_to(shift <= 0, got.shape)
            assert np.abs(got[fair] - real_rounded[fair]).max(initial=0) <= 1
            compared += int(fair.sum())
            off_by_one += int((got[fair] != real_rounded[fair]).sum())
    assert compared > 10_000 and off_by_one < compared // 20


def test_same_and_valid_padding_follow_tflite():
    """TFLite's ComputePaddingHeightWidth: SAME keeps ceil(in / stride) outputs, pads half the total before
    (the odd one after); VALID pads nothing."""
    assert conv2d.geometry(5, 3, 2, "same") == (1, 3)
    assert conv2d.geometry(4, 3, 2, "same") == (0, 2)      # total 1: all of it after
    assert conv2d.geometry(6, 5, 1, "same") == (2, 6)
    assert conv2d.geometry(7, 3, 2, "valid") == (0, 3)
    assert conv2d.geometry(2, 5, 2, "same") == (1, 1)
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        conv2d.geometry(5, 3, 1, "full")


def _random_pool(rng):
    size = int(rng.integers(1, 5))
    n, c = int(rng.integers(1, 5)), int(rng.integers(1, 17))
    h, w = (int(rng.integers(size, 4 * size + 4)) for _ in range(2))
    x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
    clamp = ((-128, 127), tuple(int(v) for v in sorted(rng.integers(-128, 128, 2))))[int(rng.integers(0, 2))]
    return x, size, *clamp


@needs_c
def test_c_max_pooling_equals_the_reference():
    """Random shapes (window 1..4, rows and columns past the last whole window, channels 1..16, clamps)
    over 100,000 output values, and the bounds: all -128, all 127, one 127 among -128s."""
    rng = np.random.default_rng(192)
    outputs = 0
    while outputs < N_OUTPUTS:
        args = _random_pool(rng)
        c, ref = both_backends(lambda k, args=args: k.max_pool2d(*args))
        assert c.dtype == ref.dtype == np.int8 and np.array_equal(c, ref)
        outputs += ref.size
    lone = np.full((1, 4, 4, 3), -128, np.int8)
    lone[0, 3, 1, 2] = 127
    for x in (np.full((2, 4, 6, 5), -128, np.int8), np.full((2, 4, 6, 5), 127, np.int8), lone):
        for clamp in ((-128, 127), (-128, -128), (127, 127)):
            c, ref = both_backends(lambda k, x=x, clamp=clamp: k.max_pool2d(x, 2, *clamp))
            assert np.array_equal(c, ref)
    assert ref[0, 1, 0, 2] == 127


def test_reference_max_pooling_equals_a_literal_loop():
    """TFLM's MaxPool loop, scalar, on 50 random cases: each output the clamped maximum of its window."""
    rng = np.random.default_rng(193)
    with backend.using("reference") as kernels:
        for _ in range(50):
            x, size, act_min, act_max = _random_pool(rng)
            got = kernels.max_pool2d(x, size, act_min, act_max)
            n, h, w, c = x.shape
            assert got.shape == (n, h // size, w // size, c)
            for b, oy, ox, ch in np.ndindex(*got.shape):
                window = [int(x[b, oy * size + i, ox * size + j, ch]) for i in range(size) for j in range(size)]
                assert got[b, oy, ox, ch] == min(max(max(window), act_min), act_max)


def _tflm_model(op, options_type, options, x, out_shape, in_q, out_q, constants=()) -> bytes:
    """A one-op .tflite: an int8 NHWC input, the op's constant tensors (filters, bias), an int8 output."""
    from ai_edge_litert import schema_py_generated as schema

    from edgeff.export.tflite_int8 import _FlatbufferWriter

    w = _FlatbufferWriter()
    x_in = w.tensor("input", schema.TensorType.INT8, x.shape, None, *in_q)
    consts = [w.tensor(name, dtype, data.shape, data, scale, 0) for name, dtype, data, scale in constants]
    out = w.tensor("output", schema.TensorType.INT8, out_shape, None, *out_q)
    w.op(op, [x_in, *consts], [out], options_type, options)
    return w.finish([x_in], [out], "conv kernel check", {})


def test_reference_kernels_equal_tensorflow_lite_micro():
    """TFLM's own CONV_2D (per-channel, SAME / VALID, stride 1..2, RELU or none) and MAX_POOL_2D kernels, in
    its interpreter, give the reference kernels' bits: 40 convolutions and 20 poolings, each a one-op model
    whose float32 scales TFLM's Prepare turns into the multipliers and shifts the runtime is handed."""
    pytest.importorskip("tflite_micro")
    from ai_edge_litert import schema_py_generated as schema

    from edgeff.export import tflm
    from edgeff.runtime.requantize import float32, multiplier_from_scales

    Op, Opt, Type, Act = schema.BuiltinOperator, schema.BuiltinOptions, schema.TensorType, schema.ActivationFunctionType
    rng = np.random.default_rng(194)
    compared = inside = 0
    with backend.using("reference") as kernels:
        for case in range(40):
            kh, kw, sh, sw = (int(v) for v in (*rng.integers(1, 6, 2), *rng.integers(1, 3, 2)))
            c_in, c_out = (int(v) for v in rng.integers(1, 17, 2))
            h, w = (int(v) for v in rng.integers(5, 11, 2))
            padding = ("same", "valid")[case % 2]
            relu = case % 4 >= 2
            (ph, oh), (pw, ow) = conv2d.geometry(h, kh, sh, padding), conv2d.geometry(w, kw, sw, padding)
            zp_in, zp_out = (int(v) for v in rng.integers(-128, 128, 2))
            s_in = float32(rng.uniform(0.01, 0.1))
            s_w = rng.uniform(0.002, 0.02, c_out).astype(np.float32)
            s_out = float32(s_in * float(s_w.mean()) * np.sqrt(kh * kw * c_in) * 74 * np.hypot(74, zp_in) / 40)
            x = rng.integers(-128, 128, (1, h, w, c_in)).astype(np.int8)
            f = rng.integers(-127, 128, (c_out, kh, kw, c_in)).astype(np.int8)
            bias = rng.integers(-(1 << 16), 1 << 16, c_out).astype(np.int32)
            mult, shift = np.array([multiplier_from_scales(s_in, float(s), s_out) for s in s_w], np.int32).T
            act_min = max(-128, zp_out) if relu else -128
            want = kernels.conv2d(x, zp_in, f, bias, mult, shift, zp_out, act_min, 127, (sh, sw), (ph, pw), (oh, ow),
                                  "double")
            options = schema.Conv2DOptionsT()
            options.padding = schema.Padding.SAME if padding == "same" else schema.Padding.VALID
            options.strideH, options.strideW, options.dilationHFactor, options.dilationWFactor = sh, sw, 1, 1
            options.fusedActivationFunction = Act.RELU if relu else Act.NONE
            content = _tflm_model(Op.CONV_2D, Opt.Conv2DOptions, options, x, want.shape, (s_in, zp_in),
                                  (s_out, zp_out), [("filter", Type.INT8, f, s_w),
                                                    ("bias", Type.INT32, bias, s_in * s_w.astype(np.float64))])
            it = tflm.interpreter(content)
            it.set_input(x, 0)
            it.invoke()
            got = it.get_output(0)
            assert np.array_equal(got, want), (padding, (kh, kw), (sh, sw), relu)
            compared += want.size
            inside += int(((want > act_min) & (want < 127)).sum())
        assert inside > compared // 3   # the rescale is compared, not only the clamp
        for case in range(20):
            size, c = int(rng.integers(1, 5)), int(rng.integers(1, 17))
            h, w = (int(v) for v in rng.integers(size, 4 * size + 3, 2))
            zp, relu = int(rng.integers(-128, 128)), case % 2 == 1
            x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
            want = kernels.max_pool2d(x, size, max(-128, zp) if relu else -128, 127)
            options = schema.Pool2DOptionsT()
            options.padding, options.strideH, options.strideW = schema.Padding.VALID, size, size
            options.filterHeight, options.filterWidth = size, size
            options.fusedActivationFunction = Act.RELU if relu else Act.NONE
            content = _tflm_model(Op.MAX_POOL_2D, Opt.Pool2DOptions, options, x, want.shape, (0.05, zp), (0.05, zp))
            it = tflm.interpreter(content)
            it.set_input(x, 0)
            it.invoke()
            assert np.array_equal(it.get_output(0), want), (size, relu)
            compared += want.size
    assert compared > 5_000


@needs_c
@pytest.mark.skipif(platform.machine() != "x86_64", reason="builds the kernels for baseline x86-64")
def test_scalar_build_equals_the_reference(tmp_path, monkeypatch):
    """The same C sources built for baseline x86-64 (no AVX2: the loops the board compiles) on 60 random
    convolutions and poolings: the host's vectorized epilogue is not what makes the C twin equal."""
    monkeypatch.setenv("EDGEFF_CACHE_DIR", str(tmp_path))
    flags = [f if f != "-march=native" else "-march=x86-64" for f in c_kernels.FLAGS]
    scalar = c_kernels.bind(ctypes.CDLL(str(c_kernels.build(flags))))
    rng = np.random.default_rng(195)
    with backend.using("reference") as kernels:
        for _ in range(60):
            args, rounding = _random_conv(rng)
            args = _single_rounding_safe(args) if rounding == "single" else args
            x, zp_in, f, bias, mult, shift, zp_out, act_min, act_max, stride, pad, out_size = args
            want = kernels.conv2d(*args, rounding)
            got = np.empty_like(want)
            shape = c_kernels.Conv2dShape(*x.shape[1:3], x.shape[3], *out_size, f.shape[0], *f.shape[1:3], *stride,
                                          *pad)
            scalar.ef_conv2d_s8(x, len(x), ctypes.byref(shape), zp_in, f, bias, mult, shift, zp_out, act_min,
                                act_max, c_kernels.ROUNDING[rounding], None, got)
            assert np.array_equal(got, want)
            x, size, act_min, act_max = _random_pool(rng)
            want = kernels.max_pool2d(x, size, act_min, act_max)
            got = np.empty_like(want)
            scalar.ef_max_pool2d_s8(x, len(x), *x.shape[1:], size, act_min, act_max, got)
            assert np.array_equal(got, want)
