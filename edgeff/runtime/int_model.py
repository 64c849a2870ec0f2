"""An int8 FF model as a board runs it: load, check, and infer with integers only.

Tensors per layer i (see edgeff.quant.ptq for how they are made): weight int8 (out, in), bias int32
(int64 in 16x8 mode),
multiplier/shift int32 per output channel, goodness_multiplier/shift (1,) mapping the layer's integer
goodness to a common fixed point (GOODNESS_FRAC_BITS) so layers can be summed in multi-pass inference.
The head: weight, bias, multiplier, shift. Everything here is integer arithmetic on int64 lanes that
hold int8/int32 values, exactly as the firmware computes them.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeff.data.labels import overlay_labels, overlay_neutral
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import load_model
from edgeff.runtime import backend, c_kernels
from edgeff.runtime.fully_connected import accumulate
from edgeff.runtime.requantize import INT32_MAX, multiply_by_quantized_multiplier
from edgeff.scoring import evaluate_split

INPUT_SCALE = 1.0 / 255.0   # image pixel p enters as q = p - 128: exact
INPUT_ZERO_POINT = -128
NORM_BITS_INT8 = 7          # TFLite L2_NORMALIZATION: int8 output, scale 2^-7, zero point 0
NORM_BITS_INT16 = 15        # the same kernel with an int16 output (scale 2^-15), feeding a 16x8 FC
GOODNESS_FRAC_BITS = 12     # multi-pass scores: real goodness in Q.12
GAMMA_FRAC_BITS = 8         # collaboration strength gamma in Q8
ACT_MIN, ACT_MAX = -128, 127
CHUNK_ACTIVATIONS = 1 << 19   # multi-pass work per chunk: image-labels x widest layer


@dataclass
class IntLayer:
    weight: np.ndarray        # int8 (out, in)
    bias: np.ndarray          # int32 (out,); int64 after a 16-bit normalization
    multiplier: np.ndarray    # int32 (out,)
    shift: np.ndarray         # int32 (out,)
    out_zero_point: int
    act_min: int              # fused ReLU: the output zero point; no activation: -128
    goodness_multiplier: int
    goodness_shift: int
    norm_bits: int = NORM_BITS_INT8   # width of this layer's normalized input: 7 (int8) or 15 (int16)

    def normalize(self, a: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
        """L2-normalize this layer's input: int8 (TFLite) or int16 (16x8 mode), zero point 0."""
        limit = 1 << self.norm_bits  # int8: [-128, 127]; int16: [-32768, 32767]
        return backend.kernels().l2_normalization(a, zero_point, self.norm_bits, -limit, limit - 1, rounding)

    def forward(self, n: np.ndarray, rounding: str) -> np.ndarray:
        """FullyConnected on the normalized input n (zero point 0)."""
        return self.requantize(accumulate(n, self.weight, 0), rounding)

    def requantize(self, acc: np.ndarray, rounding: str) -> np.ndarray:
        return backend.kernels().requantize_output(acc, self.bias, self.multiplier, self.shift, self.out_zero_point,
                                                   self.act_min, ACT_MAX, rounding, self.norm_bits > NORM_BITS_INT8)

    def forward_with_goodness(self, a: np.ndarray, zero_point: int, rounding: str):
        """(normalized input, int8 output, raw int goodness) for rows a of int8 input."""
        return backend.kernels().ff_layer(a, zero_point, self.weight, self.bias, self.multiplier, self.shift,
                                          self.out_zero_point, self.act_min, self.norm_bits, rounding)


def _tensor(path, tensors, name, dtype, shape):
    if name not in tensors:
        raise EdgeFFError(f"{path}: tensor '{name}' is missing")
    t = tensors[name]
    if t.dtype != np.dtype(dtype) or tuple(t.shape) != tuple(shape):
        raise EdgeFFError(f"{path}: tensor '{name}' is {t.dtype}{list(t.shape)}, expected "
                          f"{np.dtype(dtype)}{list(shape)}")
    return t


def _check_requant(path, name, mult, shift):
    bad = (mult != 0) & ((mult < (1 << 30)) | (mult > INT32_MAX))
    if bad.any() or (shift < -31).any() or (shift > 30).any():
        raise EdgeFFError(f"{path}: '{name}' holds an invalid quantized multiplier/shift (multipliers must "
                          "be 0 or in [2^30, 2^31), shifts in [-31, 30]); the file is corrupt or was not "
                          "written by `edgeff quantize`")


class IntFFModel:
    def __init__(self, layers, head, arch, quant, gamma_q):
        self.layers, self.head, self.arch, self.quant = layers, head, arch, quant
        self.gamma_q = gamma_q            # collaboration strength per layer, Q8 (0 for plain FF)
        self.n_classes = arch["n_classes"]
        self.head_layers = arch["head_layers"]
        self.eval_layers = arch["eval_layers"]
        self.rounding = quant.get("rounding", "double")

    @classmethod
    def from_file(cls, path) -> "IntFFModel":
        path = Path(path)
        return cls.from_tensors(*load_model(path), where=path)

    @classmethod
    def from_tensors(cls, tensors: dict, header: dict, where="model") -> "IntFFModel":
        """The model held by model-file tensors and header; `where` names their origin in errors."""
        try:
            return cls._from_tensors(where, tensors, header)
        except (KeyError, TypeError, IndexError) as exc:
            raise EdgeFFError(f"{where}: the int8 model header is incomplete ({exc!r} is missing or malformed); "
                              "the file is corrupt or was not written by `edgeff quantize`") from None

    @classmethod
    def _from_tensors(cls, path, tensors, header) -> "IntFFModel":
        arch, quant = header.get("architecture") or {}, header.get("quantization")
        if arch.get("kind") != ModelKind.INT8 or not isinstance(quant, dict):
            raise EdgeFFError(f"{path}: not an int8 FF model (architecture kind {arch.get('kind')!r}); "
                              "make one with `edgeff quantize MODEL --out MODEL_INT8`")
        sizes = arch["sizes"]
        layers = []
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            p = f"layers.{i}."
            mult = _tensor(path, tensors, p + "multiplier", np.int32, (d_out,))
            shift = _tensor(path, tensors, p + "shift", np.int32, (d_out,))
            gm = _tensor(path, tensors, p + "goodness_multiplier", np.int32, (1,))
            gs = _tensor(path, tensors, p + "goodness_shift", np.int32, (1,))
            _check_requant(path, p + "multiplier", mult, shift)
            _check_requant(path, p + "goodness_multiplier", gm, gs)
            zp = quant["layers"][i]["out_zero_point"]
            if not ACT_MIN <= zp <= ACT_MAX:
                raise EdgeFFError(f"{path}: layer {i + 1} output zero point {zp} is outside int8")
            bits = quant["layers"][i].get("norm_bits", NORM_BITS_INT8)
            if bits not in (NORM_BITS_INT8, NORM_BITS_INT16):
                raise EdgeFFError(f"{path}: layer {i + 1} norm_bits {bits} must be 7 (int8) or 15 (int16)")
            bias_dtype = np.int32 if bits == NORM_BITS_INT8 else np.int64
            layers.append(IntLayer(_tensor(path, tensors, p + "weight", np.int8, (d_out, d_in)),
                                   _tensor(path, tensors, p + "bias", bias_dtype, (d_out,)),
                                   mult, shift, zp, max(ACT_MIN, zp), int(gm[0]), int(gs[0]), bits))
        d_head = sum(sizes[l] for l in arch["head_layers"])
        n = arch["n_classes"]
        hm, hs = (_tensor(path, tensors, "head.multiplier", np.int32, (n,)),
                  _tensor(path, tensors, "head.shift", np.int32, (n,)))
        _check_requant(path, "head.multiplier", hm, hs)
        head = IntLayer(_tensor(path, tensors, "head.weight", np.int8, (n, d_head)),
                        _tensor(path, tensors, "head.bias", np.int32, (n,)), hm, hs, 0, ACT_MIN, 0, 0)
        gamma_q = _tensor(path, tensors, "gamma_q", np.int32, (len(layers),))
        return cls(layers, head, arch, quant, gamma_q)

    def tensors(self) -> dict:
        """The model's current integer tensors, by their model-file names (for saving)."""
        out = {"gamma_q": np.asarray(self.gamma_q, np.int32)}
        for prefix, layer in [(f"layers.{i}.", l) for i, l in enumerate(self.layers)] + [("head.", self.head)]:
            out |= {prefix + "weight": layer.weight, prefix + "bias": layer.bias,
                    prefix + "multiplier": layer.multiplier, prefix + "shift": layer.shift}
            if prefix != "head.":
                out[prefix + "goodness_multiplier"] = np.array([layer.goodness_multiplier], np.int32)
                out[prefix + "goodness_shift"] = np.array([layer.goodness_shift], np.int32)
        return out

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

        One-hot labels of one value leave the L2 norm of the input the same for every label, so the
        first layer's normalized input differs only in the label pixels: one shared accumulation plus
        the label pixel's column, bit-identical to n_classes separate passes (tested). Chunks of about
        2^19 activations keep the temporaries in cache while amortizing the per-call overhead; they run
        in parallel, one core each (c_kernels.map_chunks).
        """
        self.check_images(images)
        chunk = chunk or max(16, CHUNK_ACTIVATIONS // (self.n_classes * max(self.arch["sizes"][1:])))
        parts = c_kernels.map_chunks(self._raw_label_goodness,
                                     [images[s:s + chunk] for s in range(0, len(images), chunk)])
        return np.concatenate(parts, axis=1)

    def _raw_label_goodness(self, images):
        c, first = self.n_classes, self.layers[0]
        q0 = self.quantize_images(images, np.zeros(len(images), np.int64))
        n = first.normalize(q0, INPUT_ZERO_POINT, self.rounding)
        n_label = n[:, 0].copy()                      # the normalized label pixel (same for every label)
        n[:, :c] = 0                                   # unlabelled pixels are 0.0: centred 0, normalized 0
        shared = accumulate(n, first.weight, 0)        # (N, out), exact
        label_columns = first.weight[:, :c].T.astype(np.int32)                   # (C, out)
        a, g = backend.kernels().label_rows(shared, n_label, label_columns, first.bias, first.multiplier,
                                            first.shift, first.out_zero_point, first.act_min, first.norm_bits,
                                            self.rounding)
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
