"""A layered int8 model (conv blocks, max pooling, flatten, dense; channel-wise competitive FF,
edgeff.runtime.int_layered) as an ONNX graph of integer ops on onnx_int8's IntegerGraph, bit-exact with the
integer runtime.

ONNX is NCHW, torch's order, so the image and a flatten are Reshapes and each class group's values are
contiguous. One pass (no label overlay):

  images uint8 (N, C*H*W), the raw pixels -> q = pixel - 128, int64, reshaped (N, C, H, W)
  -> per layer, its kind's ONNX writer (edgeff/ops/<kind>/onnx_writer.py, found by edgeff.op_registry):
     conv2d: the per-channel pad, ConvInteger, requantization, clamp, MaxPool; maxpool2d: MaxPool; flatten:
     Reshape; dense: L2 normalization and MatMulInteger, as the MLP's
  -> every layer's class goodness: (q - zp)^2 reshaped (N, n_classes, -1) and summed (ReduceSum, int64: exact)
  -> goodness int32 (n_layers, N, n_classes) (IntLayeredModel.raw_class_goodness); the one-pass head on the
     head layers' flattened outputs -> logits int8 (N, n_classes) (IntLayeredModel.head_logits).
"""
from onnx import TensorProto

from edgeff.export.onnx_int8 import IntegerGraph
from edgeff.op_registry import layer_facet
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import INPUT_ZERO_POINT

INT64 = TensorProto.INT64


def build(model: IntLayeredModel, where: str = "model"):
    layers = [(layer_facet(spec, "onnx_writer"), spec, layer)
              for spec, layer in zip(model.description.layers, model.layers, strict=True)]
    for i, (writer, _, layer) in enumerate(layers):
        writer.check_int8_exportable(layer, i + 1, where)
    c, shape = model.n_classes, model.description.input_shape
    g = IntegerGraph("edgeff_int8_layered")
    images = g.input("images", TensorProto.UINT8, ["N", model.description.layers[0].n_inputs])
    a = g.op("Sub", g.cast(images, INT64), g.i64(-INPUT_ZERO_POINT))
    a, zp = g.op("Reshape", a, g.i64([0, *shape])), INPUT_ZERO_POINT
    goodness, rows = [], {}
    for i, (writer, spec, layer) in enumerate(layers):
        a, zp = writer.int8_forward(g, spec, layer, a, zp, model.rounding)
        d = g.op("Sub", a, g.i64(zp))
        groups = g.op("Reshape", g.op("Mul", d, d), g.i64([0, c, -1]))
        goodness.append(g.op("Unsqueeze", g.op("ReduceSum", groups, g.i64([2]), keepdims=0), g.i64([0])))
        if i + 1 in model.head_layers:
            rows[i + 1] = (g.op("Reshape", a, g.i64([0, -1])), zp)
    stacked = goodness[0] if len(goodness) == 1 else g.op("Concat", *goodness, axis=0)
    g.output("goodness", g.cast(stacked, TensorProto.INT32), TensorProto.INT32, [len(layers), "N", c])
    parts = [g.l2_normalize(*rows[l], model.rounding) for l in model.head_layers]
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    logits = g.fully_connected(features, model.head, model.rounding)
    g.output("logits", g.cast(logits, TensorProto.INT8), TensorProto.INT8, ["N", c])
    return g.model("EdgeFF int8 layered (CwC) model: class goodness per layer, one-pass head logits; bit-exact "
                   "with the EdgeFF integer runtime")
