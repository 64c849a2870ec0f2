"""Flatten in the int8 ONNX graph (edgeff/export/onnx_layered.py): the NCHW activity reshaped to rows, which
is torch's channel-major order already. The int8 graph only (a float conv model's ONNX export is refused)."""


def check_int8_exportable(layer, number: int, where: str):
    """Reshape expresses every flatten the integer runtime runs."""


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    return g.op("Reshape", a, g.i64([0, -1])), layer.out_zero_point
