"""Max pooling in the ONNX exports: MaxPool over size x size windows at stride size. The int8 graph
(edgeff/export/onnx_layered.py) pools the int8 values and keeps the input's zero point; the float graph
(edgeff/export/onnx_float.py) pools the float activities, as F.max_pool2d does. No parameters."""


def float_parameters(spec, index: int, tensors: dict) -> None:
    return None


def float_forward(g, spec, params, x: str) -> str:
    return g.max_pool(x, spec.size)


def check_int8_exportable(layer, number: int, where: str):
    """MaxPool expresses every pooling the integer runtime runs."""


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    return g.max_pool(a, spec.size), layer.out_zero_point
