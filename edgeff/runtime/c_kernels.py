"""The C kernel set: the C kernels (edgeff/csrc/kernels, which the board firmware builds too), for this
host, through ctypes.

The same C99 sources run on the board; here they are the runtime's fast kernel set (CKernels), chosen
by edgeff.runtime.backend. CKernels runs the cases its C code covers and hands every other one to the
reference set (one rule, `_c_for`), with the same bits (tests/test_c_kernels.py). Small batches (a
board's step) run each layer fused in C (ef_ff_layer_s8); large matrix products stay in exact float BLAS,
which beats the C dot products there.

The library is compiled once per source version with the system C compiler (`cc`) into a cache
directory and loaded from there afterwards; large batches are split across cores by a thread pool
(ctypes releases the GIL during a call).
"""
import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from edgeff.csrc import KERNELS
from edgeff.errors import EdgeFFError
from edgeff.runtime.class_goodness import MAX_GROUP_VALUES
from edgeff.runtime.int_fully_connected import ACT_MAX
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.reference_kernels import ReferenceKernels
from edgeff.runtime.requantize import INT32_MAX, output_dtype

FLAGS = ["-std=c99", "-O3", "-march=native", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror"]
ROUNDING = {"double": 0, "single": 1}


def source_dir() -> Path:
    return KERNELS


def cache_dir() -> Path:
    if os.environ.get("EDGEFF_CACHE_DIR"):
        return Path(os.environ["EDGEFF_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeff"


def _cpu_model() -> str:
    """-march=native code belongs to one CPU model: it is part of the cache key."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({l for l in lines if l.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


def build(flags=None) -> Path:
    """Compile the library if this version is not cached yet; returns its path (atomic: a temp file
    renamed into place, so concurrent builds cannot leave a half-written library). Tests build it with
    other flags too (a baseline x86-64 without AVX2: the board's scalar loops)."""
    flags = FLAGS if flags is None else flags
    sources = sorted(source_dir().glob("*.c"))
    digest = hashlib.sha256()
    for f in sorted(source_dir().glob("*.[ch]")):
        digest.update(f.name.encode() + f.read_bytes())
    digest.update(" ".join([*flags, platform.machine(), _cpu_model()]).encode())
    target = cache_dir() / f"edgeff_kernels-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(["cc", *flags, "-o", tmp, *map(str, sources)], capture_output=True, text=True)
        if result.returncode != 0:
            raise EdgeFFError(f"building the C kernels failed:\n{result.stderr.strip()}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _arr(dtype):
    """ctypes argument type of a C-contiguous array of `dtype`: checked, then passed as its data pointer
    (what numpy's ndpointer does, without its per-call cost, which dominates calls on a row or two)."""
    dtype = np.dtype(dtype)

    class Array:
        @classmethod
        def from_param(cls, a):
            if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous:
                raise TypeError(f"expected a C-contiguous {dtype} array, got {getattr(a, 'dtype', type(a))}")
            return ctypes.c_void_p(a.__array_interface__["data"][0])

    return Array


_i32, _u32, _int = ctypes.c_int32, ctypes.c_uint32, ctypes.c_int


class Conv2dShape(ctypes.Structure):
    """ef_conv2d_shape: a convolution's sides, channels, kernel, stride and (top, left) padding."""
    _fields_ = [(name, _i32) for name in ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "kernel_h",
                                          "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w")]


class Conv2dBlock(ctypes.Structure):
    """ef_conv2d_block: a conv block as its CwC update reads and writes it (cwc_train.c)."""
    _fields_ = [("shape", Conv2dShape), *((name, _i32) for name in ("in_zero_point", "out_zero_point", "act_min",
                                                                       "act_max", "pool", "rounding")),
                *((name, ctypes.c_void_p) for name in ("weight", "bias", "multiplier", "shift", "weight_master",
                                                       "bias_master", "step_weight_multiplier",
                                                       "step_bias_multiplier")),
                ("step_weight_shift", _i32), ("step_bias_shift", _i32)]


_SIGNATURES = {
    "ef_multiply_by_quantized_multiplier_n": [_arr(np.int32), _arr(np.int32), _arr(np.int32), _i32, _int,
                                              _arr(np.int32)],
    "ef_requantize_s8": [_arr(np.int32), _i32, _i32, _arr(np.int32), _arr(np.int32), _arr(np.int32), _i32, _i32,
                         _i32, _int, _arr(np.int8)],
    "ef_requantize_s16": [_arr(np.int64), _i32, _i32, _arr(np.int64), _arr(np.int32), _arr(np.int32), _i32,
                          _i32, _i32, _arr(np.int8)],
    "ef_fully_connected_s8": [_arr(np.int8), _i32, _i32, _arr(np.int8), _i32, _arr(np.int32), _arr(np.int32),
                              _arr(np.int32), _i32, _i32, _i32, _int, _arr(np.int8)],
    "ef_fully_connected_s16": [_arr(np.int16), _i32, _i32, _arr(np.int8), _i32, _arr(np.int64), _arr(np.int32),
                               _arr(np.int32), _i32, _i32, _i32, _arr(np.int8)],
    "ef_inv_sqrt_quantized_multiplier": [_i32, ctypes.POINTER(_i32), ctypes.POINTER(_i32)],
    "ef_inv_sqrt_quantized_multiplier_n": [_arr(np.int32), _i32, _arr(np.int32), _arr(np.int32)],
    "ef_l2_normalize_s8": [_arr(np.int8), _i32, _i32, _i32, _int, _arr(np.int8)],
    "ef_l2_normalize_s16": [_arr(np.int8), _i32, _i32, _i32, _int, _arr(np.int16)],
    "ef_goodness": [_arr(np.int8), _i32, _i32, _i32, _arr(np.int32)],
    "ef_conv2d_s8_scratch_bytes": [ctypes.POINTER(Conv2dShape)],
    "ef_conv2d_s8": [_arr(np.int8), _i32, ctypes.POINTER(Conv2dShape), _i32, _arr(np.int8), _arr(np.int32),
                     _arr(np.int32), _arr(np.int32), _i32, _i32, _i32, _int, ctypes.c_void_p, _arr(np.int8)],
    "ef_max_pool2d_s8": [_arr(np.int8), _i32, _i32, _i32, _i32, _i32, _i32, _i32, _arr(np.int8)],
    "ef_ff_label_rows_s8": [_arr(np.int32), _arr(np.int8), _i32, _arr(np.int32), _i32, _i32, _arr(np.int32),
                            _arr(np.int32), _arr(np.int32), _i32, _i32, _int, _arr(np.int8), _arr(np.int32)],
    "ef_ff_layer_s8": [_arr(np.int8), _i32, _i32, _i32, _arr(np.int8), _i32, _arr(np.int32), _arr(np.int32),
                       _arr(np.int32), _i32, _i32, _int, _arr(np.int8), _arr(np.int8), _arr(np.int32)],
    "ef_hash32": [_u32, _u32, _u32],
    "ef_update_weight_rows": [_arr(np.int16), _arr(np.int8), _i32, _arr(np.int32), _i32, _arr(np.int64), _i32,
                              _int, _u32, _u32],
    "ef_round_shift": [ctypes.c_int64, _i32, _int, _u32],
    "ef_cwc_loss_derivative_q15": [_arr(np.int32), _i32, _i32, _i32, _arr(np.int32)],
    "ef_conv2d_cwc_step": [ctypes.POINTER(Conv2dBlock), _arr(np.int8), _arr(np.int8), _arr(np.int8),
                           _arr(np.int32), _i32, _i32, _int, _u32, _u32, _arr(np.int32)],
}
_RESTYPES = {"ef_hash32": _u32, "ef_conv2d_s8_scratch_bytes": _i32, "ef_round_shift": ctypes.c_int64}


@functools.cache
def _load() -> ctypes.CDLL:
    try:
        return bind(ctypes.CDLL(str(build())))
    except OSError as exc:
        raise EdgeFFError(f"loading the C kernels failed: {exc}") from None


def bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare every kernel's argument and result types on a loaded library."""
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, _RESTYPES.get(name)
    return lib


def library() -> ctypes.CDLL:
    """The loaded library, built first if needed; EdgeFFError when it cannot be built or loaded."""
    return _load()


# ---------------------------------------------------------------- array-level calls

PARALLEL_ABOVE = 1 << 16   # elements; below this one thread is faster than handing work over
WORKERS = os.cpu_count() or 1
_pool = None
_thread = threading.local()  # .serial: this thread runs one piece of map_chunks (no nested splitting)


def _new_pool():
    global _pool
    _pool = ThreadPoolExecutor(max_workers=WORKERS)


_new_pool()
os.register_at_fork(after_in_child=_new_pool)  # a forked child has none of its parent's threads


def _c(x, dtype):
    return np.ascontiguousarray(x, dtype=dtype)


def _over_rows(kernel, arrays, outs, *args):
    """kernel(*row_slices_of_arrays, rows, *args, *row_slices_of_outs) over every row, the rows split
    across the CPU's cores when the work is large (ctypes releases the GIL during each C call)."""
    rows = outs[0].shape[0]
    parts = min(WORKERS, max(1, sum(o.size for o in outs) // PARALLEL_ABOVE), rows) if rows else 1
    if parts == 1 or getattr(_thread, "serial", False):
        kernel(*arrays, rows, *args, *outs)
        return

    def run(a, b):
        kernel(*(x[a:b] for x in arrays), b - a, *args, *(o[a:b] for o in outs))

    bounds = np.linspace(0, rows, parts + 1).astype(int)
    for f in [_pool.submit(run, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]:
        f.result()


def map_chunks(fn, chunks: list) -> list:
    """[fn(c) for c in chunks], the chunks spread over the cores, each run on one thread (the kernels inside
    it and BLAS too). For many independent pieces of work (multi-pass inference) this beats splitting
    every kernel call: no hand-over per call, and no BLAS threads spinning against the kernels' threads."""
    if WORKERS == 1 or len(chunks) < 2:
        return [fn(c) for c in chunks]

    def run(chunk):
        _thread.serial = True
        try:
            return fn(chunk)
        finally:
            _thread.serial = False

    with _blas_threads().limit(limits=1):
        return list(_pool.map(run, chunks))


@functools.cache
def _blas_threads() -> ThreadpoolController:
    """The BLAS (and OpenMP) thread pools of this process, found once: scanning the loaded libraries costs
    more than a small multi-pass call."""
    return ThreadpoolController()


def requantize(acc, bias, multiplier, shift, zero_point, act_min, act_max, rounding, wide) -> np.ndarray:
    """FC epilogue over a 2-D accumulator (int32 wrap-around, or int64 in 16x8 mode); int8 out."""
    lib, rows, units = library(), acc.shape[0], acc.shape[1]
    out = np.empty((rows, units), np.int8)
    if wide:
        _over_rows(lib.ef_requantize_s16, [_c(acc, np.int64)], [out], units, _c(bias, np.int64),
                   _c(multiplier, np.int32), _c(shift, np.int32), zero_point, act_min, act_max)
    else:
        acc = acc if acc.dtype == np.int32 else np.asarray(acc, np.int64).astype(np.int32)  # int32 wrap
        bias = np.zeros(units, np.int32) if bias is None else bias
        _over_rows(lib.ef_requantize_s8, [_c(acc, np.int32)], [out], units, _c(bias, np.int32),
                   _c(multiplier, np.int32), _c(shift, np.int32), zero_point, act_min, act_max, ROUNDING[rounding])
    return out


def l2_normalize(q, zero_point: int, output_shift_bits: int, rounding: str) -> np.ndarray:
    """Rows of int8 values -> int8 (7 bits) or int16 (15 bits) normalized rows."""
    lib, q = library(), _c(q, np.int8)
    out = np.empty(q.shape, np.int8 if output_shift_bits == 7 else np.int16)
    kernel = lib.ef_l2_normalize_s8 if output_shift_bits == 7 else lib.ef_l2_normalize_s16
    _over_rows(kernel, [q], [out], q.shape[1], zero_point, ROUNDING[rounding])
    return out


def goodness(a, zero_point: int) -> np.ndarray:
    lib, a = library(), _c(a, np.int8)
    out = np.empty(a.shape[0], np.int32)
    _over_rows(lib.ef_goodness, [a], [out], a.shape[1], zero_point)
    return out


def conv2d(x, input_zero_point: int, filters, bias, multiplier, shift, output_zero_point: int, act_min: int,
           act_max: int, stride, pad, out_size, rounding: str) -> np.ndarray:
    """int8 CONV_2D (ef_conv2d_s8) on an NHWC batch, OHWI filters; the images split across the cores."""
    lib, x, filters = library(), _c(x, np.int8), _c(filters, np.int8)
    (n, h, w, c), (o, kh, kw, _) = x.shape, filters.shape
    shape = Conv2dShape(h, w, c, *out_size, o, kh, kw, *stride, *pad)
    out = np.empty((n, *out_size, o), np.int8)
    bias = np.zeros(o, np.int32) if bias is None else bias
    mult, shift = (_c(np.broadcast_to(v, o), np.int32) for v in (multiplier, shift))
    scratch_words = -(-lib.ef_conv2d_s8_scratch_bytes(ctypes.byref(shape)) // 8)   # 0: the portable path's

    def kernel(*args):   # a scratch of its own for each call: the rows may run on several threads at once
        scratch = np.empty(scratch_words, np.int64) if scratch_words else None
        lib.ef_conv2d_s8(*args[:-1], None if scratch is None else scratch.ctypes.data, args[-1])

    _over_rows(kernel, [x], [out], ctypes.byref(shape), input_zero_point, filters, _c(bias, np.int32),
               mult, shift, output_zero_point, act_min, act_max, ROUNDING[rounding])
    return out


def max_pool2d(x, size: int, act_min: int, act_max: int) -> np.ndarray:
    """int8 MAX_POOL_2D (ef_max_pool2d_s8), size x size windows, VALID, on an NHWC batch."""
    lib, x = library(), _c(x, np.int8)
    n, h, w, c = x.shape
    out = np.empty((n, h // size, w // size, c), np.int8)
    _over_rows(lib.ef_max_pool2d_s8, [x], [out], h, w, c, size, act_min, act_max)
    return out


def ff_layer(a, zero_point: int, weight, bias, multiplier, shift, out_zero_point: int, act_min: int,
             rounding: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One FF layer on rows of int8 activations: (normalized int8 input, int8 output, raw int32 goodness)."""
    lib, a = library(), _c(a, np.int8)
    rows, d_out = a.shape[0], weight.shape[0]
    n, out, g = np.empty(a.shape, np.int8), np.empty((rows, d_out), np.int8), np.empty(rows, np.int32)
    _over_rows(lib.ef_ff_layer_s8, [a], [n, out, g], a.shape[1], zero_point, _c(weight, np.int8), d_out,
               _c(bias, np.int32), _c(multiplier, np.int32), _c(shift, np.int32), out_zero_point, act_min,
               ROUNDING[rounding])
    return n, out, g


def label_rows(shared, label_pixel, label_columns, bias, multiplier, shift, out_zero_point: int, act_min: int,
               rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """Multi-pass first layer (ef_ff_label_rows_s8): int8 outputs (N * C, units) and raw goodness (N * C)."""
    lib, shared = library(), _c(shared, np.int32)
    (images, units), n_classes = shared.shape, label_columns.shape[0]
    out, g = np.empty((images, n_classes * units), np.int8), np.empty((images, n_classes), np.int32)
    _over_rows(lib.ef_ff_label_rows_s8, [shared, _c(label_pixel, np.int8)], [out, g], _c(label_columns, np.int32),
               n_classes, units, _c(bias, np.int32), _c(multiplier, np.int32), _c(shift, np.int32), out_zero_point,
               act_min, ROUNDING[rounding])
    return out.reshape(images * n_classes, units), g.reshape(-1)


def update_weight_rows(master, weight, rows, grad, lr_shift: int, stochastic: bool, seed: int, stream: int):
    """In place: master rows `rows` += rounded grad / 2^lr_shift, and their int8 weights re-derived."""
    library().ef_update_weight_rows(master, weight, master.shape[1], _c(rows, np.int32), len(rows),
                                    _c(grad, np.int64), lr_shift, int(stochastic), seed & 0xFFFFFFFF,
                                    stream & 0xFFFFFFFF)


def _data(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def conv2d_cwc_step(layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift: int, stochastic: bool,
                    seed: int, stream: int):
    """One sample's CwC update of a conv block (ef_conv2d_cwc_step), in place on the block's filters and bias and
    on the masters (C-contiguous arrays of the dtypes the C reads, as _conv2d_cwc_step_covered checks)."""
    _, h, w, c = kept.input.shape
    _, oh, ow, o = kept.conv.shape
    kh, kw = layer.weight.shape[1:3]
    consts = [_c(layer.multiplier, np.int32), _c(layer.shift, np.int32), _c(scales.weight_multiplier, np.int64),
              _c(scales.bias_multiplier, np.int64)]   # kept alive until the call returns
    block = Conv2dBlock(Conv2dShape(h, w, c, oh, ow, o, kh, kw, layer.stride, layer.stride, kept.pad, kept.pad),
                        kept.zero_point, layer.out_zero_point, layer.act_min, ACT_MAX, layer.pool,
                        ROUNDING["double"],   # the forward's rounding: the step reads none
                        _data(layer.weight), _data(layer.bias), *map(_data, consts[:2]), _data(weight_master),
                        _data(bias_master), *map(_data, consts[2:]), scales.weight_shift, scales.bias_shift)
    library().ef_conv2d_cwc_step(ctypes.byref(block), _c(kept.input, np.int8), _c(kept.conv, np.int8),
                                 _c(kept.out, np.int8), _c(dgoodness, np.int32).reshape(-1), dgoodness.shape[1],
                                 lr_shift, int(stochastic), seed & 0xFFFFFFFF, stream & 0xFFFFFFFF,
                                 np.empty(kh * kw * c, np.int32))


# ---------------------------------------------------------------- the kernel set

C_MAX_GOODNESS_UNITS = MAX_GROUP_VALUES   # the C goodness's int32 sum of (q - zp)^2 cannot overflow below this width
C_CONV_MAX_WINDOW = INT32_MAX // (128 * 255)   # kh * kw * C the C convolution's int32 sum holds exactly
C_FUSED_MAX_ROWS = 32    # batches up to this many rows run a layer fused in C; larger ones through BLAS
C_NORMALIZATIONS = ((7, -128, 127), (15, -32768, 32767))   # (output bits, clamp): int8 and int16 outputs
C_CWC_MAX_POSITIONS = MAX_GROUP_VALUES    # pooled positions the C update's int32 row sums hold exactly


def _c_for(covered):
    """The decorated C call for the arguments `covered(*args)` accepts, the reference kernel of the same
    name for every other: the one place where the C set hands work to the reference set."""
    def kernel_set_method(c_call):
        reference = getattr(ReferenceKernels, c_call.__name__)

        @functools.wraps(reference)
        def method(self, *args):
            return c_call(*args) if covered(*args) else reference(self, *args)
        return method
    return kernel_set_method


def _int8_rows(q) -> bool:
    return q.ndim == 2 and q.dtype == np.int8


def _in_place(a, dtype) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable


def _conv2d_cwc_step_covered(layer, kept, dgoodness, weight_master, bias_master, *_) -> bool:
    """One sample (the board's rule; a batch sums its gradients before rounding, in the reference), int8 tensors
    with an int8 input zero point, positions the int32 row sums hold, and the arrays updated in place C's."""
    n, oh, ow, _ = kept.conv.shape
    return (n == 1 and len(dgoodness) == 1 and -128 <= kept.zero_point <= 127
            and (oh // layer.pool) * (ow // layer.pool) <= C_CWC_MAX_POSITIONS
            and all(np.asarray(a).dtype == np.int8 for a in (kept.input, kept.conv, kept.out))
            and _in_place(layer.weight, np.int8) and _in_place(layer.bias, np.int32)
            and _in_place(weight_master, np.int16) and _in_place(bias_master, np.int64))


class CKernels(ReferenceKernels):
    """The C kernels where they apply; methods and arguments as ReferenceKernels (called positionally).

    Above each method, the cases its C code covers; in its body, the array-level C call of the same name
    defined above (a module function: a method body does not see the class's names)."""
    name = "c"

    @_c_for(lambda acc, bias, multiplier, shift, zp, act_min, act_max, *_:
            np.ndim(acc) == 2 and output_dtype(act_min, act_max) == np.int8)
    def requantize_output(acc, bias, multiplier, shift, zp, act_min, act_max, rounding, wide):
        return requantize(acc, bias, multiplier, shift, zp, act_min, act_max, rounding, wide)

    @_c_for(lambda q, zp, bits, out_min, out_max, rounding:
            (bits, out_min, out_max) in C_NORMALIZATIONS and _int8_rows(np.asarray(q)))
    def l2_normalization(q, zp, bits, out_min, out_max, rounding):
        return l2_normalize(q, zp, bits, rounding)

    @_c_for(lambda q, zp: _int8_rows(np.asarray(q)) and q.shape[1] <= C_MAX_GOODNESS_UNITS)
    def goodness(q, zp):
        return goodness(q, zp).astype(np.int64)

    # an int8 zero point keeps |x - zp| <= 255: the C loop's int16 widening and its window bound assume it
    @_c_for(lambda x, zp, filters, bias, multiplier, shift, out_zp, act_min, act_max, *_:
            np.ndim(x) == 4 and np.asarray(x).dtype == np.asarray(filters).dtype == np.int8 and -128 <= zp <= 127
            and np.prod(np.shape(filters)[1:]) <= C_CONV_MAX_WINDOW and output_dtype(act_min, act_max) == np.int8)
    def conv2d(x, zp, filters, bias, multiplier, shift, out_zp, act_min, act_max, stride, pad, out_size, rounding):
        return conv2d(x, zp, filters, bias, multiplier, shift, out_zp, act_min, act_max, stride, pad, out_size,
                      rounding)

    @_c_for(lambda x, size, act_min, act_max: np.ndim(x) == 4 and np.asarray(x).dtype == np.int8)
    def max_pool2d(x, size, act_min, act_max):
        return max_pool2d(x, size, act_min, act_max)

    @_c_for(lambda a, zp, weight, bias, multiplier, shift, out_zp, act_min, norm_bits, rounding:
            norm_bits == NORM_BITS_INT8 and _int8_rows(a) and len(a) <= C_FUSED_MAX_ROWS)
    def ff_layer(a, zp, weight, bias, multiplier, shift, out_zp, act_min, norm_bits, rounding):
        n, out, g = ff_layer(a, zp, weight, bias, multiplier, shift, out_zp, act_min, rounding)
        return n, out, g.astype(np.int64)

    @_c_for(lambda shared, label_pixel, label_columns, bias, multiplier, shift, out_zp, act_min, norm_bits, rounding:
            shared.dtype == np.int32 and norm_bits == NORM_BITS_INT8)
    def label_rows(shared, label_pixel, label_columns, bias, multiplier, shift, out_zp, act_min, norm_bits,
                   rounding):
        return label_rows(shared, label_pixel, label_columns, bias, multiplier, shift, out_zp, act_min, rounding)

    @_c_for(lambda *args: True)
    def update_weight_rows(master, weight, rows, grad, lr_shift, stochastic, seed, stream):
        update_weight_rows(master, weight, rows, grad, lr_shift, stochastic, seed, stream)

    @_c_for(_conv2d_cwc_step_covered)
    def conv2d_cwc_step(layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift, stochastic, seed,
                        stream):
        conv2d_cwc_step(layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift, stochastic, seed,
                        stream)
