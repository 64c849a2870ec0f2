"""The int8 model as a TFLite flatbuffer, written directly (no TensorFlow converter, which would turn the
goodness into a useless int8 tensor) with the schema classes that ai-edge-litert ships.

The file runs in TensorFlow Lite Micro (TFLM) as stored and in LiteRT at any batch size. TFLM neither
resizes tensors nor has int32 SUM or TRANSPOSE, so:
- every tensor is stored with its batch-1 shape (a stack of ten labelled copies of one image is stored with
  ten rows), and the batch dimension is dynamic only in the shape signature, which LiteRT reads;
- rows are batch-major (image 0 with every label, then image 1, ...), so per-label values are arranged
  (N, n_classes) by a RESHAPE, with no TRANSPOSE;
- the int32 goodness sum is a pairwise tree of int32 SPLIT and ADD (after a zero PAD to a power of two),
  exact like any integer sum (a row's sum is at most width * 255^2, checked against int32 at export).
Keeping the goodness in the graph makes the file complete on a board: run it and compare int32 outputs.

Graph:
  images int8 (N, D), scale 1/255, zero point -128 (pixel - 128)
  -> SPLIT_V into label pixels and image pixels; the label pixels broadcast against each label's one-hot
     row by MAXIMUM then MINIMUM (which sets them exactly), the image pixels broadcast by MAXIMUM with -128;
     CONCATENATION -> (N, n_labels, D) -> RESHAPE to rows (N * n_labels, D)
  -> per layer: L2_NORMALIZATION (int8, scale 1/128) -> FULLY_CONNECTED (per-channel int8 weights,
     int32 bias, fused RELU) -> goodness: CAST to int32, SQUARED_DIFFERENCE with the zero point, PAD,
     SPLIT/ADD tree, RESHAPE to (N, n_classes)
  -> goodness int32 (n_layers, N, n_classes) by PACK; the one-pass head on the neutral input:
     L2_NORMALIZATION of the head layers, CONCATENATION, FULLY_CONNECTED -> logits int8 (N, n_classes).
Each layer is written by its kind's TFLite writer (edgeff/ops/<kind>/tflite_writer.py, found by
edgeff.op_registry) from the ops of TFLiteGraph; this module writes the rest of the graph. A layered (conv)
model's graph is edgeff/export/tflite_layered.py, on the same TFLiteGraph (its CONV_2D, MAX_POOL_2D, border,
TRANSPOSE and int32 sum ops are here too).
layer_op "conv_2d" writes each FC as the equivalent 1x1 CONV_2D on (rows, 1, 1, D) tensors instead.
Why both: TFLM runs FULLY_CONNECTED with integer per-channel requantization (TFLM's double rounding, what
EdgeFF computes), but LiteRT's own kernels do not: its reference per-channel FULLY_CONNECTED rescales in
float and its optimized one (ruy) rounds negative ties up. LiteRT's reference CONV_2D requantizes exactly as
TFLM does, so the conv_2d form proves the integer semantics bit for bit on LiteRT too; the graph is otherwise
the same.
TFLite derives each FC's requantization multiplier from float32 scales at Prepare time, so the exporter finds
the float32 weight scales that give exactly the model's integers (the quantizer derives them the same way;
see requantize.multiplier_from_scales).
"""
import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edgeff.data.labels import overlay_labels
from edgeff.errors import EdgeFFError
from edgeff.export.onnx_int8 import raise_unsupported
from edgeff.op_registry import layer_facet
from edgeff.runtime.int_fully_connected import IntFullyConnected
from edgeff.runtime.int_model import INPUT_SCALE, INPUT_ZERO_POINT, IntFFModel
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import float32, multiplier_from_scales

Op, Type, Options = schema.BuiltinOperator, schema.TensorType, schema.BuiltinOptions
NORM_SCALE = 2.0 ** -NORM_BITS_INT8
SEARCH_ULPS = 8    # float32 neighbours tried around each multiplier's scale
INT32_MAX = 2 ** 31 - 1


def weight_scales(layer, input_scale: float, output_scale: float, what: str) -> np.ndarray:
    """Per-channel float32 scales s_w[c] with multiplier_from_scales(s_in, s_w[c], s_out) equal to the
    layer's (multiplier, shift) (an IntFullyConnected or a conv block's IntConv2d)."""
    out = np.empty(len(layer.multiplier), np.float32)
    for c, (mult, shift) in enumerate(zip(layer.multiplier.tolist(), layer.shift.tolist(), strict=True)):
        estimate = np.float32(mult * 2.0 ** (shift - 31) * float32(output_scale) / float32(input_scale))
        candidates = [estimate]
        up = down = estimate
        for _ in range(SEARCH_ULPS):
            up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
            candidates += [up, down]
        found = [s for s in candidates
                 if s > 0 and multiplier_from_scales(input_scale, s, output_scale) == (mult, shift)]
        if not found:
            raise EdgeFFError(f"{what}, channel {c}: its requantization multiplier ({mult}, shift {shift}) is not one "
                              "TFLite can derive from float32 scales (the model was quantized by an older EdgeFF); "
                              "quantize the float model again with `edgeff quantize`")
        out[c] = found[0]
    return out


class Batch(int):
    """A dynamic batch dimension in a tensor's shape, stored as its batch-1 size: Batch(10) is the row count
    of ten labelled copies per image, stored as 10 (what TFLM runs) and signed -1 (LiteRT resizes it)."""


BATCH = Batch(1)


class _FlatbufferWriter:
    """Tensors, buffers and operators of one subgraph, then the packed model."""

    def __init__(self):
        self.buffers = [schema.BufferT()]     # buffer 0: the empty sentinel of tensors without data
        self.tensors, self.operators, self.opcodes = [], [], []

    def tensor(self, name, dtype, shape, data=None, scale=None, zero_point=None) -> int:
        """A tensor; a Batch entry in shape is the dynamic batch dimension."""
        t = schema.TensorT()
        t.name, t.type = name, dtype
        t.shape = [int(d) for d in shape]
        if any(isinstance(d, Batch) for d in shape):
            t.shapeSignature = [-1 if isinstance(d, Batch) else int(d) for d in shape]
        t.buffer = 0
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = schema.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.broadcast_to(zero_point, len(q.scale))]
            q.quantizedDimension = 0
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const_i32(self, name, values) -> int:
        values = np.asarray(values, np.int32)
        return self.tensor(name, Type.INT32, values.shape, values)

    def op(self, code, inputs, outputs, options_type=Options.NONE, options=None):
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcodes.index(code), list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def finish(self, inputs, outputs, description, metadata: dict[str, str]) -> bytes:
        sub = schema.SubGraphT()
        sub.tensors, sub.operators, sub.inputs, sub.outputs, sub.name = \
            self.tensors, self.operators, list(inputs), list(outputs), "main"
        model = schema.ModelT()
        model.version, model.description, model.subgraphs, model.buffers = 3, description, [sub], self.buffers
        model.operatorCodes = []
        for code in self.opcodes:
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        model.metadata = []
        for name, text in metadata.items():
            entry = schema.MetadataT()
            entry.name, entry.buffer = name, len(self.buffers)
            buf = schema.BufferT()
            buf.data = np.frombuffer(text.encode(), np.uint8)
            self.buffers.append(buf)
            model.metadata.append(entry)
        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _options(cls, **fields):
    o = cls()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


LAYER_OPS = ("fully_connected", "conv_2d")


class TFLiteGraph:
    """The int8 model's subgraph as it is written: named tensors and the ops the layers and the head share."""

    def __init__(self, model: IntFFModel, where: str, layer_op: str):
        self.model, self.where, self.w = model, where, _FlatbufferWriter()
        self.conv = layer_op == "conv_2d"
        self.count = 0

    def rows(self, n_rows: Batch, width) -> list:
        """Shape of a batch of activation rows: (rows, width), or (rows, 1, 1, width) around CONV_2D."""
        return [n_rows, 1, 1, width] if self.conv else [n_rows, width]

    def reshape(self, x, shape, dtype=Type.INT8, scale=None, zero_point=None) -> int:
        out = self.w.tensor(self.name("reshaped"), dtype, shape, scale=scale, zero_point=zero_point)
        new_shape = [-1 if isinstance(d, Batch) else int(d) for d in shape]
        self.w.op(Op.RESHAPE, [x, self.w.const_i32(self.name("shape"), new_shape)], [out], Options.ReshapeOptions,
                  _options(schema.ReshapeOptionsT, newShape=new_shape))
        return out

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def int8(self, hint, shape, scale, zero_point) -> int:
        return self.w.tensor(self.name(hint), Type.INT8, shape, scale=scale, zero_point=zero_point)

    def const_input_int8(self, hint, values) -> int:
        values = np.asarray(values, np.int8)
        return self.w.tensor(self.name(hint), Type.INT8, values.shape, values, INPUT_SCALE, INPUT_ZERO_POINT)

    def binary(self, code, options_type, options, a, b, shape, scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT):
        out = self.int8("broadcast", shape, scale, zero_point)
        self.w.op(code, [a, b], [out], options_type, options)
        return out

    def labelled(self, x, label_values, d_in) -> int:
        """Rows of x with their label pixels set to each row of label_values, batch-major: image 0 with every
        label, then image 1, ... (a broadcast, so the graph grows by a few ops, not one per label)."""
        c, k = self.model.n_classes, len(label_values)
        label = self.int8("label_pixels", [BATCH, c], INPUT_SCALE, INPUT_ZERO_POINT)
        tail = self.int8("image_pixels", [BATCH, d_in - c], INPUT_SCALE, INPUT_ZERO_POINT)
        self.w.op(Op.SPLIT_V, [x, self.w.const_i32(self.name("sizes"), [c, d_in - c]),
                               self.w.const_i32(self.name("axis"), [1])], [label, tail],
                  Options.SplitVOptions, _options(schema.SplitVOptionsT, numSplits=2))
        rows = self.const_input_int8("label_rows", np.asarray(label_values)[None])          # (1, k, c)
        minmax = Options.MaximumMinimumOptions, schema.MaximumMinimumOptionsT()
        label = self.reshape(label, [BATCH, 1, c], scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT)
        label = self.binary(Op.MAXIMUM, *minmax, label, rows, [BATCH, k, c])    # >= the row, shaped (N, k, c)
        label = self.binary(Op.MINIMUM, *minmax, label, rows, [BATCH, k, c])    # = the row
        tail = self.reshape(tail, [BATCH, 1, d_in - c], scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT)
        if k > 1:   # max with the lowest int8 value leaves the pixels as they are, copied k times
            tail = self.binary(Op.MAXIMUM, *minmax, tail, self.const_input_int8("lowest", np.full((1, k, 1), -128)),
                               [BATCH, k, d_in - c])
        x = self.concat([label, tail], 2, [BATCH, k, d_in], INPUT_SCALE, INPUT_ZERO_POINT)
        return self.reshape(x, self.rows(Batch(k), d_in), scale=INPUT_SCALE, zero_point=INPUT_ZERO_POINT)

    def concat(self, parts, axis, shape, scale, zero_point) -> int:
        out = self.int8("concat", shape, scale, zero_point)
        self.w.op(Op.CONCATENATION, parts, [out], Options.ConcatenationOptions,
                  _options(schema.ConcatenationOptionsT, axis=axis))
        return out

    def l2_normalize(self, a, n_rows, width) -> int:
        out = self.int8("l2_normalized", self.rows(n_rows, width), NORM_SCALE, 0)
        self.w.op(Op.L2_NORMALIZATION, [a], [out], Options.L2NormOptions, schema.L2NormOptionsT())
        return out

    def fully_connected(self, n, n_rows, layer: IntFullyConnected, weight, bias, scale, relu: bool) -> int:
        d_out = layer.weight.shape[0]
        if self.conv:
            return self.conv_2d(n, weight, bias, self.rows(n_rows, d_out), scale, layer.out_zero_point, 1,
                                schema.Padding.VALID, relu, "fc_out")
        out = self.int8("fc_out", self.rows(n_rows, d_out), scale, layer.out_zero_point)
        self.w.op(Op.FULLY_CONNECTED, [n, weight, bias], [out], Options.FullyConnectedOptions,
                  _options(schema.FullyConnectedOptionsT, fusedActivationFunction=_activation(relu)))
        return out

    def conv_2d(self, x, weight, bias, shape, scale, zero_point, stride: int, padding, relu: bool,
                hint="conv_out") -> int:
        """CONV_2D (per-channel int8 filters, int32 bias, `padding` SAME or VALID, RELU fused or none)."""
        out = self.int8(hint, shape, scale, zero_point)
        self.w.op(Op.CONV_2D, [x, weight, bias], [out], Options.Conv2DOptions,
                  _options(schema.Conv2DOptionsT, padding=padding, strideW=stride, strideH=stride,
                           dilationWFactor=1, dilationHFactor=1, fusedActivationFunction=_activation(relu)))
        return out

    def max_pool_2d(self, x, size: int, shape, scale, zero_point) -> int:
        """MAX_POOL_2D over size x size windows at stride size (VALID: a remainder row or column is dropped)."""
        out = self.int8("pooled", shape, scale, zero_point)
        self.w.op(Op.MAX_POOL_2D, [x], [out], Options.Pool2DOptions,
                  _options(schema.Pool2DOptionsT, padding=schema.Padding.VALID, strideW=size, strideH=size,
                           filterWidth=size, filterHeight=size,
                           fusedActivationFunction=schema.ActivationFunctionType.NONE))
        return out

    def pad(self, x, paddings, shape, scale, zero_point) -> int:
        """PAD of an int8 tensor: TFLite pads a quantized tensor with its zero point."""
        out = self.int8("padded", shape, scale, zero_point)
        self.w.op(Op.PAD, [x, self.w.const_i32(self.name("padding"), paddings)], [out], Options.PadOptions,
                  schema.PadOptionsT())
        return out

    def batch_slice(self, x, n_rows, scale, zero_point) -> int:
        """One value per batch entry of a 4-D x, shaped (n_rows, 1, 1, 1): what a constant is broadcast against
        to give it the batch's size (STRIDED_SLICE, the batch axis taken whole by its masks)."""
        out = self.int8("batch_slice", [n_rows, 1, 1, 1], scale, zero_point)
        self.w.op(Op.STRIDED_SLICE, [x, *(self.w.const_i32(self.name(hint), values) for hint, values in
                                          (("begin", [0] * 4), ("end", [1] * 4), ("strides", [1] * 4)))],
                  [out], Options.StridedSliceOptions, _options(schema.StridedSliceOptionsT, beginMask=1, endMask=1))
        return out

    def channel_major_rows(self, x, n_rows, chw, scale, zero_point) -> int:
        """An NHWC activity (n_rows, H, W, C) as rows in torch's flatten order: TRANSPOSE to NCHW, RESHAPE."""
        c, h, w = chw
        out = self.int8("nchw", [n_rows, c, h, w], scale, zero_point)
        self.w.op(Op.TRANSPOSE, [x, self.w.const_i32(self.name("perm"), [0, 3, 1, 2])], [out],
                  Options.TransposeOptions, schema.TransposeOptionsT())
        return self.reshape(out, self.rows(n_rows, c * h * w), scale=scale, zero_point=zero_point)

    def layer_constants(self, layer, input_scale, output_scale, what, shape=None):
        """(weight, bias) tensors of a layer with per-channel int8 weights and multipliers; `shape`: the
        weight's stored shape (default: the FC's, or its 1x1 CONV_2D form's)."""
        scales = weight_scales(layer, input_scale, output_scale, f"{self.where}: {what}")
        if shape is None:
            shape = (layer.weight.shape[0], 1, 1, layer.weight.shape[1]) if self.conv else layer.weight.shape
        weight = self.w.tensor(f"{what}.weight", Type.INT8, shape, layer.weight.reshape(shape), scales, 0)
        bias = self.w.tensor(f"{what}.bias", Type.INT32, layer.bias.shape, layer.bias.astype(np.int32),
                             float32(input_scale) * scales.astype(np.float64), 0)
        return weight, bias

    def squares(self, a, shape, zero_point: int) -> int:
        """int32 (a - zero_point)^2 of an int8 tensor of `shape`: CAST, then SQUARED_DIFFERENCE."""
        wide = self.w.tensor(self.name("acts_i32"), Type.INT32, shape)
        self.w.op(Op.CAST, [a], [wide], Options.CastOptions,
                  _options(schema.CastOptionsT, inDataType=Type.INT8, outDataType=Type.INT32))
        squares = self.w.tensor(self.name("squares"), Type.INT32, shape)
        self.w.op(Op.SQUARED_DIFFERENCE, [wide, self.w.const_i32(self.name("zero_point"), [zero_point])],
                  [squares], Options.SquaredDifferenceOptions, schema.SquaredDifferenceOptionsT())
        return squares

    def sum_axis(self, x, shape, axis: int) -> int:
        """The int32 sum of x (of `shape`) along `axis`, kept as a size-1 axis: a zero PAD to a power of two,
        then a pairwise tree of SPLIT and ADD (TFLM has no int32 SUM). Exact: every partial sum is a sum of
        some of the terms, so it fits int32 when the whole sum does (the exporters check that)."""
        def resized(n):
            out = list(shape)
            out[axis] = n
            return out

        padded = 1 << (shape[axis] - 1).bit_length()
        if padded > shape[axis]:
            out = self.w.tensor(self.name("padded"), Type.INT32, resized(padded))
            paddings = [[0, 0] for _ in shape]
            paddings[axis] = [0, padded - shape[axis]]
            self.w.op(Op.PAD, [x, self.w.const_i32(self.name("padding"), paddings)], [out], Options.PadOptions,
                      schema.PadOptionsT())
            x = out
        while padded > 1:   # each level adds the right half along the axis to the left half
            padded //= 2
            halves = [self.w.tensor(self.name("half"), Type.INT32, resized(padded)) for _ in range(2)]
            self.w.op(Op.SPLIT, [self.w.const_i32(self.name("axis"), [axis]), x], halves, Options.SplitOptions,
                      _options(schema.SplitOptionsT, numSplits=2))
            x = self.w.tensor(self.name("partial_sums"), Type.INT32, resized(padded))
            self.w.op(Op.ADD, halves, [x], Options.AddOptions, schema.AddOptionsT())
        return x

    def goodness(self, a, n_rows: Batch, width: int, zero_point: int) -> int:
        """int32 sum over each row of (a - zero_point)^2 for `width` wide rows a, arranged (N, rows per image)."""
        squares = self.squares(a, self.rows(n_rows, width), zero_point)
        if self.conv:
            squares = self.reshape(squares, [n_rows, width], Type.INT32)
        return self.reshape(self.sum_axis(squares, [n_rows, width], 1), [BATCH, int(n_rows)], Type.INT32)

    def stack(self, goodness: list) -> int:
        """Every layer's int32 goodness (N, n_classes) as the output `goodness` (n_layers, N, n_classes), PACK."""
        stacked = self.w.tensor("goodness", Type.INT32, [len(goodness), BATCH, self.model.n_classes])
        self.w.op(Op.PACK, goodness, [stacked], Options.PackOptions,
                  _options(schema.PackOptionsT, valuesCount=len(goodness), axis=0))
        return stacked

    def one_pass_head(self, rows: list, logit_scale) -> int:
        """The output `logits` (N, n_classes) int8 of the one-pass head on the head layers' (rows, width):
        L2_NORMALIZATION of each, CONCATENATION, FULLY_CONNECTED (or its 1x1 CONV_2D form)."""
        parts = [self.l2_normalize(a, BATCH, width) for a, width in rows]
        width = sum(w for _, w in rows)
        features = parts[0] if len(parts) == 1 else self.concat(parts, 3 if self.conv else 1,
                                                                self.rows(BATCH, width), NORM_SCALE, 0)
        head = self.layer_constants(self.model.head, NORM_SCALE, logit_scale, "head")
        logits = self.fully_connected(features, BATCH, self.model.head, *head, logit_scale, relu=False)
        if self.conv:
            logits = self.reshape(logits, [BATCH, self.model.n_classes], scale=logit_scale, zero_point=0)
        self.w.tensors[logits].name = "logits"
        return logits


def _activation(relu: bool):
    return schema.ActivationFunctionType.RELU if relu else schema.ActivationFunctionType.NONE


def check_tflite_exportable(model: IntFFModel, where: str):
    """Refuse what this graph cannot express in TFLite's integer ops, naming the layer and the reason."""
    if model.rounding != "double":
        raise_unsupported(where, f"{model.rounding} rounding", "TFLite Micro and LiteRT requantize with double "
                          "rounding unless built with TFLITE_SINGLE_ROUNDING, so this file would compute other "
                          "values than the model; quantize with --rounding double (or export --format onnx, "
                          "which is exact for either rounding)")
    for i, (spec, layer) in enumerate(zip(model.description.layers, model.layers, strict=True)):
        layer_facet(spec, "tflite_writer").check_exportable(layer, i + 1, where)
        width = spec.n_outputs
        if width * 255 ** 2 > INT32_MAX:
            raise_unsupported(where, f"layer {i + 1} is {width} wide, and its goodness could exceed int32",
                              f"use layers of at most {INT32_MAX // 255 ** 2} units")


def build(model: IntFFModel, where: str = "model", layer_op: str = "fully_connected",
          metadata: dict[str, str] | None = None) -> bytes:
    """The flatbuffer; metadata entries (name -> text) are stored as TFLite metadata buffers."""
    check_tflite_exportable(model, where)
    if layer_op not in LAYER_OPS:
        raise EdgeFFError(f"layer op {layer_op!r} must be one of {', '.join(LAYER_OPS)}")
    layers = [(layer_facet(spec, "tflite_writer"), spec, layer)
              for spec, layer in zip(model.description.layers, model.layers, strict=True)]
    c, sizes = model.n_classes, model.arch["sizes"]
    g, quant = TFLiteGraph(model, where, layer_op), model.quant
    images = g.int8("images", [BATCH, sizes[0]], INPUT_SCALE, INPUT_ZERO_POINT)
    g.w.tensors[images].name = "images"
    consts = [writer.constants(g, spec, i, layer, quant["layers"][i]) for i, (writer, spec, layer) in enumerate(layers)]

    one_hot = overlay_labels(np.full((c, c), INPUT_ZERO_POINT), np.arange(c), c, quant["label_q"], INPUT_ZERO_POINT)
    labels, a, goodness = Batch(c), g.labelled(images, one_hot, sizes[0]), []
    for (writer, spec, layer), k in zip(layers, consts, strict=True):
        a, zero_point = writer.forward(g, spec, layer, k, a, labels)
        goodness.append(g.goodness(a, labels, spec.n_outputs, zero_point))
    stacked = g.stack(goodness)

    a, acts = g.labelled(images, [np.full(c, quant["neutral_label_q"])], sizes[0]), []
    for (writer, spec, layer), k in zip(layers, consts, strict=True):
        a = writer.forward(g, spec, layer, k, a, BATCH)[0]
        acts.append(a)
    logits = g.one_pass_head([(acts[l - 1], sizes[l]) for l in model.head_layers],
                             float32(quant["head"]["out_scale"]))
    return g.w.finish([images], [stacked, logits], "EdgeFF int8 FF model: raw goodness per layer and label "
                      "(multi-pass), one-pass head logits", metadata or {})
