"""A layered int8 model (conv blocks, max pooling, flatten, dense; channel-wise competitive FF,
edgeff.runtime.int_layered) as a TFLite flatbuffer, on the graph and ops of edgeff/export/tflite_int8.py.

The file runs in TensorFlow Lite Micro as stored (batch 1) and in LiteRT at any batch size (the batch is dynamic
in the shape signature), as the MLP's. A CwC model scores every class from one pass of the image (no label
overlay), so the graph is one pass:

  images int8 (N, H, W, C) NHWC, scale 1/255, zero point -128 (pixel - 128)
  -> per layer, its kind's TFLite writer (edgeff/ops/<kind>/tflite_writer.py, found by edgeff.op_registry):
     conv2d: the input's padding, CONV_2D, MAX_POOL_2D; maxpool2d: MAX_POOL_2D; flatten: TRANSPOSE, RESHAPE;
     dense: L2_NORMALIZATION, FULLY_CONNECTED (or its 1x1 CONV_2D form)
  -> every layer's class goodness (edgeff.runtime.class_goodness): CAST to int32, SQUARED_DIFFERENCE with the
     output zero point, then sums by SPLIT/ADD trees: an NHWC output over its positions (N, H*W, C) -> (N, 1, C),
     then over each class group's C/n channels (N, n, C/n) -> (N, n); rows over each group's contiguous
     values (N, n, D/n) -> (N, n)
  -> goodness int32 (n_layers, N, n_classes) by PACK; the one-pass head on the head layers' outputs (flattened
     channel-major): L2_NORMALIZATION, CONCATENATION, FULLY_CONNECTED -> logits int8 (N, n_classes).
A group's goodness is at most count * 255^2, checked against int32 at export (check_group_size, as at
quantization and load); every partial sum of a tree is part of one group's, so it fits too.

layer_op "conv_2d" (the default for these models: the file needs CONV_2D anyway) writes the dense layers and
the head as 1x1 CONV_2D, which LiteRT's reference kernels requantize as TFLM does; "fully_connected" writes
FULLY_CONNECTED, which LiteRT's reference kernel rescales in float (tflite_int8.py says why).
"""
from ai_edge_litert import schema_py_generated as schema

from edgeff.errors import EdgeFFError
from edgeff.export.onnx_int8 import raise_unsupported
from edgeff.export.tflite_int8 import BATCH, LAYER_OPS, TFLiteGraph
from edgeff.op_registry import layer_facet
from edgeff.runtime.class_goodness import check_group_size, group_values
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import INPUT_SCALE, INPUT_ZERO_POINT
from edgeff.runtime.requantize import float32

Type = schema.TensorType


def check_exportable(model: IntLayeredModel, where: str):
    """Refuse what this graph cannot express in TFLite's integer ops, naming the layer and the reason."""
    if model.rounding != "double":
        raise_unsupported(where, f"{model.rounding} rounding", "TFLite Micro and LiteRT requantize with double "
                          "rounding unless built with TFLITE_SINGLE_ROUNDING, so this file would compute other "
                          "values than the model; quantize with --rounding double")
    if len(model.description.input_shape) != 3:
        raise_unsupported(where, f"an input of shape {list(model.description.input_shape)}",
                          "the layered export takes image inputs (channels, height, width)")
    for i, (spec, layer) in enumerate(zip(model.description.layers, model.layers, strict=True)):
        layer_facet(spec, "tflite_writer").check_exportable(layer, i + 1, where)
        check_group_size(where, i + 1, group_values(spec.out_shape, model.n_classes))


def class_goodness(g: TFLiteGraph, a: int, shape: list, out_shape: tuple, zero_point: int) -> int:
    """(N, n_classes) int32 class goodness of one layer's int8 output a, stored with `shape`: an NHWC image
    (out_shape (C, H, W)) or rows (out_shape (D,))."""
    n = g.model.n_classes
    squares = g.squares(a, shape, zero_point)
    if len(out_shape) == 3:   # over the positions first, then over each group's channels
        c, h, w = out_shape
        squares = g.reshape(squares, [BATCH, h * w, c], Type.INT32)
        squares = g.sum_axis(squares, [BATCH, h * w, c], 1)
        width = c // n
    else:
        width = out_shape[0] // n
    squares = g.reshape(squares, [BATCH, n, width], Type.INT32)
    return g.reshape(g.sum_axis(squares, [BATCH, n, width], 2), [BATCH, n], Type.INT32)


def _stored_shape(g: TFLiteGraph, out_shape: tuple) -> list:
    if len(out_shape) == 3:
        c, h, w = out_shape
        return [BATCH, h, w, c]
    return g.rows(BATCH, out_shape[0])


def build(model: IntLayeredModel, where: str = "model", layer_op: str = "conv_2d",
          metadata: dict[str, str] | None = None) -> bytes:
    """The flatbuffer; metadata entries (name -> text) are stored as TFLite metadata buffers."""
    check_exportable(model, where)
    if layer_op not in LAYER_OPS:
        raise EdgeFFError(f"layer op {layer_op!r} must be one of {', '.join(LAYER_OPS)}")
    specs = model.description.layers
    layers = [(layer_facet(spec, "tflite_writer"), spec, layer) for spec, layer in zip(specs, model.layers,
                                                                                     strict=True)]
    g, quant = TFLiteGraph(model, where, layer_op), model.quant
    c, h, w = model.description.input_shape
    images = g.int8("images", [BATCH, h, w, c], INPUT_SCALE, INPUT_ZERO_POINT)
    g.w.tensors[images].name = "images"
    consts = [writer.constants(g, spec, i, layer, quant["layers"][i]) for i, (writer, spec, layer) in enumerate(layers)]
    a, acts, goodness = images, [], []
    for (writer, spec, layer), k in zip(layers, consts, strict=True):
        a, zero_point = writer.forward(g, spec, layer, k, a, BATCH)
        acts.append(a)
        goodness.append(class_goodness(g, a, _stored_shape(g, spec.out_shape), spec.out_shape, zero_point))
    stacked = g.stack(goodness)
    rows = []
    for l in model.head_layers:
        spec, entry = specs[l - 1], quant["layers"][l - 1]
        a = acts[l - 1]
        if len(spec.out_shape) == 3:
            a = g.channel_major_rows(a, BATCH, spec.out_shape, float32(entry["out_scale"]), entry["out_zero_point"])
        rows.append((a, spec.n_outputs))
    logits = g.one_pass_head(rows, float32(quant["head"]["out_scale"]))
    return g.w.finish([images], [stacked, logits], "EdgeFF int8 layered (CwC) model: class goodness per layer, "
                      "one-pass head logits", metadata or {})

