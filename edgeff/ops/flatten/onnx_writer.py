"""Flatten in the ONNX exports (the int8 graph of edgeff/export/onnx_layered.py, the float one of
edgeff/export/onnx_float.py): the NCHW activity reshaped to rows, which is torch's channel-major order
already. No parameters."""


def _rows(g, x: str) -> str:
    return g.op("Reshape", x, g.i64([0, -1]))


def float_parameters(spec, index: int, tensors: dict) -> None:
    return None


def float_forward(g, spec, params, x: str) -> str:
    return _rows(g, x)


def check_int8_exportable(layer, number: int, where: str):
    """Reshape expresses every flatten the integer runtime runs."""


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    return _rows(g, a), layer.out_zero_point
