"""A layered int8 FF model (conv blocks, max pooling, flatten, dense; channel-wise competitive FF) as a board
would run it: load, check, and infer with integers only.

The model walks its description's layers, each through its kind's runtime facet (edgeff/ops/<kind>/runtime.py,
found by edgeff.op_registry): `load` checks its tensors, `forward` runs it on the active kernel set
(edgeff.runtime.backend). The image enters as q = pixel - 128 (scale 1/255, zero point -128), NHWC
(edgeff.runtime.layout). Every layer's output scores each class by its class goodness
(edgeff.runtime.class_goodness), mapped to the common fixed point by the model's class_goodness_multiplier /
class_goodness_shift; the decision is the argmax of their sum over the evaluation layers, as the float model's
(edgeff.scoring). The one-pass head, an IntFullyConnected over the L2-normalized, channel-major flattened
outputs of the head layers, gives int8 logits (head.*), as the MLP's.

Integer training of it is edgeff.runtime.int_layered_training's; its board image is format 2
(firmware_bridge/board_image.py), which boards train over the link (firmware_bridge/board_models.py, board_protocol.c);
the TFLite and ONNX exports (edgeff/export/tflite_layered.py, onnx_layered.py) write what this model computes.
"""

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.op_registry import layer_facet
from edgeff.runtime import backend
from edgeff.runtime.class_goodness import (
    check_group_size,
    check_scores_fit,
    class_goodness,
    group_values,
    map_class_goodness,
)
from edgeff.runtime.int_fully_connected import (
    ACT_MAX,
    ACT_MIN,
    IntFullyConnected,
    check_requantization,
    checked_tensor,
    fully_connected_tensors,
)
from edgeff.runtime.int_model import GOODNESS_FRAC_BITS, INPUT_SCALE, INPUT_ZERO_POINT, IntModel
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.layout import flatten_channel_major, image_nhwc

CHUNK = 500   # images per pass: the first block's NHWC output of 500 28x28 images x 20 channels is 7.8 MB


class IntLayeredModel(IntModel):
    def __init__(self, description: ModelDescription, layers, head, arch, quant, class_multiplier, class_shift):
        super().__init__(description, layers, head, arch, quant)
        self.class_multiplier, self.class_shift = class_multiplier, class_shift

    @classmethod
    def _from_tensors(cls, where, tensors, header) -> "IntLayeredModel":
        arch, quant = header.get("architecture") or {}, header.get("quantization")
        if arch.get("kind") != ModelKind.INT8 or not isinstance(quant, dict) or arch.get("objective") != "cwc":
            raise EdgeFFError(f"{where}: not an int8 layered (cwc) model; make one with `edgeff quantize MODEL "
                              "--out MODEL_INT8` from a layered model trained with objective cwc")
        description = ModelDescription.from_header(arch["layers"], str(where))
        _check_header(where, arch, quant, description)
        entries = quant["layers"]
        zero_point, scale = INPUT_ZERO_POINT, INPUT_SCALE
        for i, entry in enumerate(entries):   # each layer was quantized for the output of the one before
            if (entry["in_zero_point"], entry["in_scale"]) != (zero_point, scale):
                raise EdgeFFError(f"{where}: layer {i + 1}'s input quantization does not match the output of the "
                                  "layer before it; the file is corrupt")
            zero_point, scale = entry["out_zero_point"], entry["out_scale"]
        layers = [layer_facet(spec, "runtime").load(spec, i, tensors, entries[i], where)
                  for i, spec in enumerate(description.layers)]
        n, per_layer = arch["n_classes"], (len(layers),)
        mult = checked_tensor(where, tensors, "class_goodness_multiplier", np.int32, per_layer)
        shift = checked_tensor(where, tensors, "class_goodness_shift", np.int32, per_layer)
        counts = [group_values(spec.out_shape, n) for spec in description.layers]
        for i, count in enumerate(counts):
            check_group_size(where, i + 1, count)
        check_requantization(where, "class_goodness_multiplier", mult, shift)
        check_scores_fit(where, counts, mult, shift, quant.get("rounding", "double"))
        d_head = sum(description.sizes[l] for l in arch["head_layers"])
        head = IntFullyConnected(*fully_connected_tensors(where, tensors, "head.", (n, d_head)), 0, ACT_MIN)
        return cls(description, layers, head, arch, quant, mult, shift)

    def tensors(self) -> dict:
        """The model's integer tensors by their model-file names."""
        out = {"class_goodness_multiplier": self.class_multiplier, "class_goodness_shift": self.class_shift}
        for i, (facet, layer) in enumerate(zip(self.facets, self.layers, strict=True)):
            out |= facet.tensors(layer, i)
        return out | self.head.tensors("head.")

    # ------------------------------------------------------------------ inputs and layers
    def quantize_images(self, images: np.ndarray) -> np.ndarray:
        """int8 q = pixel - 128, shaped as the first layer takes it (NHWC for an image-shaped input)."""
        d = self.description.layers[0].n_inputs
        if images.ndim != 2 or images.shape[1] != d or images.dtype != np.uint8:
            raise EdgeFFError(f"input images must be uint8 of shape (N, {d}); got {images.dtype} "
                              f"{list(images.shape)}")
        q = (images ^ np.uint8(0x80)).view(np.int8)   # p - 128 in int8 is p with its top bit flipped
        shape = self.description.input_shape
        return image_nhwc(q, shape) if len(shape) == 3 else q

    def activities(self, images: np.ndarray) -> list:
        """Every layer's int8 output (NHWC, or rows after a flatten) for uint8 images."""
        q, zero_point, out = self.quantize_images(images), INPUT_ZERO_POINT, []
        for facet, layer in zip(self.facets, self.layers, strict=True):
            q = facet.forward(layer, q, zero_point, self.rounding)
            zero_point = layer.out_zero_point
            out.append(q)
        return out

    # ------------------------------------------------------------------ the decision and the head
    def raw_class_goodness(self, images: np.ndarray) -> np.ndarray:
        """(n_layers, N, n_classes) int64 class goodness G of every layer (sums of (q - zp)^2)."""
        parts = []
        for s in range(0, len(images), CHUNK):
            acts = self.activities(images[s:s + CHUNK])
            parts.append(np.stack([class_goodness(a, layer.out_zero_point, self.n_classes)
                                   for a, layer in zip(acts, self.layers, strict=True)]))
        return np.concatenate(parts, axis=1)

    def layer_goodness(self, raw: np.ndarray) -> np.ndarray:
        """raw class goodness (n_layers, ...) in the common fixed point (real mean square * 2^12)."""
        return map_class_goodness(raw, self.class_multiplier, self.class_shift, self.rounding)

    def label_scores(self, images: np.ndarray) -> np.ndarray:
        """(n_layers, N, n_classes) every layer's class goodness in the common fixed point."""
        return self.layer_goodness(self.raw_class_goodness(images))

    def multi_pass_scores(self, images: np.ndarray) -> np.ndarray:
        """(N, n_classes) class goodness summed over the model's evaluation layers."""
        return self.label_scores(images)[np.array(self.eval_layers) - 1].sum(axis=0)

    def head_logits(self, images: np.ndarray) -> np.ndarray:
        """(N, n_classes) int8 logits of the one-pass head."""
        parts = []
        for s in range(0, len(images), CHUNK):
            acts = self.activities(images[s:s + CHUNK])
            rows = [a if a.ndim == 2 else flatten_channel_major(a) for a in (acts[l - 1] for l in self.head_layers)]
            normalized = [backend.kernels().l2_normalization(r, self.layers[l - 1].out_zero_point, NORM_BITS_INT8,
                                                             ACT_MIN, ACT_MAX, self.rounding)
                          for r, l in zip(rows, self.head_layers, strict=True)]
            parts.append(self.head.forward(np.concatenate(normalized, axis=1), self.rounding))
        return np.concatenate(parts)


def _check_header(where, arch: dict, quant: dict, description: ModelDescription):
    """Refuse, naming the field, a header whose decision fields the kernels would trust: the rounding, the
    goodness fixed point the class-goodness multipliers were made for, the classes and the layers scored."""
    n_layers, n = len(description.layers), arch["n_classes"]
    if quant.get("rounding", "double") not in ("double", "single"):
        raise EdgeFFError(f"{where}: rounding {quant.get('rounding')!r} must be double or single; the file is corrupt")
    if quant["goodness_frac_bits"] != GOODNESS_FRAC_BITS:
        raise EdgeFFError(f"{where}: goodness_frac_bits {quant['goodness_frac_bits']!r} is not this runtime's "
                          f"{GOODNESS_FRAC_BITS}; quantize the float model again with this EdgeFF")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 2):
        raise EdgeFFError(f"{where}: n_classes {n!r} must be a whole number of at least 2; the file is corrupt")
    for i, spec in enumerate(description.layers):
        if spec.out_shape[0] % n:
            raise EdgeFFError(f"{where}: layer {i + 1}'s {spec.out_shape[0]} channels do not split into {n} class "
                              "groups; the file is corrupt")
    for key in ("eval_layers", "head_layers"):
        layers = arch[key]
        # ascending, each once: as a config gives them, and as a board's layer mask holds them
        if not (isinstance(layers, list) and layers and all(
                isinstance(l, int) and not isinstance(l, bool) and 1 <= l <= n_layers for l in layers)
                and layers == sorted(set(layers))):
            raise EdgeFFError(f"{where}: {key} {layers!r} must list layers from 1 to {n_layers} in ascending order, "
                              "each once; the file is corrupt")
