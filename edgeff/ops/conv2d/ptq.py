"""The conv block's post-training quantization: the BatchNorm folded into the convolution, per-output-channel
int8 filters, int32 bias, requantization multipliers, the padding value, and the calibrated output range
(TFLite semantics, see edgeff.runtime.conv2d and edgeff/ops/conv2d/runtime.py).

The fold. The block is BatchNorm -> Conv -> ReLU -> MaxPool, with BatchNorm's inference form
BN(x)_c = a_c * x_c + t_c, a = gamma / sqrt(running_var + eps), t = beta - running_mean * a. Since the
convolution is linear,

    conv(BN(x))[o] = sum_{c, ky, kx} W[o, c, ky, kx] * a_c * x + (b[o] + sum_{c, ky, kx} W[o, c, ky, kx] * t_c)

so W'[o, c, ...] = W[o, c, ...] * a_c and b'[o] = b[o] + sum W[o, c, ...] * t_c, and the integer block is one
CONV_2D of the raw input. This is exact where the filter window lies inside the input. At a padded border
it depends on what the input is padded with (`padding_value`, `edgeff quantize --conv-padding`):

  zero-point  TFLite's CONV_2D padding: the input's zero point, the pre-BatchNorm value 0. NOT exact: torch
              pads BatchNorm's OUTPUT with 0, so an output within `padding` of a border differs by the sum
              over its padded taps of W[o, c, ky, kx] * t_c: 10 points of the board model's accuracy
              (docs/conv_int8.md). Kept to measure that.
  batchnorm   the pre-BatchNorm value that BatchNorm maps to 0, x0_c = -t_c / a_c (0 where a_c = 0, whose
              folded filters are 0), per channel, rounded to the input's int8 grid and clamped to int8: the
              input padded explicitly, then a VALID CONV_2D. Exact up to that rounding (and the clamp where
              x0_c lies outside the input's range). The default.

`fold` gives the block with the chosen semantics in float64 (the batchnorm padding unrounded, so exactly
torch's), so the fold's share of the PTQ gap is measured apart from the quantization's (benchmarks/
conv_int8.py, docs/conv_int8.md); the calibration runs on it, as it is what the integers compute.

The quantization, on the folded block: input a (int8, scale s_in, zero point z_in: the image's 1/255 and
-128, or the previous layer's output), filters OHWI with s_w[o] = max|W'[o]| / 127, bias round(b' / (s_in *
s_w[o])) int32, M[o] = s_in * s_w[o] / s_out from the float32 scales as TFLite derives it, fused ReLU; output
int8 with zero point -128 and s_out the `percentile` of the block's calibration outputs over 255 (the pooled
outputs: with the maximum, the default, the same as the unpooled ones).

`dequantize` goes back: the block as the int8 model computes it, in real numbers (its int8 filters, int32 bias and
padding times their scales, its output saturating where the int8 code does), unrounded. Fine-tuning that float
block is the float twin of the device's integer training from the same int8 model (benchmarks/conv_finetune.py).
"""
import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeff.errors import EdgeFFError
from edgeff.quant.fully_connected import per_channel, relu_output_scale
from edgeff.runtime.int_fully_connected import ACT_MAX
from edgeff.runtime.requantize import INT32_MAX, float32

ACT_ZERO_POINT = -128
PADDINGS = ("zero-point", "batchnorm")
FOLD = ("BatchNorm folded into the filters and bias: W' = W * a_c, b' = b + sum W * t_c, a = gamma / "
        "sqrt(running_var + eps), t = beta - running_mean * a")
BORDER = {"zero-point": "the input is padded with its zero point (pre-BatchNorm 0) where torch pads BatchNorm's "
                        "output with 0: outputs within the padding of a border differ by the padded taps' sum of "
                        "W * t_c",
          "batchnorm": "the input is padded with pad_value, per channel the pre-BatchNorm value -t_c / a_c that "
                       "BatchNorm maps to 0 (torch's padding), rounded to the input's int8 grid"}


class PadWith(nn.Module):
    """Pads an NCHW input by `padding` with one value per channel (the folded block's input padding)."""

    def __init__(self, values: torch.Tensor, padding: int):
        super().__init__()
        self.register_buffer("values", values)
        self.padding = padding

    def forward(self, x):
        p = self.padding
        shifted = x - self.values[None, :, None, None]   # pad the shifted input with 0, then shift back
        return F.pad(shifted, (p, p, p, p)) + self.values[None, :, None, None]


class SaturatingConv(nn.Module):
    """A convolution whose outputs stop at `high`: the largest output the int8 block can write (code 127) in
    real units. The block's fused ReLU follows it, and ReLU(min(z, high)) = min(ReLU(z), high), so the two give
    the int8 output's range [0, high]."""

    def __init__(self, conv: nn.Conv2d, high: float):
        super().__init__()
        self.conv, self.high = conv, high

    def forward(self, x):
        return torch.clamp(self.conv(x), max=self.high)


def _affine(module) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, t) float64 of the block's BatchNorm: BN(x) = a * x + t per channel."""
    norm = module.norm
    a = norm.weight.detach().double() / torch.sqrt(norm.running_var.detach().double() + norm.eps)
    return a, norm.bias.detach().double() - norm.running_mean.detach().double() * a


def folded_parameters(module) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') float64 of a trained block (module docstring): W' (out, in, k, k), b' (out,)."""
    a, t = _affine(module)
    w = module.conv.weight.detach().double()
    return ((w * a[None, :, None, None]).numpy(),
            (module.conv.bias.detach().double() + (w * t[None, :, None, None]).sum(dim=(1, 2, 3))).numpy())


def batchnorm_zero(module) -> np.ndarray:
    """Per input channel the pre-BatchNorm value BatchNorm maps to 0 (0 where its scale a is 0)."""
    a, t = _affine(module)
    return torch.where(a != 0, -t / torch.where(a != 0, a, 1.0), 0.0).numpy()


def fold(module, spec, padding: str = "batchnorm"):
    """The block as the integer convolution computes it, in float64: no BatchNorm, the folded filters and
    bias, the input padded with pre-BatchNorm zeros (`padding` "zero-point") or with BatchNorm's zero
    ("batchnorm", then a convolution without padding)."""
    if padding not in PADDINGS:
        raise EdgeFFError(f"conv padding {padding!r} must be one of {', '.join(PADDINGS)}")
    w, b = folded_parameters(module)
    block = copy.deepcopy(module).double()
    block.norm = nn.Identity()
    with torch.no_grad():
        block.conv.weight.copy_(torch.from_numpy(w))
        block.conv.bias.copy_(torch.from_numpy(b))
    if padding == "batchnorm" and spec.padding:
        block.norm = PadWith(torch.from_numpy(batchnorm_zero(module)), spec.padding)
        block.conv.padding = (0, 0)
    return block


def quantize(spec, module, index: int, activities: np.ndarray, input_quant: dict, qat: bool, percentile: float,
             norm_bits: int, rounding: str):
    """The int8 tensors (layers.<index>.*) and the header entry of one folded block (`fold`'s module).

    activities are its float outputs on the calibration inputs; input_quant the input's scale and zero
    point. qat and norm_bits do not apply (a conv block trains in float and normalizes with BatchNorm)."""
    w = module.conv.weight.detach().numpy().astype(np.float64)      # (O, C, k, k), folded
    b = module.conv.bias.detach().numpy().astype(np.float64)
    in_scale, in_zp = input_quant["scale"], input_quant["zero_point"]
    out_scale = relu_output_scale(activities, percentile)
    ohwi = w.transpose(0, 2, 3, 1)
    q, scales, mult, shift = per_channel(ohwi.reshape(len(w), -1), in_scale, out_scale)
    bias = np.round(b / (scales.astype(np.float64) * float32(in_scale)))
    if np.abs(bias).max() > INT32_MAX:
        channels = np.flatnonzero(np.abs(bias) > INT32_MAX).tolist()
        raise EdgeFFError(f"layer {index + 1} (conv2d): the folded bias of output channel(s) {channels} does not fit "
                          "int32 at its scale (input scale x the channel's filter scale, max|filter| / 127): their "
                          "filters are nearly zero beside their bias; prune those channels or retrain")
    padding = "batchnorm" if isinstance(module.norm, PadWith) else "zero-point"
    if padding == "batchnorm":
        pad = np.clip(np.round(in_zp + module.norm.values.numpy() / float32(in_scale)), -128, 127)
    else:
        pad = np.full(spec.in_channels, in_zp)
    name = f"layers.{index}."
    tensors = {name + "weight": q.reshape(ohwi.shape), name + "weight_scale": scales,
               name + "bias": bias.astype(np.int32), name + "multiplier": mult, name + "shift": shift,
               name + "pad_value": pad.astype(np.int8)}
    fold_record = {"batchnorm": FOLD, "padding": spec.padding}
    if spec.padding:
        fold_record |= {"padding_value": padding, "border": BORDER[padding]}
    return tensors, {"out_scale": out_scale, "out_zero_point": ACT_ZERO_POINT, "fold": fold_record}


def dequantize(module, spec, index: int, tensors: dict, entry: dict):
    """The trained block as the int8 model file's block `index` computes it, in float64 without its roundings:
    filters q[o] * s_w[o], bias q_b[o] * s_w[o] * s_in (the scales `quantize` rounded them at), the input padded
    with pad_value's real value, and the output saturating at code 127 (a calibrated range the float block does
    not have). entry is the file's quantization entry of the layer."""
    name = f"layers.{index}."
    in_scale, in_zp = float32(entry["in_scale"]), entry["in_zero_point"]
    w_scale = tensors[name + "weight_scale"].astype(np.float64)
    # fold gives the block's structure with the file's border semantics; its folded values are overwritten below
    block = fold(module, spec, entry["fold"].get("padding_value", "zero-point"))
    with torch.no_grad():
        w = tensors[name + "weight"].astype(np.float64).transpose(0, 3, 1, 2) * w_scale[:, None, None, None]
        block.conv.weight.copy_(torch.from_numpy(w))
        block.conv.bias.copy_(torch.from_numpy(tensors[name + "bias"].astype(np.float64) * w_scale * in_scale))
        if isinstance(block.norm, PadWith):
            pad = (tensors[name + "pad_value"].astype(np.float64) - in_zp) * in_scale
            block.norm.values.copy_(torch.from_numpy(pad))
    block.conv = SaturatingConv(block.conv, (ACT_MAX - entry["out_zero_point"]) * entry["out_scale"])
    return block
