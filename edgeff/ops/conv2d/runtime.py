"""The conv block in the integer runtime, inference and its integer update rule: int8 CONV_2D with the BatchNorm
folded into its filters and bias, fused ReLU (the clamp at the output zero point), then MAX_POOL_2D when the block
pools.

NHWC activations and OHWI filters (edgeff.runtime.conv2d); the kernels run on the active kernel set
(edgeff.runtime.backend: the NumPy reference or the C twins), never chosen here. Max pooling after the clamp
commutes with it and with the requantization (both monotone), so pooling the int8 output is pooling the real
one; MAX_POOL_2D keeps the scale and zero point.

Tensors of layer i (edgeff/ops/conv2d/ptq.py makes them): layers.<i>.weight int8 (O, k, k, C), bias int32 (O,),
multiplier / shift int32 (O,), pad_value int8 (C,); its quantization header entry holds in/out scale and zero
point and the fold. The input is padded with pad_value: where that is the input's zero point (TFLite's
padding, the default) the kernel pads itself, skipping the taps outside the input; otherwise (BatchNorm's
zero, `edgeff quantize --conv-padding batchnorm`) the input is padded explicitly and the convolution is VALID.

The integer update rule (the CwC loss of the block's own output, batch 1 as a board; edgeff.runtime.
int_layered_training drives it; `cwc_update` runs it on the active kernel set: its NumPy specification is
edgeff.runtime.conv2d_training, its C twin ef_conv2d_cwc_step in edgeff/csrc/kernels/cwc_train.c). With
e_j = dL/dG_j in Q15 (edgeff.runtime.cwc_loss) and the real relations
a_real = s_out (a - zp_out), x_real = s_in (x - zp_in), W'_real = s_w[o] W_q, b'_real = s_in s_w[o] b_q:

  dL/da_real = e_j / 2^15 * 2 a_real / count          (G_j = the mean square of group j's `count` values)
  back through MAX_POOL_2D to the window's largest value (the first of equals, row-major, as torch's
  indices), and through the fused ReLU's clamp: zero where the int8 output sits at either bound;
  dz[pos, o] = e_j(o) * (a - zp_out) at those positions, 0 elsewhere (int64: |.| <= 2^15 * 255)
  g[o, tap] = sum over positions and rows of dz[pos, o] * (x[pos, tap] - zp_in)   (taps of the padded input)
  h[o]      = sum over positions and rows of dz[pos, o]

so dL/dW'_real = 2 s_in s_out / (count 2^15) * g and dL/db'_real = 2 s_out / (count 2^15) * h. The rule is SGD
on the folded block's real filters and biases at step 2^-lr_shift, written in master units (int16 filters
with 8 fractional bits over the int8 ones, int64 biases with 8 fractional bits over the int32 ones):

  M[o, tap] += round(-g * 2^-lr_shift * 2^-6 s_in^2 / (count M_o))
  B[o]      += round(-h * 2^-lr_shift * 2^-6 / (count M_o))                  M_o = s_in s_w[o] / s_out

the per-channel factors fixed integers (a multiplier per channel over one power of two, `update_scales`,
made once on the host from the file's scales: the formats never change on the device) and the rounding
stochastic (integer_hash noise of (seed, stream), unbiased) or to nearest. The int8 filters are the masters
rounded (edgeff.runtime.master_weights), the int32 bias the bias master rounded; multipliers, shifts,
activation scales and pad_value stay as quantized.

No overflow: a position's term of g is at most 2^15 * 255 * 255 < 2^31 and the sum over one sample's P
gradient positions (the block's output positions) fits in 31 + ceil(log2 P) bits (the board model's block 1:
P = 196, under 2^39); since e_j is one value per channel, a board can sum (a - zp)(x - zp_in) in int32 (at
most P * 65,025 < 2^31 for P <= 33,025, which check_group_size already guarantees) and multiply once in
int64. The per-channel multipliers have 62 minus those bits, so g times one fits int64; a batch whose
summed gradient exceeds the bound is refused, never wrapped.
"""
import math
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.conv2d_training import BIAS_MASTER_LIMIT, Kept, UpdateScales, bias_from_master
from edgeff.runtime.int_fully_connected import ACT_MAX, ACT_MIN, check_requantization, checked_tensor
from edgeff.runtime.master_weights import MASTER_FRAC_BITS, weights_from_masters
from edgeff.runtime.memory_plan import Buffer


@dataclass
class IntConv2d:
    weight: np.ndarray        # int8 OHWI (out, kernel, kernel, in)
    bias: np.ndarray          # int32 (out,)
    multiplier: np.ndarray    # int32 (out,)
    shift: np.ndarray         # int32 (out,)
    out_zero_point: int
    act_min: int              # fused ReLU: the output zero point
    stride: int
    padding: int
    conv_size: tuple          # (height, width) of the convolution's output, before pooling
    pool: int
    pad_value: np.ndarray     # int8 (in,): what the input is padded with, per channel


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntConv2d:
    """Layer `index` (0-based) from model-file tensors and its quantization header entry, checked."""
    p = f"layers.{index}."
    zp = quant["out_zero_point"]
    if not ACT_MIN <= zp <= ACT_MAX:
        raise EdgeFFError(f"{where}: layer {index + 1} output zero point {zp} is outside int8")
    layout = spec.int8_tensors(None)
    weight, bias, multiplier, shift, pad_value = (checked_tensor(where, tensors, p + name, np.dtype(dtype), shape)
                                                  for name, (dtype, shape) in layout.items())
    check_requantization(where, p + "multiplier", multiplier, shift)
    # what the integer rule's masters round back to (master_weights: filters in [-127, 127], a bias master within
    # BIAS_MASTER_LIMIT), as edgeff quantize writes them; else a trained block's first step would move filters and
    # biases that no gradient touched
    if (weight == -128).any() or (bias == np.iinfo(np.int32).min).any():
        raise EdgeFFError(f"{where}: layer {index + 1} holds an int8 filter value of -128 or an int32 bias of -2^31; "
                          "symmetric int8 filters lie in [-127, 127] and biases above -2^31 (quantize the float "
                          "model again with `edgeff quantize`)")
    return IntConv2d(weight, bias, multiplier, shift, zp, max(ACT_MIN, zp), spec.stride, spec.padding,
                     spec.conv_shape[1:], spec.pool, pad_value)


def tensors(layer: IntConv2d, index: int) -> dict:
    p = f"layers.{index}."
    return {p + "weight": layer.weight, p + "bias": layer.bias, p + "multiplier": layer.multiplier,
            p + "shift": layer.shift, p + "pad_value": layer.pad_value}


def pads_explicitly(layer: IntConv2d, zero_point: int) -> bool:
    """Whether the input is padded with pad_value before a VALID convolution: where pad_value is not the input's
    zero point (BatchNorm's padding); else the kernel pads itself with the zero point."""
    return bool(layer.padding) and bool((layer.pad_value != zero_point).any())


def explicit_pad(layer: IntConv2d, zero_point: int) -> int:
    """Rows and columns of pad values written around the input before the convolution (0: the kernel pads)."""
    return layer.padding if pads_explicitly(layer, zero_point) else 0


def padded_input(layer: IntConv2d, q: np.ndarray, zero_point: int) -> tuple[np.ndarray, int]:
    """(input, padding left to the convolution): q padded explicitly with pad_value where that is not the
    input's zero point (the convolution is then VALID), else q and the block's padding."""
    p = layer.padding
    if pads_explicitly(layer, zero_point):
        q = np.pad(q.astype(np.int16) - layer.pad_value, ((0, 0), (p, p), (p, p), (0, 0))) + layer.pad_value
        return q.astype(np.int8), 0
    return q, p


def convolve(layer: IntConv2d, q: np.ndarray, pad: int, zero_point: int, rounding: str) -> np.ndarray:
    """The int8 CONV_2D with fused ReLU of an input padded_input gave: the output before pooling."""
    s = layer.stride
    return backend.kernels().conv2d(q, zero_point, layer.weight, layer.bias, layer.multiplier, layer.shift,
                                    layer.out_zero_point, layer.act_min, ACT_MAX, (s, s), (pad, pad),
                                    layer.conv_size, rounding)


def pool(layer: IntConv2d, out: np.ndarray) -> np.ndarray:
    return backend.kernels().max_pool2d(out, layer.pool, ACT_MIN, ACT_MAX) if layer.pool > 1 else out


def forward(layer: IntConv2d, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    """The block's int8 NHWC output for the int8 NHWC input q (zero point `zero_point`)."""
    q, p = padded_input(layer, q, zero_point)
    return pool(layer, convolve(layer, q, p, zero_point, rounding))


# ---------------------------------------------------------------------- integer training (module docstring)

def forward_kept(layer: IntConv2d, q: np.ndarray, zero_point: int, rounding: str) -> Kept:
    """forward, keeping what the update needs (the same output bits)."""
    x, p = padded_input(layer, q, zero_point)
    conv = convolve(layer, x, p, zero_point, rounding)
    return Kept(x, zero_point, p, conv, pool(layer, conv))


GRADIENT_PRODUCT_BITS = 62   # g times a multiplier stays below 2^62: int64 with a bit to spare for the noise


def _fixed(factors: np.ndarray, gradient_bits: int) -> tuple[np.ndarray, int]:
    """(multipliers, shift): factors ~ multipliers * 2^-shift, the largest multiplier below 2^(62 - bits)."""
    bits = GRADIENT_PRODUCT_BITS - gradient_bits
    if bits < 8:
        raise EdgeFFError(f"a conv block's gradient needs {gradient_bits} bits, leaving its step factors fewer than "
                          "8 bits in int64; the block has too many output positions to train in integers")
    shift = bits - 1 - math.frexp(float(factors.max()))[1]   # the largest factor * 2^shift in [2^(bits-2), 2^(bits-1))
    return np.round(factors * 2.0 ** shift).astype(np.int64), shift


def update_scales(layer: IntConv2d, in_scale: float, out_scale: float, count: int) -> UpdateScales:
    """The rule's per-channel factors (module docstring), from the block's fixed formats, on the host: M_o from
    the stored multiplier and shift, count the values of one class group."""
    real_m = layer.multiplier.astype(np.float64) * 2.0 ** (layer.shift.astype(np.float64) - 31)
    # a channel whose multiplier is 0 outputs its zero point whatever its filter: nothing to train
    bias = np.divide(2.0 ** -6, count * real_m, out=np.zeros_like(real_m), where=real_m > 0)
    weight = bias * in_scale * in_scale
    weight_bits, bias_bits = gradient_bits(layer)
    wm, ws = _fixed(weight, weight_bits)
    bm, bs = _fixed(bias, bias_bits)
    return UpdateScales(wm, ws, bm, bs, weight_bits, bias_bits)


def gradient_bits(layer: IntConv2d) -> tuple[int, int]:
    """(filter, bias) gradient bits of one sample: 2^15 * 255 per dz, times P pooled positions, the filter's
    times |x - zp_in| <= 255 too."""
    positions = int(np.prod(layer.conv_size)) // (layer.pool * layer.pool)
    term = 15 + 8 + math.ceil(math.log2(positions + 1))
    return term + 8, term


def largest_step_multiplier(gradient_bits: int) -> int:
    """The largest step multiplier _fixed makes for a gradient of these bits (its factors times 2^shift stay
    below 2^(bits - 1), rounded): g times it fits int64 with a bit to spare."""
    return 1 << (GRADIENT_PRODUCT_BITS - gradient_bits - 1)


def cwc_update(layer: IntConv2d, kept: Kept, dgoodness: np.ndarray, weight_master: np.ndarray,
               bias_master: np.ndarray, scales: UpdateScales, lr_shift: int, stochastic: bool, seed: int,
               stream: int) -> None:
    """One step of the rule (module docstring) from the block's kept forward and its loss's dL/dG (rows,
    n_classes, Q15), in place: the masters, the int8 filters and the int32 bias, on the active kernel set.
    Rounding draws noise streams `stream` (filters) and `stream + 1` (bias)."""
    backend.kernels().conv2d_cwc_step(layer, kept, dgoodness, weight_master, bias_master, scales, lr_shift,
                                      stochastic, seed, stream)


def initial_masters(layer: IntConv2d) -> tuple[np.ndarray, np.ndarray]:
    """(filter master int16, bias master int64) of a block that starts training: 8 fractional bits."""
    return layer.weight.astype(np.int16) << MASTER_FRAC_BITS, layer.bias.astype(np.int64) << MASTER_FRAC_BITS


def load_masters(layer: IntConv2d, index: int, tensors: dict, where):
    """(filter master, bias master) of layer `index` from model-file tensors, checked against its int8
    filters and bias; None when the tensors hold none (training starts from the block's filters)."""
    p = f"layers.{index}."
    if p + "weight_master" not in tensors:
        return None
    m, b = tensors[p + "weight_master"], tensors.get(p + "bias_master")
    if (m.dtype != np.int16 or m.shape != layer.weight.shape or b is None or b.dtype != np.int64
            or b.shape != layer.bias.shape):
        raise EdgeFFError(f"{where}: master weights of layer {index + 1} do not match its int8 filters")
    if np.abs(b).max(initial=0) > BIAS_MASTER_LIMIT:
        raise EdgeFFError(f"{where}: layer {index + 1}'s bias masters lie beyond the update's clamp "
                          f"(+-{BIAS_MASTER_LIMIT}); the file was edited or is corrupt")
    if (not np.array_equal(weights_from_masters(m), layer.weight)
            or not np.array_equal(bias_from_master(b), layer.bias)):
        raise EdgeFFError(f"{where}: layer {index + 1}'s int8 filters or bias are not the rounding of its "
                          "masters; the file was edited or is corrupt")
    return m, b


def master_tensors(layer: IntConv2d, index: int, weight_master: np.ndarray, bias_master: np.ndarray) -> dict:
    p = f"layers.{index}."
    return {p + "weight_master": weight_master, p + "bias_master": bias_master}


# ---------------------------------------------------------------------- the memory plan of a training step
# What edgeff.runtime.memory_plan lays out for the block. It is here, not in the board_image facet as the dense
# layer's: the plan walks every kind's runtime facet, and flatten, which a layered model may hold, has no board image.

# the Cortex-M DSP path's scratch (edgeff/csrc/kernels/conv2d.c, part_sizes): per output channel its
# constants, then four pixels' im2col block of int16 pairs, four pixels' int32 sums, the row buffer and, where a
# window row is not a multiple of 4 values, the filter widened to int16 pairs
DSP_PIXELS = 4
CHANNEL_CONSTS_BYTES = 32


def dsp_scratch_bytes(spec) -> int:
    """ef_conv2d_s8_scratch_bytes of the block on a core with the DSP extension (0 on the portable path); the
    padding does not change it (the row buffer spans the output's windows, padded or not)."""
    k, c, o = spec.kernel, spec.in_channels, spec.out_channels
    row4 = (k * c + 3) & ~3
    taps4 = k * row4
    row_bytes = (spec.conv_shape[2] - 1) * spec.stride * c + row4
    return (o * CHANNEL_CONSTS_BYTES + DSP_PIXELS * taps4 * 2 + DSP_PIXELS * o * 4 + ((k * row_bytes + 7) & ~7)
            + (0 if row4 == k * c else o * taps4 * 2))


def training_shapes(spec, layer: IntConv2d, in_zero_point: int) -> dict:
    """NHWC shapes (batch 1) of what the block reads and writes in a step: its input as the convolution reads it
    (padded_input's), the convolution's output before pooling (None unpooled: it is the output), the output;
    its DSP scratch bytes and the values of one filter row (the update's gradient row)."""
    c, h, w = spec.in_shape
    p = spec.padding if pads_explicitly(layer, in_zero_point) else 0
    o, ho, wo = spec.conv_shape
    _, hp, wp = spec.out_shape
    return {"input": (h + 2 * p, w + 2 * p, c), "conv": (ho, wo, o) if spec.pool > 1 else None,
            "output": (hp, wp, o), "scratch": dsp_scratch_bytes(spec), "gradient_row": spec.kernel ** 2 * c}


def training_buffers(spec, index: int, trained: bool) -> list:
    """The block's own arrays in a step (layer index + 1): a frozen block's all in flash (it runs inference
    only); a trained block's filters and bias with their masters in SRAM, the rule's fixed step factors
    (update_scales) and its class goodness rescaling in flash. Activations are the plan's (shared buffers)."""
    p, layer, o, k, c = f"layer {index + 1} ", index + 1, spec.out_channels, spec.kernel, spec.in_channels
    filters = (o, k, k, c)
    region = "sram" if trained else "flash"
    out = [Buffer(p + "filters int8", region, "int8", filters, "weights", layer),
           Buffer(p + "bias int32", region, "int32", (o,), "weights", layer),
           Buffer(p + "multiplier + shift", "flash", "int32", (2, o), "constants", layer),
           Buffer(p + "pad values", "flash", "int8", (c,), "constants", layer)]
    if trained:
        out += [Buffer(p + "filter masters int16", "sram", "int16", filters, "update_state", layer),
                Buffer(p + "bias masters int64", "sram", "int64", (o,), "update_state", layer),
                Buffer(p + "step multipliers (filter, bias)", "flash", "int64", (2, o), "constants", layer),
                Buffer(p + "step shifts (filter, bias)", "flash", "int32", (2,), "constants", layer),
                Buffer(p + "class goodness multiplier + shift", "flash", "int32", (2,), "constants", layer)]
    return out
