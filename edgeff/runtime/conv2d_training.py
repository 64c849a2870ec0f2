"""The channel-wise competitive (CwC) rule of a conv block in integers, the NumPy specification: the exact
integer gradient sums of the block's own loss and the update of its masters, int8 filters, bias masters and int32
bias (edgeff/ops/conv2d/runtime.py's docstring derives the rule and its overflow bounds; update_scales there makes
the per-channel step factors once on the host).

The kernel sets run it as `conv2d_cwc_step` (edgeff.runtime.reference_kernels runs `step` here; the C set runs
ef_conv2d_cwc_step, edgeff/csrc/kernels/cwc_train.c, on one sample, the board's rule, and hands a batch here).
`layer` is the block as the conv2d runtime facet loads it (edgeff.ops.conv2d.runtime.IntConv2d): this module
reads its weight, bias, out_zero_point, act_min, stride and pool and writes weight and bias.
"""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import conv2d
from edgeff.runtime.int_fully_connected import ACT_MAX
from edgeff.runtime.master_weights import MASTER_FRAC_BITS, round_shift, weights_from_masters
from edgeff.runtime.requantize import rounding_divide_by_pot

BIAS_MASTER_LIMIT = (1 << 31 << MASTER_FRAC_BITS) - 1 - (1 << (MASTER_FRAC_BITS - 1))   # rounds into int32


@dataclass
class Kept:
    """What one forward pass keeps for the update: the (padded) input, its zero point and remaining padding,
    the convolution's output before pooling and the block's output."""
    input: np.ndarray
    zero_point: int
    pad: int
    conv: np.ndarray
    out: np.ndarray


@dataclass(frozen=True)
class UpdateScales:
    """The per-channel factors of the rule in integers: weight step factor[o] = weight_multiplier[o] *
    2^-weight_shift, bias step factor[o] = bias_multiplier[o] * 2^-bias_shift (times 2^-lr_shift)."""
    weight_multiplier: np.ndarray   # int64 (out,)
    weight_shift: int
    bias_multiplier: np.ndarray     # int64 (out,)
    bias_shift: int
    weight_gradient_bits: int       # |g| < 2^this for one sample, so |g * weight_multiplier| < 2^62
    bias_gradient_bits: int


def bias_from_master(master: np.ndarray) -> np.ndarray:
    """The int32 bias a bias master (8 fractional bits) stands for: RoundingDivideByPOT(master, 8)."""
    return rounding_divide_by_pot(master, MASTER_FRAC_BITS).astype(np.int32)


def dz(layer, kept: Kept, dgoodness: np.ndarray) -> np.ndarray:
    """(rows, conv h, conv w, out) int64: dL/da in integers at the positions the output came from, dgoodness
    (rows, n_classes) Q15."""
    n, out_h, out_w, o = kept.conv.shape
    groups = dgoodness.shape[1]
    a = kept.out.astype(np.int64)
    live = (kept.out > layer.act_min) & (kept.out < ACT_MAX)     # the ReLU's clamp passes no gradient
    per_channel = np.repeat(dgoodness, o // groups, axis=1)      # channel c is in group c // (out / n), as NHWC
    value = np.where(live, (a - layer.out_zero_point) * per_channel[:, None, None, :], 0)
    s = layer.pool
    ph, pw = value.shape[1:3]
    windows = (kept.conv[:, :ph * s, :pw * s].reshape(n, ph, s, pw, s, o).transpose(0, 1, 3, 2, 4, 5)
               .reshape(n, ph, pw, s * s, o))
    first = windows.argmax(axis=3)[:, :, :, None]               # the first largest, as torch's max_pool2d
    spread = np.zeros(windows.shape, np.int64)
    np.put_along_axis(spread, first, value[:, :, :, None], axis=3)
    out = np.zeros((n, out_h, out_w, o), np.int64)
    out[:, :ph * s, :pw * s] = spread.reshape(n, ph, pw, s, s, o).transpose(0, 1, 3, 2, 4, 5).reshape(
        n, ph * s, pw * s, o)
    return out


def gradient_rows(layer, kept: Kept, dgoodness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g (rows, out, k*k*in) in OHWI order, h (rows, out)) int64: each row's exact integer gradient sums, from
    the block's own forward and its own loss's dL/dG (Q15) only."""
    d = dz(layer, kept, dgoodness)
    n, o = len(d), d.shape[-1]
    kh, kw = layer.weight.shape[-3:-1]
    s = layer.stride
    cols = conv2d.patches(kept.input, kept.zero_point, (kh, kw), (s, s), (kept.pad, kept.pad), kept.conv.shape[1:3])
    cols = cols.reshape(n, -1, cols.shape[1]).astype(np.int64) - kept.zero_point
    rows = d.reshape(n, -1, o)
    return rows.transpose(0, 2, 1) @ cols, rows.sum(axis=1)


def gradient(layer, kept: Kept, dgoodness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g (out, k*k*in), h (out,)) int64: gradient_rows summed over the rows (a batch's one update)."""
    g, h = gradient_rows(layer, kept, dgoodness)
    return g.sum(axis=0), h.sum(axis=0)


def update(layer, weight_master: np.ndarray, bias_master: np.ndarray, scales: UpdateScales, g: np.ndarray,
           h: np.ndarray, lr_shift: int, stochastic: bool, seed: int, stream: int) -> None:
    """One step of the rule from gradient()'s sums, in place: the masters, the int8 filters and the int32 bias.
    Rounding draws noise streams `stream` (filter element (o, t) at index o * taps + t) and `stream + 1` (bias o
    at o), the board's order; so g (..., out, taps) and h (..., out) may lead with axes of blocks stepped alike
    (layer.weight, bias and the masters with the same axes). A summed gradient past the int64 bound (a batch's;
    one sample's cannot reach it) is refused before anything is touched."""
    for name, values, bits in (("filter", g, scales.weight_gradient_bits), ("bias", h, scales.bias_gradient_bits)):
        if values.size and np.abs(values).max() >= 1 << bits:
            raise EdgeFFError(f"a conv block's summed {name} gradient reached 2^{bits}, past what its int64 step "
                              "allows; train with a smaller --batch-size (1 is the board's rule)")
    o, taps = g.shape[-2:]
    index = np.broadcast_to(np.arange(o * taps).reshape(o, taps), g.shape)
    step = round_shift(-g * scales.weight_multiplier[:, None], lr_shift + scales.weight_shift, stochastic, seed,
                       stream, index)
    flat = weight_master.reshape(g.shape)
    flat[...] = np.clip(flat.astype(np.int64) + step, -32768, 32767)
    layer.weight[...] = weights_from_masters(weight_master)
    bias_step = round_shift(-h * scales.bias_multiplier, lr_shift + scales.bias_shift, stochastic, seed, stream + 1,
                            np.broadcast_to(np.arange(o), h.shape))
    bias_master[...] = np.clip(bias_master + bias_step, -BIAS_MASTER_LIMIT, BIAS_MASTER_LIMIT)
    layer.bias[...] = bias_from_master(bias_master)


def step(layer, kept: Kept, dgoodness: np.ndarray, weight_master: np.ndarray, bias_master: np.ndarray,
         scales: UpdateScales, lr_shift: int, stochastic: bool, seed: int, stream: int) -> None:
    """The block's whole update on the rows of one forward: gradient() summed over them, then update()."""
    update(layer, weight_master, bias_master, scales, *gradient(layer, kept, dgoodness), lr_shift, stochastic,
           seed, stream)
