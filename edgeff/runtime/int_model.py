"""An int8 FF model as a board runs it: load, check, and infer with integers only.

The model walks its description's layers (edgeff.model_description), each through its kind's runtime facet
(edgeff/ops/<kind>/runtime.py, found by edgeff.op_registry), which loads, checks and runs that layer. The
layers' goodness is mapped to a common fixed point (GOODNESS_FRAC_BITS) so layers can be summed in
multi-pass inference. The head, an IntFullyConnected on the normalized activities of the head layers, holds
head.weight, head.bias, head.multiplier, head.shift; the collaboration strength per layer is gamma_q.
Everything here is integer arithmetic on int64 lanes that hold int8/int32 values, exactly as the firmware
computes them.
"""
from pathlib import Path

import numpy as np

from edgeff.data.labels import overlay_labels, overlay_neutral
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind, stored_architecture
from edgeff.model_file import is_layered, load_model
from edgeff.op_registry import layer_facet
from edgeff.runtime import backend, c_kernels
from edgeff.runtime.int_fully_connected import (
    ACT_MAX,
    ACT_MIN,
    IntFullyConnected,
    checked_tensor,
    fully_connected_tensors,
)
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import multiply_by_quantized_multiplier
from edgeff.scoring import evaluate_split

INPUT_SCALE = 1.0 / 255.0   # image pixel p enters as q = p - 128: exact
INPUT_ZERO_POINT = -128
GOODNESS_FRAC_BITS = 12     # multi-pass scores: real goodness in Q.12
GAMMA_FRAC_BITS = 8         # collaboration strength gamma in Q8
CHUNK_ACTIVATIONS = 1 << 19   # multi-pass work per chunk: image-labels x widest layer


class IntModel:
    """What every int8 model shares: its description's layers (each through its kind's runtime facet), the
    one-pass head, the header, and reading it from a model file. Each model class checks its own header in
    `_from_tensors`."""

    def __init__(self, description: ModelDescription, layers, head, arch, quant):
        self.description, self.layers, self.head, self.arch, self.quant = description, layers, head, arch, quant
        self.n_classes = arch["n_classes"]
        self.head_layers = arch["head_layers"]
        self.eval_layers = arch["eval_layers"]
        self.rounding = quant.get("rounding", "double")

    @property
    def facets(self) -> list:
        """Each layer's runtime facet (the code of its kind, from the op registry)."""
        return [layer_facet(spec, "runtime") for spec in self.description.layers]

    @classmethod
    def from_file(cls, path):
        path = Path(path)
        return cls.from_tensors(*load_model(path), where=path)

    @classmethod
    def from_tensors(cls, tensors: dict, header: dict, where="model"):
        """The model held by model-file tensors and header; `where` names their origin in errors."""
        try:
            return cls._from_tensors(where, tensors, header)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise EdgeFFError(f"{where}: the int8 model header is incomplete ({exc!r} is missing or malformed); "
                              "the file is corrupt or was not written by `edgeff quantize`") from None


def check_mlp(path, arch: dict) -> None:
    """Refuse, in one line saying what exists for it, a layered model where an FF MLP is needed: the FF MLP's
    integer model and trainer (a board takes a CwC model as board image format 2, over the link or compiled in)."""
    if is_layered(arch):   # edgeff.runtime.int_layered runs it, edgeff.runtime.int_layered_training trains it
        kinds = [layer["kind"] for layer in arch["layers"]]
        raise EdgeFFError(f"{path}: an int8 layered model ({', '.join(kinds)}; objective {arch['objective']}), "
                          "not an FF MLP: `edgeff board train` loads and trains it on a board over the link (the "
                          "virtual board, the EdgeFF firmware), `edgeff export` compiles it into the firmware "
                          "(board-header, arduino; --last-k) or exports it (onnx, tflite, c-header), `edgeff eval` "
                          "runs it and `edgeff finetune` trains it")


class IntFFModel(IntModel):
    def __init__(self, description: ModelDescription, layers, head, arch, quant, gamma_q):
        super().__init__(description, layers, head, arch, quant)
        self.gamma_q = gamma_q            # collaboration strength per layer, Q8 (0 for plain FF)

    @classmethod
    def _from_tensors(cls, path, tensors, header) -> "IntFFModel":
        arch, quant = header.get("architecture") or {}, header.get("quantization")
        if arch.get("kind") != ModelKind.INT8 or not isinstance(quant, dict):
            raise EdgeFFError(f"{path}: not an int8 FF model (architecture kind {arch.get('kind')!r}); "
                              "make one with `edgeff quantize MODEL --out MODEL_INT8`")
        check_mlp(path, arch)
        # an architecture built from a board image has only the layer sizes: stored_architecture gives it layers
        description = ModelDescription.from_header(stored_architecture(arch, str(path))["layers"], str(path))
        layers = [layer_facet(spec, "runtime").load(spec, i, tensors, quant["layers"][i], path)
                  for i, spec in enumerate(description.layers)]
        d_head = sum(description.sizes[l] for l in arch["head_layers"])
        n = arch["n_classes"]
        head = IntFullyConnected(*fully_connected_tensors(path, tensors, "head.", (n, d_head)), 0, ACT_MIN)
        gamma_q = checked_tensor(path, tensors, "gamma_q", np.int32, (len(layers),))
        return cls(description, layers, head, arch, quant, gamma_q)

    def tensors(self) -> dict:
        """The model's current integer tensors, by their model-file names (for saving)."""
        out = {"gamma_q": np.asarray(self.gamma_q, np.int32)}
        for i, (facet, layer) in enumerate(zip(self.facets, self.layers, strict=True)):
            out |= facet.tensors(layer, i)
        return out | self.head.tensors("head.")

    # ------------------------------------------------------------------ inputs
    def check_images(self, images: np.ndarray):
        d = self.arch["sizes"][0]
        if images.ndim != 2 or images.shape[1] != d or images.dtype != np.uint8:
            raise EdgeFFError(f"input images must be uint8 of shape (N, {d}); got {images.dtype} "
                              f"{list(images.shape)}")

    def check_labels(self, labels, n: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise EdgeFFError(f"labels must be {n} integers, one per image; got {labels.dtype} {list(labels.shape)}")
        if n and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise EdgeFFError(f"labels must lie in 0..{self.n_classes - 1}; got {labels.min()}..{labels.max()}")
        return labels.astype(np.int64)

    def quantize_images(self, images: np.ndarray, labels=None) -> np.ndarray:
        """int8 q = pixel - 128, label pixels overwritten (one-hot label_q, or the neutral value for one-pass)."""
        self.check_images(images)
        q = (images ^ np.uint8(0x80)).view(np.int8)   # p - 128 in int8 is p with its top bit flipped
        c = self.n_classes
        if labels is None:
            return overlay_neutral(q, c, self.quant["neutral_label_q"])
        return overlay_labels(q, self.check_labels(labels, len(q)), c, self.quant["label_q"], INPUT_ZERO_POINT)

    # ------------------------------------------------------------------ layers
    def forward_layers(self, q: np.ndarray, first: int = 0, in_zero_point: int = INPUT_ZERO_POINT):
        """(normalized inputs, int8 outputs, raw goodness) of layers first.. for the input q of layer `first`."""
        ns, acts, raw = [], [], []
        for i in range(first, len(self.layers)):
            n, q, g = self.layers[i].forward_with_goodness(q, in_zero_point, self.rounding)
            in_zero_point = self.layers[i].out_zero_point
            ns.append(n)
            acts.append(q)
            raw.append(g)
        return ns, acts, raw

    def activities(self, q: np.ndarray) -> list:
        return self.forward_layers(q)[1]

    def scaled_goodness(self, i: int, g: np.ndarray) -> np.ndarray:
        """Integer goodness of layer i in the common fixed point (real mean goodness * 2^12)."""
        layer = self.layers[i]
        return multiply_by_quantized_multiplier(g, layer.goodness_multiplier, layer.goodness_shift, self.rounding)

    # ------------------------------------------------------------------ multi-pass and one-pass
    def label_scores(self, images: np.ndarray, chunk=None) -> np.ndarray:
        """(n_layers, N, n_classes) int goodness (common fixed point) of every layer for every label."""
        return self.layer_goodness(list(self.raw_label_goodness(images, chunk)))

    def raw_label_goodness(self, images: np.ndarray, chunk=None) -> np.ndarray:
        """(n_layers, N, n_classes) raw goodness sum (q - zp)^2 of every layer for every label.

        The first layer's facet computes every label's rows at once (every_label_outputs); later layers run on
        all N * n_classes rows. Chunks of about 2^19 activations keep the temporaries in cache while
        amortizing the per-call overhead; they run in parallel, one core each (c_kernels.map_chunks).
        """
        self.check_images(images)
        chunk = chunk or max(16, CHUNK_ACTIVATIONS // (self.n_classes * max(self.arch["sizes"][1:])))
        parts = c_kernels.map_chunks(self._raw_label_goodness,
                                     [images[s:s + chunk] for s in range(0, len(images), chunk)])
        return np.concatenate(parts, axis=1)

    def _raw_label_goodness(self, images):
        c, first = self.n_classes, self.layers[0]
        q0 = self.quantize_images(images, np.zeros(len(images), np.int64))
        a, g = self.facets[0].every_label_outputs(first, q0, INPUT_ZERO_POINT, c, self.rounding)
        raw = [np.asarray(g, np.int64)] + self.forward_layers(a, 1, first.out_zero_point)[2]
        return np.stack(raw).reshape(len(self.layers), len(images), c)

    def multi_pass_scores(self, images: np.ndarray) -> np.ndarray:
        """(N, n_classes) goodness summed over the model's chosen evaluation layers."""
        return self.label_scores(images)[np.array(self.eval_layers) - 1].sum(axis=0)

    def layer_goodness(self, raw: list) -> np.ndarray:
        """(n_layers, rows) every layer's raw goodness (forward_layers) in the common fixed point."""
        return np.stack([self.scaled_goodness(i, g) for i, g in enumerate(raw)])

    def head_logits(self, images: np.ndarray) -> np.ndarray:
        acts = self.activities(self.quantize_images(images))
        parts = [backend.kernels().l2_normalization(acts[l - 1], self.layers[l - 1].out_zero_point, NORM_BITS_INT8,
                                                    ACT_MIN, ACT_MAX, self.rounding) for l in self.head_layers]
        return self.head.forward(np.concatenate(parts, axis=1), self.rounding)


def evaluate_int(model: IntFFModel, images: np.ndarray, labels: np.ndarray, layers, mode="both") -> dict:
    """Accuracies of the integer model on one split, in the same form as the float evaluate()."""
    return evaluate_split(lambda: model.label_scores(images),
                          lambda: model.head_logits(images).argmax(axis=1), labels, layers, mode)
