"""The conv block in the int8 TFLite flatbuffer (edgeff/export/tflite_layered.py): its input padded as the
integer runtime pads it, CONV_2D (per-channel int8 OHWI filters, int32 bias, fused RELU: the clamp at the output
zero point), then MAX_POOL_2D when the block pools. NHWC tensors (n_rows, H, W, C).

The padding (edgeff/ops/conv2d/runtime.py): where every channel's pad_value is the input's zero point (TFLite's
own padding), CONV_2D's SAME when SAME's geometry (pad before, output size: ComputePaddingHeightWidth) is the
block's explicit padding, else a PAD (which pads a quantized tensor with its zero point) and VALID. Where it is
not (BatchNorm's zero, `edgeff quantize --conv-padding batchnorm`), a per-channel border is built from int8
constants and CONCATENATED around the input, then VALID: TFLite has no per-channel pad value (PADV2 takes one
per tensor). The constants are a block of rows (1, p, W, C) and one of columns (1, H + 2p, p, C) holding each
channel's pad_value; MAXIMUM then MINIMUM against a one-value-per-image slice of the input broadcast them to
the batch (max(v, P) >= P, so min(max(v, P), P) = P exactly), so the file runs at any batch size in LiteRT.
Every tensor of the border has the input's scale and zero point, so MAXIMUM, MINIMUM and CONCATENATION copy
int8 values without requantizing.

TFLite derives each channel's requantization multiplier from float32 scales (input, filter, output): the
filter scales are the ones from which it derives exactly the block's integer multipliers
(tflite_int8.weight_scales).
"""
from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeff.runtime.conv2d import geometry
from edgeff.runtime.requantize import float32

Op, Options = schema.BuiltinOperator, schema.BuiltinOptions


@dataclass
class Constants:
    weight: int
    bias: int
    in_scale: float
    in_zero_point: int
    out_scale: float
    border: tuple | None    # (rows, columns) constant tensors of a batchnorm-padded block, else None


def check_exportable(layer, number: int, where: str):
    """Every conv block the integer runtime runs has a TFLite form (stride, padding and pad value alike)."""


def _batchnorm_padded(spec, layer, in_zero_point: int) -> bool:
    return bool(spec.padding) and bool((layer.pad_value != in_zero_point).any())


def constants(g, spec, index: int, layer, quant: dict) -> Constants:
    """The filters, bias and border constants of block `index` (0-based): the runtime's IntConv2d `layer` with
    its entry `quant` of the quantization header, written into g, the export's TFLiteGraph."""
    in_scale, out_scale, zp = float32(quant["in_scale"]), float32(quant["out_scale"]), quant["in_zero_point"]
    weight, bias = g.layer_constants(layer, in_scale, out_scale, f"layers.{index}", shape=layer.weight.shape)
    border = None
    if _batchnorm_padded(spec, layer, zp):
        c, h, w = spec.in_shape
        p = spec.padding
        values = layer.pad_value.astype(np.int8)
        border = tuple(g.w.tensor(f"layers.{index}.pad_{what}", schema.TensorType.INT8, shape,
                                  np.broadcast_to(values, shape), in_scale, zp)
                       for what, shape in (("rows", (1, p, w, c)), ("columns", (1, h + 2 * p, p, c))))
    return Constants(weight, bias, in_scale, zp, out_scale, border)


def _border(g, x, n_rows, spec, k: Constants) -> int:
    """x (n_rows, H, W, C) with the constant border of `k` around it: (n_rows, H + 2p, W + 2p, C)."""
    c, h, w = spec.in_shape
    p = spec.padding
    q = k.in_scale, k.in_zero_point
    one = g.batch_slice(x, n_rows, *q)
    minmax = Options.MaximumMinimumOptions, schema.MaximumMinimumOptionsT()

    def broadcast(constant, shape):
        wide = g.binary(Op.MAXIMUM, *minmax, one, constant, shape, *q)
        return g.binary(Op.MINIMUM, *minmax, wide, constant, shape, *q)

    rows = broadcast(k.border[0], [n_rows, p, w, c])
    x = g.concat([rows, x, rows], 1, [n_rows, h + 2 * p, w, c], *q)
    columns = broadcast(k.border[1], [n_rows, h + 2 * p, p, c])
    return g.concat([columns, x, columns], 2, [n_rows, h + 2 * p, w + 2 * p, c], *q)


def forward(g, spec, layer, k: Constants, a: int, n_rows) -> tuple[int, int]:
    """(output tensor, its zero point) of the block on the NHWC int8 batch a of n_rows images."""
    c, h, w = spec.in_shape
    p, s = spec.padding, spec.stride
    o, oh, ow = spec.conv_shape
    padding = schema.Padding.VALID
    if k.border is not None:
        a = _border(g, a, n_rows, spec, k)
    elif p and all(geometry(n, spec.kernel, s, "same") == (p, out) for n, out in ((h, oh), (w, ow))):
        padding = schema.Padding.SAME
    elif p:
        a = g.pad(a, [[0, 0], [p, p], [p, p], [0, 0]], [n_rows, h + 2 * p, w + 2 * p, c], k.in_scale,
                  k.in_zero_point)
    out = g.conv_2d(a, k.weight, k.bias, [n_rows, oh, ow, o], k.out_scale, layer.out_zero_point, s, padding,
                    relu=True)
    if spec.pool > 1:
        _, ph, pw = spec.out_shape
        out = g.max_pool_2d(out, spec.pool, [n_rows, ph, pw, o], k.out_scale, layer.out_zero_point)
    return out, layer.out_zero_point
