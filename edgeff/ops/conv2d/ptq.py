"""The conv block's post-training quantization: the BatchNorm folded into the convolution, per-output-channel
int8 filters, int32 bias, requantization multipliers, and the calibrated output range (TFLite semantics, see
edgeff.runtime.conv2d and edgeff/ops/conv2d/runtime.py).

The fold. The block is BatchNorm -> Conv -> ReLU -> MaxPool, with BatchNorm's inference form
BN(x)_c = a_c * x_c + t_c, a = gamma / sqrt(running_var + eps), t = beta - running_mean * a. Since the
convolution is linear,

    conv(BN(x))[o] = sum_{c, ky, kx} W[o, c, ky, kx] * a_c * x + (b[o] + sum_{c, ky, kx} W[o, c, ky, kx] * t_c)

so W'[o, c, ...] = W[o, c, ...] * a_c and b'[o] = b[o] + sum W[o, c, ...] * t_c, and the integer block is one
CONV_2D of the raw input. This is exact where the filter window lies inside the input, and NOT at a padded
border: the int8 convolution pads its input with the input's zero point, which is the pre-BatchNorm value 0,
while torch pads BatchNorm's output with 0. A padded tap therefore contributes W' * 0 = 0 to the folded
block and W * 0 = 0 to torch's, but the folded bias b' still counts that tap's W * t_c: outputs within
`padding` of a border differ by the sum over their padded taps of W[o, c, ky, kx] * t_c. (No TFLite op pads
with another value, and a per-position bias would not be a CONV_2D.) `fold` gives the block with exactly
these semantics, in float64, so the fold's share of the PTQ gap is measured apart from the quantization's
(benchmarks/conv_int8.py, docs/conv_int8.md); the calibration runs on it, as it is what the integers compute.

The quantization, on the folded block: input a (int8, scale s_in, zero point z_in: the image's 1/255 and
-128, or the previous layer's output), filters OHWI with s_w[o] = max|W'[o]| / 127, bias round(b' / (s_in *
s_w[o])) int32, M[o] = s_in * s_w[o] / s_out from the float32 scales as TFLite derives it, fused ReLU; output
int8 with zero point -128 and s_out the `percentile` of the block's calibration outputs over 255 (the pooled
outputs: with the maximum, the default, the same as the unpooled ones).
"""
import copy

import numpy as np
import torch
from torch import nn

from edgeff.errors import EdgeFFError
from edgeff.quant.fully_connected import per_channel, relu_output_scale
from edgeff.runtime.requantize import INT32_MAX, float32

ACT_ZERO_POINT = -128
FOLD = ("BatchNorm folded into the filters and bias: W' = W * a_c, b' = b + sum W * t_c, a = gamma / "
        "sqrt(running_var + eps), t = beta - running_mean * a")
BORDER = ("the int8 convolution pads its input with the zero point (pre-BatchNorm 0) where torch pads "
          "BatchNorm's output with 0: outputs within the padding of a border differ by the padded taps' sum "
          "of W * t_c")


def folded_parameters(module) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') float64 of a trained block (module docstring): W' (out, in, k, k), b' (out,)."""
    norm, conv = module.norm, module.conv
    a = norm.weight.detach().double() / torch.sqrt(norm.running_var.detach().double() + norm.eps)
    t = norm.bias.detach().double() - norm.running_mean.detach().double() * a
    w = conv.weight.detach().double()
    return ((w * a[None, :, None, None]).numpy(),
            (conv.bias.detach().double() + (w * t[None, :, None, None]).sum(dim=(1, 2, 3))).numpy())


def fold(module, spec):
    """The block as the integer convolution computes it, in float64: no BatchNorm, the folded filters and
    bias, the input padded with (pre-BatchNorm) zeros."""
    w, b = folded_parameters(module)
    block = copy.deepcopy(module).double()
    block.norm = nn.Identity()
    with torch.no_grad():
        block.conv.weight.copy_(torch.from_numpy(w))
        block.conv.bias.copy_(torch.from_numpy(b))
    return block


def quantize(spec, module, index: int, activities: np.ndarray, input_quant: dict, qat: bool, percentile: float,
             norm_bits: int, rounding: str):
    """The int8 tensors (layers.<index>.*) and the header entry of one folded block (`fold`'s module).

    activities are its float outputs on the calibration inputs; input_quant the input's scale and zero
    point. qat and norm_bits do not apply (a conv block trains in float and normalizes with BatchNorm)."""
    w = module.conv.weight.detach().numpy().astype(np.float64)      # (O, C, k, k), folded
    b = module.conv.bias.detach().numpy().astype(np.float64)
    in_scale, out_scale = input_quant["scale"], relu_output_scale(activities, percentile)
    ohwi = w.transpose(0, 2, 3, 1)
    q, scales, mult, shift = per_channel(ohwi.reshape(len(w), -1), in_scale, out_scale)
    bias = np.round(b / (scales.astype(np.float64) * float32(in_scale)))
    if np.abs(bias).max() > INT32_MAX:
        raise EdgeFFError(f"layer {index + 1} (conv2d): a folded bias does not fit int32 at its scale; the "
                          "block's BatchNorm or bias is far out of range of its filters")
    name = f"layers.{index}."
    tensors = {name + "weight": q.reshape(ohwi.shape), name + "weight_scale": scales,
               name + "bias": bias.astype(np.int32), name + "multiplier": mult, name + "shift": shift}
    fold_record = {"batchnorm": FOLD, "padding": spec.padding}
    if spec.padding:
        fold_record["border"] = BORDER
    return tensors, {"out_scale": out_scale, "out_zero_point": ACT_ZERO_POINT, "fold": fold_record}
