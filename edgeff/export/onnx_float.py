"""The float model as one ONNX graph: multi-pass goodness for every label, and the one-pass head.

Input: images float32 (N, D), pixels / 255 (the label pixels are overwritten inside). Outputs:
goodness float32 (n_layers, N, n_classes), scores float32 (N, n_classes) summed over the model's
evaluation layers (argmax = the multi-pass prediction), logits float32 (N, n_classes) of the one-pass
head. The graph walks the model description's layers, each written by its kind's ONNX writer
(edgeff/ops/<kind>/onnx_writer.py, found by edgeff.op_registry); the first layer's writer computes every
label's activities at once, as FFNetwork.label_scores does.
"""
import numpy as np
from onnx import TensorProto

from edgeff.errors import EdgeFFError
from edgeff.export.onnx_graph import GraphBuilder
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.model_file import is_layered, load_model
from edgeff.op_registry import layer_facet

FLOAT = TensorProto.FLOAT


def _goodness(g: GraphBuilder, h: str, kind: str) -> str:
    return g.reduce_last(g.op("Mul", h, h), kind == "mean", 0)


def build(path):
    tensors, header = load_model(path)
    arch = header.get("architecture") or {}
    if arch.get("kind") != ModelKind.FLOAT:
        raise EdgeFFError(f"{path}: not a float FF model (architecture kind {arch.get('kind')!r}); the float "
                          "ONNX export takes `edgeff train` output (int8 models export with --int8 formats)")
    if is_layered(arch):
        raise EdgeFFError(f"{path}: exporting a float layered (conv) model to ONNX is not supported yet; quantize "
                          f"it (`edgeff quantize {path} --out MODEL_INT8`) and export the int8 model")
    layers = ModelDescription.from_header(arch["layers"], str(path)).layers
    writers = [layer_facet(spec, "onnx_writer") for spec in layers]   # a kind without a writer is refused first
    if arch["normalization"] not in ("rms", "length") or arch["goodness"] not in ("mean", "sum"):
        raise EdgeFFError(f"{path}: cannot export normalization {arch['normalization']!r} / goodness "
                          f"{arch['goodness']!r}: the ONNX exporter knows rms/length and mean/sum")
    c, value = arch["n_classes"], float(arch["label_value"])
    params = [writer.float_parameters(spec, i, tensors)
              for i, (writer, spec) in enumerate(zip(writers, layers, strict=True))]
    d_in, n_layers = layers[0].n_inputs, len(layers)

    g = GraphBuilder("edgeff_float")
    images = g.input("images", FLOAT, ["N", d_in])
    tail = g.op("Slice", images, g.i64([c]), g.i64([d_in]), g.i64([1]))       # the image pixels
    h = writers[0].float_every_label_activities(g, layers[0], params[0], tail, c, value)
    per_layer = [_goodness(g, h, arch["goodness"])]
    for writer, spec, p in zip(writers[1:], layers[1:], params[1:], strict=True):
        h = writer.float_forward(g, spec, p, h)
        per_layer.append(_goodness(g, h, arch["goodness"]))
    per_layer = [g.op("Unsqueeze", g.op("Reshape", x, g.i64([-1, c])), g.i64([0])) for x in per_layer]
    goodness = per_layer[0] if n_layers == 1 else g.op("Concat", *per_layer, axis=0)
    g.output("goodness", goodness, FLOAT, [n_layers, "N", c])
    chosen = g.op("Gather", goodness, g.i64([l - 1 for l in arch["eval_layers"]]), axis=0)
    g.output("scores", g.op("ReduceSum", chosen, g.i64([0]), keepdims=0), FLOAT, ["N", c])

    # one-pass head on the neutral input (every label pixel at value / n_classes)
    shape = g.op("Concat", g.op("Slice", g.op("Shape", images), g.i64([0]), g.i64([1])), g.i64([c]), axis=0)
    neutral = g.op("Expand", g.f32(np.full((1, c), value / c)), shape)
    x, acts = g.op("Concat", neutral, tail, axis=1), []
    for writer, spec, p in zip(writers, layers, params, strict=True):
        x = writer.float_forward(g, spec, p, x)
        acts.append(x)
    parts = [g.normalize(acts[l - 1], arch["normalization"]) for l in arch["head_layers"]]
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    logits = g.linear(features, tensors["head.weight"].astype(np.float32), tensors["head.bias"].astype(np.float32))
    g.output("logits", logits, FLOAT, ["N", c])
    return g.model("EdgeFF float FF model: multi-pass goodness per layer and label, summed scores, one-pass "
                   "head logits; input pixels / 255")
