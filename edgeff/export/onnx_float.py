"""The float model as one ONNX graph: multi-pass goodness for every label, and the one-pass head.

Input: images float32 (N, D), pixels / 255 (the label pixels are overwritten inside). Outputs:
goodness float32 (n_layers, N, n_classes), scores float32 (N, n_classes) summed over the model's
evaluation layers (argmax = the multi-pass prediction), logits float32 (N, n_classes) of the one-pass
head. The first layer is computed as FFNetwork.label_scores does: one shared matmul over the image
pixels plus a rank-1 label correction per class.
"""
import numpy as np
from onnx import TensorProto

from edgeff.errors import EdgeFFError
from edgeff.export.onnx_graph import GraphBuilder
from edgeff.model_description import ModelKind
from edgeff.model_file import load_model

EPS = 1e-8   # FFNetwork's normalizer epsilon
FLOAT = TensorProto.FLOAT


def _f32(g: GraphBuilder, value) -> str:
    return g.const(value, np.float32)


def _reduce_last(g: GraphBuilder, x: str, mean: bool, keepdims: int) -> str:
    """Sum or mean over the last axis (opset 17: ReduceSum takes axes as an input, ReduceMean as an attribute)."""
    if mean:
        return g.op("ReduceMean", x, axes=[-1], keepdims=keepdims)
    return g.op("ReduceSum", x, g.i64([-1]), keepdims=keepdims)


def _normalize(g: GraphBuilder, x: str, kind: str) -> str:
    """x * rsqrt(mean(x^2) + eps) ("rms") or x * rsqrt(sum(x^2) + eps) ("length"), per row."""
    sq = _reduce_last(g, g.op("Mul", x, x), kind == "rms", 1)
    return g.op("Mul", x, g.op("Reciprocal", g.op("Sqrt", g.op("Add", sq, _f32(g, EPS)))))


def _goodness(g: GraphBuilder, h: str, kind: str) -> str:
    return _reduce_last(g, g.op("Mul", h, h), kind == "mean", 0)


def _dense(g: GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
    return g.op("Add", g.op("MatMul", x, _f32(g, np.ascontiguousarray(weight.T))), _f32(g, bias))


def build(path):
    tensors, header = load_model(path)
    arch = header.get("architecture") or {}
    if arch.get("kind") != ModelKind.FLOAT:
        raise EdgeFFError(f"{path}: not a float FF model (architecture kind {arch.get('kind')!r}); the float "
                          "ONNX export takes `edgeff train` output (int8 models export with --int8 formats)")
    if arch["normalization"] not in ("rms", "length") or arch["goodness"] not in ("mean", "sum"):
        raise EdgeFFError(f"{path}: cannot export normalization {arch['normalization']!r} / goodness "
                          f"{arch['goodness']!r}: the ONNX exporter knows rms/length and mean/sum")
    sizes, c, value = arch["sizes"], arch["n_classes"], float(arch["label_value"])
    n_layers, norm = len(sizes) - 1, arch["normalization"]
    w = [tensors[f"layers.{i}.weight"].astype(np.float32) for i in range(n_layers)]
    b = [tensors[f"layers.{i}.bias"].astype(np.float32) for i in range(n_layers)]

    g = GraphBuilder("edgeff_float")
    images = g.input("images", FLOAT, ["N", sizes[0]])
    tail = g.op("Slice", images, g.i64([c]), g.i64([sizes[0]]), g.i64([1]))       # the image pixels
    # first layer, every label at once: the labelled input's squared length is |tail|^2 + value^2
    divisor = sizes[0] if norm == "rms" else 1
    sumsq = g.op("ReduceSum", g.op("Mul", tail, tail), g.i64([1]), keepdims=1)
    scale = g.op("Reciprocal", g.op("Sqrt", g.op("Add", g.op("Div", g.op("Add", sumsq, _f32(g, value * value)),
                                                             _f32(g, divisor)), _f32(g, EPS))))
    shared = g.op("Add", g.op("Mul", g.op("MatMul", tail, _f32(g, np.ascontiguousarray(w[0][:, c:].T))), scale),
                  _f32(g, b[0]))                                                   # (N, H1)
    label_cols = _f32(g, (value * w[0][:, :c].T)[None])                              # (1, C, H1)
    h = g.op("Relu", g.op("Add", g.op("Unsqueeze", shared, g.i64([1])),
                          g.op("Mul", g.op("Unsqueeze", scale, g.i64([2])), label_cols)))    # (N, C, H1)
    h = g.op("Reshape", h, g.i64([-1, sizes[1]]))
    per_layer = [_goodness(g, h, arch["goodness"])]
    for i in range(1, n_layers):
        h = g.op("Relu", _dense(g, _normalize(g, h, norm), w[i], b[i]))
        per_layer.append(_goodness(g, h, arch["goodness"]))
    per_layer = [g.op("Unsqueeze", g.op("Reshape", x, g.i64([-1, c])), g.i64([0])) for x in per_layer]
    goodness = per_layer[0] if n_layers == 1 else g.op("Concat", *per_layer, axis=0)
    g.output("goodness", goodness, FLOAT, [n_layers, "N", c])
    chosen = g.op("Gather", goodness, g.i64([l - 1 for l in arch["eval_layers"]]), axis=0)
    g.output("scores", g.op("ReduceSum", chosen, g.i64([0]), keepdims=0), FLOAT, ["N", c])

    # one-pass head on the neutral input (every label pixel at value / n_classes)
    shape = g.op("Concat", g.op("Slice", g.op("Shape", images), g.i64([0]), g.i64([1])), g.i64([c]), axis=0)
    neutral = g.op("Expand", _f32(g, np.full((1, c), value / c)), shape)
    x, acts = g.op("Concat", neutral, tail, axis=1), []
    for i in range(n_layers):
        x = g.op("Relu", _dense(g, _normalize(g, x, norm), w[i], b[i]))
        acts.append(x)
    parts = [_normalize(g, acts[l - 1], norm) for l in arch["head_layers"]]
    features = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    logits = _dense(g, features, tensors["head.weight"].astype(np.float32), tensors["head.bias"].astype(np.float32))
    g.output("logits", logits, FLOAT, ["N", c])
    return g.model("EdgeFF float FF model: multi-pass goodness per layer and label, summed scores, one-pass "
                   "head logits; input pixels / 255")
