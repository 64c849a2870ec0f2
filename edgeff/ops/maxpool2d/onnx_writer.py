"""Max pooling in the int8 ONNX graph (edgeff/export/onnx_layered.py): MaxPool on the int8 values, the
input's zero point kept. The int8 graph only (a float conv model's ONNX export is refused)."""


def check_int8_exportable(layer, number: int, where: str):
    """MaxPool expresses every pooling the integer runtime runs."""


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    return g.max_pool(a, spec.size), layer.out_zero_point
