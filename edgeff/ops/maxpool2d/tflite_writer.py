"""Max pooling in the int8 TFLite flatbuffer (edgeff/export/tflite_layered.py): MAX_POOL_2D over size x size
windows at stride size, VALID (a remainder row or column is dropped, as torch floors), no fused activation;
the input's scale and zero point kept, as the integer runtime keeps them."""
from edgeff.runtime.requantize import float32


def check_exportable(layer, number: int, where: str):
    """MAX_POOL_2D expresses every pooling the integer runtime runs."""


def constants(g, spec, index: int, layer, quant: dict) -> tuple:
    """No tensors: the (scale, zero point) its output keeps."""
    return float32(quant["out_scale"]), quant["out_zero_point"]


def forward(g, spec, layer, consts: tuple, a: int, n_rows) -> tuple[int, int]:
    c, h, w = spec.out_shape
    return g.max_pool_2d(a, spec.size, [n_rows, h, w, c], *consts), layer.out_zero_point
