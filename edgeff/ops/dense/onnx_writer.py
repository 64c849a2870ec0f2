"""The dense layer in the ONNX exports: normalize the input, Linear, ReLU, as ONNX nodes and initializers.

The float export (edgeff/export/onnx_float.py) writes the layer in float32 on the builder's float helpers
(edgeff.export.onnx_graph); the int8 export (edgeff/export/onnx_int8.py) writes it from the integer kernels
of its IntegerGraph: TFLite's L2 normalization to int8, then the int8 FullyConnected with the fused ReLU
clamp, bit-exact with the integer runtime's layer.
"""
import numpy as np

from edgeff.export.onnx_graph import EPS, GraphBuilder
from edgeff.export.onnx_int8 import raise_unsupported
from edgeff.runtime.l2_normalization import NORM_BITS_INT8


def float_parameters(spec, index: int, tensors: dict) -> tuple:
    """(weight, bias) float32 of layer `index` (0-based), from the float model file's tensors."""
    return (tensors[f"layers.{index}.weight"].astype(np.float32), tensors[f"layers.{index}.bias"].astype(np.float32))


def float_forward(g: GraphBuilder, spec, params: tuple, x: str) -> str:
    """ReLU(normalize(x) @ weight.T + bias) for rows x."""
    weight, bias = params
    return g.op("Relu", g.linear(g.normalize(x, spec.normalization), weight, bias))


def float_every_label_activities(g: GraphBuilder, spec, params: tuple, pixels: str, n_classes: int,
                                 label_value: float) -> str:
    """(N * n_classes, out) activities of the first layer for every one-hot label of value label_value, image-major.

    pixels holds the images without their label pixels (the first n_classes inputs). Every labelled copy has the
    squared length |pixels|^2 + label_value^2, so this is one shared MatMul over the pixels plus a rank-1
    correction per label (label_value * label column of the weight, scaled by the shared normalizer), as
    edgeff/ops/dense/torch_module.py computes it.
    """
    weight, bias = params
    c = n_classes
    divisor = spec.in_features if spec.normalization == "rms" else 1
    sumsq = g.op("ReduceSum", g.op("Mul", pixels, pixels), g.i64([1]), keepdims=1)
    labelled_sumsq = g.op("Add", sumsq, g.f32(label_value * label_value))
    scale = g.op("Reciprocal", g.op("Sqrt", g.op("Add", g.op("Div", labelled_sumsq, g.f32(divisor)), g.f32(EPS))))
    shared = g.op("Add", g.op("Mul", g.op("MatMul", pixels, g.f32(np.ascontiguousarray(weight[:, c:].T))), scale),
                  g.f32(bias))                                                     # (N, out)
    label_cols = g.f32((label_value * weight[:, :c].T)[None])                       # (1, C, out)
    h = g.op("Relu", g.op("Add", g.op("Unsqueeze", shared, g.i64([1])),
                          g.op("Mul", g.op("Unsqueeze", scale, g.i64([2])), label_cols)))    # (N, C, out)
    return g.op("Reshape", h, g.i64([-1, spec.out_features]))


def check_int8_exportable(layer, number: int, where: str):
    """Refuse the 16x8 form (int16 normalized inputs), which the int8 ONNX graph does not spell out."""
    if layer.norm_bits != NORM_BITS_INT8:
        raise_unsupported(where, f"layer {number} has int16 normalized inputs (norm_bits {layer.norm_bits}, "
                                 "a 16x8 FC)", "quantize it with --norm-bits 7")


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    """(output, its zero point) of the integer layer on int8 rows a of zero point zero_point; g is the int8
    export's IntegerGraph and layer the runtime's IntLayer."""
    return g.fully_connected(g.l2_normalize(a, zero_point, rounding), layer, rounding), layer.out_zero_point
