"""Flatten in the int8 TFLite flatbuffer (edgeff/export/tflite_layered.py): the NHWC activity as rows in torch's
channel-major order (TRANSPOSE to NCHW, then RESHAPE), as the integer runtime flattens it, so the dense layer
after it keeps its trained weights and its class groups stay contiguous. The input's scale and zero point
kept. (A board could fold the transpose into the next layer's weight columns instead; the values are the
same.)"""
from edgeff.runtime.requantize import float32


def check_exportable(layer, number: int, where: str):
    """TRANSPOSE and RESHAPE express every flatten the integer runtime runs."""


def constants(g, spec, index: int, layer, quant: dict) -> tuple:
    """No tensors: the (scale, zero point) its output keeps."""
    return float32(quant["out_scale"]), quant["out_zero_point"]


def forward(g, spec, layer, consts: tuple, a: int, n_rows) -> tuple[int, int]:
    return g.channel_major_rows(a, n_rows, spec.in_shape, *consts), layer.out_zero_point
