"""The conv block in the int8 ONNX graph of integer ops (edgeff/export/onnx_layered.py), NCHW int64 tensors
holding int8 values: the input padded with pad_value per channel (the input shifted by it, padded with 0 and
shifted back: exact in int64, and the zero point's padding where pad_value is the zero point), then
ConvInteger (int8 x int8 -> int32; the padding already done, so no tap reads ConvInteger's own), the int32 bias
add, the per-channel MultiplyByQuantizedMultiplier, the output zero point and the fused ReLU's clamp, then
MaxPool on the int8 values when the block pools: what edgeff/ops/conv2d/runtime.py computes.

The float graph (edgeff/export/onnx_float.py) writes the block as torch runs it (edgeff/ops/conv2d/
torch_module.py): BatchNormalization in its inference form on the trained running statistics, then Conv with
its own zero padding, Relu and MaxPool. BatchNorm is not folded into the filters: torch pads BatchNorm's
output with zeros, which a folded Conv's zero padding would not reproduce at the borders.
"""
import numpy as np
from onnx import TensorProto

INT64 = TensorProto.INT64
BATCHNORM_EPS = 1e-5   # nn.BatchNorm2d's default, which ConvBlock keeps; the model file does not store it
NORM = ("weight", "bias", "running_mean", "running_var")   # BatchNormalization's inputs after X, in its order


def float_parameters(spec, index: int, tensors: dict) -> dict:
    """The block's BatchNorm (scale, bias, running mean and variance) and Conv (OIHW weight, bias) tensors in
    float32, from the float model file's layers.<index>.norm.* and layers.<index>.conv.*."""
    return {name: tensors[f"layers.{index}.{name}"].astype(np.float32)
            for name in (*(f"norm.{n}" for n in NORM), "conv.weight", "conv.bias")}


def float_forward(g, spec, params: dict, x: str) -> str:
    """MaxPool(Relu(Conv(BatchNormalization(x)))) on NCHW float32 activities x (no MaxPool when pool is 1)."""
    norm = g.op("BatchNormalization", x, *(g.f32(params[f"norm.{n}"]) for n in NORM), epsilon=BATCHNORM_EPS)
    p, s = spec.padding, spec.stride
    conv = g.op("Conv", norm, g.f32(params["conv.weight"]), g.f32(params["conv.bias"]),
                kernel_shape=[spec.kernel, spec.kernel], pads=[p, p, p, p], strides=[s, s])
    h = g.op("Relu", conv)
    return g.max_pool(h, spec.pool) if spec.pool > 1 else h


def check_int8_exportable(layer, number: int, where: str):
    """Every conv block the integer runtime runs has this form (stride, padding and pad value alike)."""


def channels(g, values) -> str:
    """A per-channel int64 constant shaped (1, C, 1, 1), broadcasting over an NCHW tensor."""
    return g.i64(np.asarray(values, np.int64).reshape(1, -1, 1, 1))


def int8_forward(g, spec, layer, a: str, zero_point: int, rounding: str) -> tuple[str, int]:
    """(output, its zero point) of the block on the NCHW int8 values a (zero point zero_point); g is the int8
    export's IntegerGraph and layer the runtime's IntConv2d."""
    p, s = spec.padding, spec.stride
    if p:
        pad = channels(g, layer.pad_value)
        a = g.op("Add", g.op("Pad", g.op("Sub", a, pad), g.i64([0, 0, p, p, 0, 0, p, p])), pad)
    filters = g.const(np.ascontiguousarray(layer.weight.transpose(0, 3, 1, 2)), np.int8)   # OHWI -> OIHW
    acc = g.op("ConvInteger", g.cast(a, TensorProto.INT8), filters, g.const(np.int8(zero_point)), strides=[s, s])
    acc = g.wrap_int32(g.op("Add", g.cast(acc, INT64), channels(g, layer.bias)))
    y = g.requantize(acc, channels(g, layer.multiplier), channels(g, layer.shift), rounding)
    y = g.clip(g.op("Add", y, g.i64(layer.out_zero_point)), layer.act_min, 127)
    return (g.max_pool(y, spec.pool) if spec.pool > 1 else y), layer.out_zero_point
