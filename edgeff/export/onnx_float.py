"""The float model as one ONNX graph: goodness for every layer and label, the multi-pass scores, and the one-pass
head.

Input: images float32 (N, D), pixels / 255, the rows `edgeff verify` feeds every ONNX export. Outputs: goodness
float32 (n_layers, N, n_classes), scores float32 (N, n_classes) summed over the model's evaluation layers
(argmax = the multi-pass prediction), logits float32 (N, n_classes) of the one-pass head. The graph walks the
model description's layers, each written by its kind's ONNX writer (edgeff/ops/<kind>/onnx_writer.py, found by
edgeff.op_registry), in one of two forms:

  MLP      the label pixels (the first n_classes inputs) are overwritten inside; the first layer's writer
           computes every label's activities at once, as FFNetwork.label_scores does, and goodness is each
           layer's mean or sum square; the head runs a second pass on the neutral label.
  layered  a channel-wise competitive (cwc) model of conv blocks, max pooling, flatten and dense layers
           (ConvFFNetwork): the rows reshaped to the model's (C, H, W) input, one pass, and each layer's class
           goodness the mean square of its class group of channels (channel-major, as class_goodness reads it;
           the int8 layered graph's goodness output, edgeff/export/onnx_layered.py); the head reads the same pass.
"""
import numpy as np
from onnx import TensorProto

from edgeff.errors import EdgeFFError
from edgeff.export.onnx_graph import GraphBuilder
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.model_file import is_layered, load_model
from edgeff.op_registry import layer_facet

FLOAT = TensorProto.FLOAT
# ConvFFNetwork.head_input normalizes each head layer's flattened activities with normalize's default
HEAD_NORMALIZATION_LAYERED = "rms"


def _goodness(g: GraphBuilder, h: str, kind: str) -> str:
    return g.reduce_last(g.op("Mul", h, h), kind == "mean", 0)


def _goodness_and_scores(g: GraphBuilder, per_layer: list, arch: dict):
    """The goodness output from each layer's (1, N, n_classes) goodness, and the scores summed over the
    evaluation layers."""
    c = arch["n_classes"]
    goodness = per_layer[0] if len(per_layer) == 1 else g.op("Concat", *per_layer, axis=0)
    g.output("goodness", goodness, FLOAT, [len(per_layer), "N", c])
    chosen = g.op("Gather", goodness, g.i64([l - 1 for l in arch["eval_layers"]]), axis=0)
    g.output("scores", g.op("ReduceSum", chosen, g.i64([0]), keepdims=0), FLOAT, ["N", c])


def _head_logits(g: GraphBuilder, rows: list, normalization: str, tensors: dict):
    """The logits output: the head on the head layers' activity rows, each normalized, concatenated."""
    parts = [g.normalize(x, normalization) for x in rows]
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    logits = g.linear(features, tensors["head.weight"].astype(np.float32), tensors["head.bias"].astype(np.float32))
    g.output("logits", logits, FLOAT, ["N", tensors["head.bias"].shape[0]])


def _mlp(g: GraphBuilder, arch: dict, layers, writers, params, tensors, path):
    if arch["normalization"] not in ("rms", "length") or arch["goodness"] not in ("mean", "sum"):
        raise EdgeFFError(f"{path}: cannot export normalization {arch['normalization']!r} / goodness "
                          f"{arch['goodness']!r}: the ONNX exporter knows rms/length and mean/sum")
    c, value = arch["n_classes"], float(arch["label_value"])
    d_in = layers[0].n_inputs
    images = g.input("images", FLOAT, ["N", d_in])
    tail = g.op("Slice", images, g.i64([c]), g.i64([d_in]), g.i64([1]))       # the image pixels
    h = writers[0].float_every_label_activities(g, layers[0], params[0], tail, c, value)
    per_layer = [_goodness(g, h, arch["goodness"])]
    for writer, spec, p in zip(writers[1:], layers[1:], params[1:], strict=True):
        h = writer.float_forward(g, spec, p, h)
        per_layer.append(_goodness(g, h, arch["goodness"]))
    _goodness_and_scores(g, [g.op("Unsqueeze", g.op("Reshape", x, g.i64([-1, c])), g.i64([0])) for x in per_layer],
                         arch)

    # one-pass head on the neutral input (every label pixel at value / n_classes)
    shape = g.op("Concat", g.op("Slice", g.op("Shape", images), g.i64([0]), g.i64([1])), g.i64([c]), axis=0)
    neutral = g.op("Expand", g.f32(np.full((1, c), value / c)), shape)
    x, acts = g.op("Concat", neutral, tail, axis=1), []
    for writer, spec, p in zip(writers, layers, params, strict=True):
        x = writer.float_forward(g, spec, p, x)
        acts.append(x)
    _head_logits(g, [acts[l - 1] for l in arch["head_layers"]], arch["normalization"], tensors)
    return ("EdgeFF float FF model: multi-pass goodness per layer and label, summed scores, one-pass head logits; "
            "input pixels / 255")


def _layered(g: GraphBuilder, arch: dict, description: ModelDescription, writers, params, tensors, path):
    if arch.get("objective") != "cwc":   # overlay scores one pass per label; backprop has no goodness
        raise EdgeFFError(f"{path}: the float ONNX export of a layered model takes objective cwc (channel-wise "
                          f"competitive), not {arch.get('objective')!r}")
    c, layers = arch["n_classes"], description.layers
    images = g.input("images", FLOAT, ["N", layers[0].n_inputs])
    h, acts, per_layer = g.op("Reshape", images, g.i64([0, *description.input_shape])), [], []
    for writer, spec, p in zip(writers, layers, params, strict=True):
        h = writer.float_forward(g, spec, p, h)
        acts.append(h)
        groups = g.op("Reshape", g.op("Mul", h, h), g.i64([0, c, -1]))
        per_layer.append(g.op("Unsqueeze", g.op("ReduceMean", groups, axes=[2], keepdims=0), g.i64([0])))
    _goodness_and_scores(g, per_layer, arch)
    _head_logits(g, [g.op("Reshape", acts[l - 1], g.i64([0, -1])) for l in arch["head_layers"]],
                 HEAD_NORMALIZATION_LAYERED, tensors)
    return ("EdgeFF float layered (CwC) model: class goodness per layer, summed scores, one-pass head logits; "
            "input pixels / 255 as rows of the (C, H, W) image")


def build(path):
    tensors, header = load_model(path)
    arch = header.get("architecture") or {}
    if arch.get("kind") != ModelKind.FLOAT:
        raise EdgeFFError(f"{path}: not a float FF model (architecture kind {arch.get('kind')!r}); the float "
                          "ONNX export takes `edgeff train` output (int8 models export with --int8 formats)")
    description = ModelDescription.from_header(arch["layers"], str(path))
    layers = description.layers
    writers = [layer_facet(spec, "onnx_writer") for spec in layers]   # a kind without a writer is refused first
    params = [writer.float_parameters(spec, i, tensors)
              for i, (writer, spec) in enumerate(zip(writers, layers, strict=True))]
    if is_layered(arch):
        g = GraphBuilder("edgeff_float_layered")
        doc = _layered(g, arch, description, writers, params, tensors, path)
    else:
        g = GraphBuilder("edgeff_float")
        doc = _mlp(g, arch, layers, writers, params, tensors, path)
    return g.model(doc)
