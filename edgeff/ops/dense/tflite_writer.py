"""The dense layer in the int8 TFLite flatbuffer (edgeff/export/tflite_int8.py): L2_NORMALIZATION of the int8
input (scale 2^-7, zero point 0), then FULLY_CONNECTED (or the equivalent 1x1 CONV_2D) with per-channel int8
weights, an int32 bias and the ReLU fused, to the layer's int8 output.

The weights and biases are stored once, as tensors layers.<i>.weight / layers.<i>.bias, and shared by the
multi-pass and the one-pass subgraphs. Their float32 weight scales are the ones from which TFLite derives
exactly the layer's integer requantization multipliers (tflite_int8.weight_scales).
"""
from edgeff.export.onnx_int8 import raise_unsupported
from edgeff.export.tflite_int8 import NORM_SCALE
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import float32


def check_exportable(layer, number: int, where: str):
    """Refuse the 16x8 form (int16 normalized inputs), which no TFLite graph has."""
    if layer.norm_bits != NORM_BITS_INT8:
        raise_unsupported(where, f"layer {number} has int16 normalized inputs (norm_bits {layer.norm_bits}, a 16x8 "
                                 "FC), and TFLite's L2_NORMALIZATION writes int8 or float32 only (TFLite Micro's "
                                 "l2norm.cc), so the 16x8 form has no TFLite graph",
                          "quantize it with --norm-bits 7")


def constants(g, spec, index: int, layer, quant: dict) -> tuple:
    """(weight tensor, bias tensor, output scale) of layer `index` (0-based): the runtime's IntLayer `layer` with
    its entry `quant` of the quantization header, written into g, the export's TFLiteGraph."""
    out_scale = float32(quant["out_scale"])
    return (*g.layer_constants(layer, NORM_SCALE, out_scale, f"layers.{index}"), out_scale)


def forward(g, spec, layer, consts: tuple, a: int, n_rows) -> tuple[int, int]:
    """(output tensor, its zero point) of the layer on n_rows int8 rows a; consts are the layer's, from
    `constants`."""
    weight, bias, out_scale = consts
    n = g.l2_normalize(a, n_rows, spec.in_features)
    return g.fully_connected(n, n_rows, layer, weight, bias, out_scale, relu=True), layer.out_zero_point
