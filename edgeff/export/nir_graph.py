"""The float FF model as a NIR graph of rate-coded integrate-and-fire neurons (`edgeff export --format nir`).

The graph: Input (a constant current: the one-pass input, normalized by the host that sets the currents) ->
per layer, its kind's nodes (edgeff/ops/<kind>/nir_writer.py: Affine -> IF for dense) -> the one-pass head as
one Affine per head layer on that layer's spikes -> Output. The Output's input summed over T steps and divided
by T approximates the ANN's logits; its argmax is the one-pass prediction.

Calibration (on training images, as `edgeff quantize`): each layer's threshold is a high percentile of its
activities (default DEFAULT_PERCENTILE), so that a neuron's rate (spikes per step, at most 1) times its threshold
is its activity; each FF length normalization between layers, which NIR cannot express (it divides by a
per-sample norm), becomes a constant: its mean on the calibration data, folded into the next Affine's weights.
The calibration runs the network the graph stands for (the "rate model": folded scales, activities clipped at
the thresholds), so each layer is calibrated on the inputs it will see.

Reset: NIR's IF rule resets to v_reset (0 here). The rate a / threshold is exact for reset by subtraction (what
sinabs does); reset to zero discards the charge above the threshold at every spike and fires slower, the more
so the higher the rate. `edgeff verify` runs both and reports what each costs.
"""
import io
import json

import numpy as np

from edgeff.data.labels import overlay_labels, overlay_neutral
from edgeff.errors import EdgeFFError
from edgeff.export.provenance import KEY, source_record
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.model_file import load_model
from edgeff.op_registry import facets_of, layer_facet

EPS = 1e-8   # the trainer's (edgeff/train/network.py): the ANN reference normalizes exactly as it does
DEFAULT_PERCENTILE = 99.9
CONVERSION_KEY = "edgeff_conversion"   # the graph's metadata: the conversion settings, as JSON
FORMAT_VERSION = 1
SUFFIX = ".nir"


def nir_package():
    """The nir package (the export extra), or a refusal that says how to install it."""
    try:
        import nir
    except ImportError:
        raise EdgeFFError("NIR export and verification need the nir package: pip install 'edgeff[export]'") from None
    return nir


def row_scale(x: np.ndarray, kind: str) -> np.ndarray:
    """The FF normalization's factor per row: to unit mean square ("rms") or unit length ("length")."""
    sq = (x * x).mean(axis=1, keepdims=True) if kind == "rms" else (x * x).sum(axis=1, keepdims=True)
    return 1.0 / np.sqrt(sq + EPS)


def if_population(n: int, threshold: float):
    """n IF neurons of one threshold, r = 1 (a step integrates its input current), reset to 0."""
    return nir_package().IF(r=np.ones(n, np.float32), v_threshold=np.full(n, threshold, np.float32),
                  v_reset=np.zeros(n, np.float32))


class FloatModel:
    """A float dense FF model file, as the NIR export and its verification read it (NumPy, float64)."""

    def __init__(self, path):
        tensors, header = load_model(path)
        arch = header.get("architecture") or {}
        if arch.get("kind") != ModelKind.FLOAT or arch.get("qat"):
            what = "an int8 model" if arch.get("kind") == ModelKind.INT8 else (
                "a quantization-aware model" if arch.get("qat") else f"architecture kind {arch.get('kind')!r}")
            raise EdgeFFError(f"{path}: {what}; the NIR export takes a float FF model from `edgeff train` of dense "
                              "layers (rate-coded IF neurons carry its float weights): export the float model")
        self.description = ModelDescription.from_header(arch["layers"], str(path))
        self.layers = self.description.layers
        unsupported = [f"layer {i + 1} is {spec.kind}" for i, spec in enumerate(self.layers)
                       if "nir_writer" not in facets_of(spec.kind)]
        if unsupported:
            raise EdgeFFError(f"{path}: {', '.join(unsupported)}; the NIR export supports "
                              "float FF models of dense layers (no convolutional ones yet)")
        self.path, self.header, self.arch = path, header, arch
        self.writers = [layer_facet(spec, "nir_writer") for spec in self.layers]
        self.params = [writer.parameters(spec, i, tensors)
                       for i, (writer, spec) in enumerate(zip(self.writers, self.layers, strict=True))]
        self.head = (tensors["head.weight"].astype(np.float64), tensors["head.bias"].astype(np.float64))

    def currents(self, images: np.ndarray, label=None) -> np.ndarray:
        """The constant input currents for uint8 images: pixels / 255, every label pixel at label_value /
        n_classes (the one-pass input) or one label's pixel at label_value (a multi-pass run), normalized as
        the first layer normalizes its input."""
        c, value = self.arch["n_classes"], float(self.arch["label_value"])
        x = images.astype(np.float64) / 255.0
        x = (overlay_neutral(x, c, value / c) if label is None
             else overlay_labels(x, np.full(len(x), label), c, value))
        return x * row_scale(x, self.layers[0].normalization)

    def goodness(self, acts: list) -> np.ndarray:
        """(n_layers, N) goodness of every layer's activities: mean or sum of squares, as the model scores."""
        return np.stack([(a * a).mean(axis=1) if self.arch["goodness"] == "mean" else (a * a).sum(axis=1)
                         for a in acts])

    def label_scores(self, images: np.ndarray) -> np.ndarray:
        """(n_layers, N, n_classes) the ANN's goodness for every label (multi-pass)."""
        return np.stack([self.goodness(self.activities(self.currents(images, k)))
                         for k in range(self.arch["n_classes"])], axis=-1)

    def activities(self, currents: np.ndarray) -> list:
        """The ANN's activities of every layer, with its exact per-sample normalizations."""
        acts, x = [], currents
        for i, (writer, spec, params) in enumerate(zip(self.writers, self.layers, self.params, strict=True)):
            x = writer.forward(spec, params, x, 1.0 if i == 0 else row_scale(x, spec.normalization))
            acts.append(x)
        return acts

    def head_blocks(self) -> list:
        """(layer number, the head's weight columns of its features) for every head layer."""
        blocks, start = [], 0
        for layer in self.arch["head_layers"]:
            width = self.layers[layer - 1].n_outputs
            blocks.append((layer, self.head[0][:, start:start + width]))
            start += width
        return blocks

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The ANN's one-pass logits."""
        acts = self.activities(self.currents(images))
        kind = self.arch["normalization"]
        return sum(acts[layer - 1] * row_scale(acts[layer - 1], kind) @ block.T
                   for layer, block in self.head_blocks()) + self.head[1]


def convert(model: FloatModel, calibration_images: np.ndarray, percentile: float = DEFAULT_PERCENTILE):
    """The model as a NIR graph (types inferred and checked), calibrated on calibration_images."""
    nir = nir_package()

    if not 0 < percentile <= 100:
        raise EdgeFFError(f"percentile {percentile} must lie in (0, 100]")
    n = len(calibration_images)
    x = model.currents(calibration_images)
    nodes = {"input": nir.Input(input_type={"input": np.array([model.layers[0].n_inputs])})}
    edges, previous, in_threshold, rates, records = [], "input", 1.0, [], []
    for i, (writer, spec, params) in enumerate(zip(model.writers, model.layers, model.params, strict=True)):
        scale = 1.0 if i == 0 else float(row_scale(x, spec.normalization).mean())
        a = writer.forward(spec, params, x, scale)
        threshold = float(np.percentile(a, percentile))
        if threshold <= 0:
            raise EdgeFFError(f"{model.path}: layer {i + 1} is silent on the {n} calibration images (its "
                              f"{percentile} percentile activity is 0): calibrate on more images or a higher "
                              "percentile")
        for part, node in writer.nodes(spec, params, scale, in_threshold, threshold).items():
            name = f"layer{i + 1}_{part}"
            nodes[name] = node
            edges.append((previous, name))
            previous = name
        records.append({"layer": i + 1, "kind": spec.kind, "normalization_scale": scale, "threshold": threshold,
                        "clipped_fraction": float((a > threshold).mean())})
        x = np.minimum(a, threshold)   # a rate saturates at one spike per step
        rates.append((previous, x, threshold))
        in_threshold = threshold
    head_scales = []
    for j, (layer, block) in enumerate(model.head_blocks()):
        population, acts, threshold = rates[layer - 1]
        scale = float(row_scale(acts, model.arch["normalization"]).mean())
        bias = model.head[1] if j == 0 else np.zeros_like(model.head[1])
        nodes[f"head{layer}"] = nir.Affine(weight=(block * (scale * threshold)).astype(np.float32),
                                           bias=bias.astype(np.float32))
        edges += [(population, f"head{layer}"), (f"head{layer}", "output")]
        head_scales.append({"layer": layer, "normalization_scale": scale})
    nodes["output"] = nir.Output(output_type={"output": np.array([model.arch["n_classes"]])})
    settings = {
        "format": "edgeff-nir", "version": FORMAT_VERSION, "neuron": "IF, r = 1, v_reset = 0, one step = dt 1",
        "coding": "rate: a neuron's spikes per step times its threshold is its ANN activity",
        "input": "constant current every step: pixels / 255, every label pixel at label_value / n_classes, "
                 f"scaled to unit {model.layers[0].normalization} by the host",
        "reset": "NIR's IF rule resets to v_reset = 0; the thresholds assume reset by subtraction (sinabs'), under "
                 "which rate = current / threshold exactly",
        "readout": "one-pass head: sum the Output's input over T steps, divide by T: the ANN's logits; argmax",
        "multi_pass": "not in the graph (goodness squares activities, which NIR cannot): run the graph once per "
                      "label with that label's overlay as input current and score squared spike rates, "
                      f"{model.arch['n_classes']} runs per sample",
        "normalization": "FF's per-sample normalization between layers is a constant: its mean on the calibration "
                         "data, folded into the next Affine's weights",
        "percentile": percentile, "calibration_images": n, "layers": records, "head": head_scales,
        "n_classes": model.arch["n_classes"]}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                         metadata={KEY: source_record(model.path, ModelKind.FLOAT),
                                   CONVERSION_KEY: json.dumps(settings, sort_keys=True)})
    graph.infer_types()
    graph.check_types()
    return graph


def to_bytes(graph) -> bytes:
    """The graph as the bytes of a .nir (HDF5) file, for an atomic write."""
    buffer = io.BytesIO()
    nir_package().write(buffer, graph)
    return buffer.getvalue()


def read(path):
    """A .nir file read back with nir.read; a file that is not one is refused by name."""
    nir = nir_package()
    try:
        return nir.read(str(path))
    except Exception as exc:  # noqa: BLE001  h5py and nir raise whatever a damaged or foreign file provokes
        raise EdgeFFError(f"{path}: not a readable NIR file ({type(exc).__name__}: {exc}); export one with "
                          "`edgeff export MODEL --format nir --out FILE.nir`") from None


def metadata_text(graph, key: str) -> str | None:
    """A string the graph's metadata holds (HDF5 gives it back as bytes), or None."""
    value = (graph.metadata or {}).get(key)
    return value.decode() if isinstance(value, bytes) else value
