"""Integer-only FF / CFF training: the learning rule a board runs, with no float anywhere in a step.

One step on samples (x, y) with negative labels y':
 1. Forward the positive and the negative input through every layer (the integer inference kernels),
    keeping each layer's normalized input n (int8) and output a (int8), and its goodness G in the
    common Q.12 fixed point.
 2. Collaboration (Beigzad 2025 eq. 5): Gc_l = G_l + (gamma_l * A * sum_{k!=l} G_k) >> 16, where gamma_l and
    A = 1/(L-1) are Q8 integers (int64 product). Plain FF has gamma = 0.
 3. Loss derivative from a 256-entry sigmoid table (Q15) indexed by the loss argument in Q4:
      SymBa:    e = sigma(-alpha (Gc+ - Gc-)) for both passes;
      softplus: e+ = sigma(theta - Gc+), e- = sigma(Gc- - theta).
 4. Each layer's local update, by its kind's runtime facet (edgeff/ops/<kind>/runtime.py, `update`) from
    its normalized input, its output and the signed loss derivative c = +e+ on positive rows, -e- on
    negative rows: for a dense layer, int16 master weights and master biases move by the integer gradient
    at a power-of-two learning rate 2^-lr_shift, and the forward pass's int8 weights are their rounding.
    Rounding is stochastic (floor after adding a uniform integer from integer_hash, unbiased) or
    deterministic (round half away from zero).
 5. A-CFF: gamma_l (Q8) += round(sum_rows c * S_l / 2^gamma_shift), S_l the coupled goodness sum (int64).

With batch size 1 this is exactly the board's rule; larger batches sum the exact integer gradients of
their samples before the one rounding (int64 sums; a host-side speed-up).
"""
from dataclasses import dataclass

import numpy as np

from edgeff.data.labels import hardest_wrong_labels
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.runtime.int_model import GAMMA_FRAC_BITS, IntFFModel
from edgeff.runtime.integer_hash import hash32
from edgeff.runtime.master_weights import round_shift
from edgeff.runtime.requantize import (
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    rounding_divide_by_pot,
)

SIGMOID_INPUT_FRAC_BITS = 4       # table index t = round(z * 16), z in [-8, 8)
# random negative labels hash (seed ^ this salt, step, sample): a key of their own, so the label stream is not
# the stochastic-rounding stream of the same seed
NEGATIVE_LABEL_SALT = 0x5EED
# the step sizes a trainer (and a board, by CONFIGURE) takes: 2^-4 .. 2^-40 for weights, 2^-1 .. 2^-60 for gamma
LR_SHIFT_RANGE = (4, 40)
GAMMA_SHIFT_RANGE = (1, 60)


def sigmoid_table() -> np.ndarray:
    """sigma(t / 16) for t = -128..127, in Q15 (int16). Made once, stored in the model file, so the
    board and every host use the same 512 bytes."""
    t = np.arange(-128, 128, dtype=np.float64) / (1 << SIGMOID_INPUT_FRAC_BITS)
    return np.minimum(np.round(32768.0 / (1.0 + np.exp(-t))), 32767).astype(np.int16)


@dataclass
class IntTrainingConfig:
    lr_shift: int = 22                # learning rate 2^-lr_shift on the integer gradient
    gamma_shift: int = 36             # A-CFF: gamma learning rate 2^-gamma_shift
    loss: str = "symba"               # "symba" or "softplus"
    symba_alpha: float = 4.0
    theta: float = 2.0
    negatives: str = "random"         # "random" or "hard"
    rounding: str = "stochastic"      # "stochastic" or "nearest"
    seed: int = 0

    def check(self):
        for key, (low, high) in (("lr_shift", LR_SHIFT_RANGE), ("gamma_shift", GAMMA_SHIFT_RANGE)):
            if not low <= getattr(self, key) <= high:
                raise EdgeFFError(f"{key} {getattr(self, key)} must be between {low} and {high}")
        for key, allowed in (("loss", ("symba", "softplus")), ("negatives", ("random", "hard")),
                             ("rounding", ("stochastic", "nearest"))):
            if getattr(self, key) not in allowed:
                raise EdgeFFError(f"{key} {getattr(self, key)!r} must be one of {', '.join(allowed)}")


@dataclass(frozen=True)
class LossConstants:
    """The loss's real-valued settings as the integers a board uses (made once on the host, sent to boards)."""
    arg_multiplier: int    # loss argument in goodness units (Q.12) -> sigmoid table index (Q4)
    arg_shift: int
    theta_q: int           # softplus threshold in Q.12


def loss_constants(config: IntTrainingConfig, goodness_frac_bits: int) -> LossConstants:
    alpha = config.symba_alpha if config.loss == "symba" else 1.0
    multiplier, shift = quantize_multiplier(alpha * (1 << SIGMOID_INPUT_FRAC_BITS) / (1 << goodness_frac_bits))
    return LossConstants(multiplier, shift, round(config.theta * (1 << goodness_frac_bits)))


class IntTrainer:
    """Integer training state of an IntFFModel: master weights, collaboration gamma, step counter."""

    TRAIN_METRIC = "train_pos_above_neg"   # the share of samples whose positive goodness beat the negative's

    def __init__(self, model: IntFFModel, config: IntTrainingConfig, masters=None, step=0,
                 constants: LossConstants | None = None):
        config.check()
        self.model, self.config, self.step_count = model, config, step
        self.n_layers = len(model.layers)
        if masters is None:
            masters = [facet.initial_masters(layer) for facet, layer in zip(model.facets, model.layers, strict=True)]
        self.weight_masters = [m.astype(np.int16) for m, _ in masters]
        self.bias_masters = [b.astype(np.int64) for _, b in masters]
        self.gamma_q = np.asarray(model.gamma_q, np.int64)
        self.collab_mode = model.arch.get("collab_mode", "none")
        self.coupling_q = round((1 << GAMMA_FRAC_BITS) / max(self.n_layers - 1, 1))   # A = 1/(L-1), Q8
        self.lut = sigmoid_table()
        self.constants = constants or loss_constants(config, model.quant["goodness_frac_bits"])

    # ------------------------------------------------------------------ pieces of a step
    def _coupled(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Gc, S): collaborative goodness and the other layers' summed goodness, (n_layers, rows)."""
        others = g.sum(axis=0, keepdims=True) - g
        s = others * self.coupling_q                              # Q.12 * Q8, int64
        gc = g + rounding_divide_by_pot(self.gamma_q[:, None] * s, 2 * GAMMA_FRAC_BITS)
        return gc, s

    def _sigmoid(self, z_goodness: np.ndarray) -> np.ndarray:
        t = multiply_by_quantized_multiplier(np.clip(z_goodness, -(1 << 31), (1 << 31) - 1),
                                             self.constants.arg_multiplier, self.constants.arg_shift)
        return self.lut[np.clip(t, -128, 127) + 128].astype(np.int64)

    def _coefficients(self, gc_pos: np.ndarray, gc_neg: np.ndarray) -> np.ndarray:
        """Signed per-row loss derivatives (Q15): +e on positive rows, -e on negative rows."""
        if self.config.loss == "symba":
            e = self._sigmoid(gc_neg - gc_pos)
            return np.concatenate([e, -e], axis=-1)
        theta = self.constants.theta_q
        return np.concatenate([self._sigmoid(theta - gc_pos), -self._sigmoid(gc_neg - theta)],
                              axis=-1)

    def _round_shift(self, v: np.ndarray, shift: int, stream: int) -> np.ndarray:
        """v / 2^shift rounded by the configured rule, noise stream `stream` (< 64) of this step."""
        return round_shift(v, shift, self.config.rounding == "stochastic", self.config.seed,
                           self.step_count * 64 + stream)

    def negative_labels(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        c = self.model.n_classes
        if self.config.negatives == "hard":
            return hardest_wrong_labels(self.model.label_scores(images).sum(axis=0), labels)
        h = hash32(self.config.seed ^ NEGATIVE_LABEL_SALT, self.step_count, np.arange(len(labels))).astype(np.int64)
        return (labels + 1 + h % (c - 1)) % c

    # ------------------------------------------------------------------ the step
    def step(self, images: np.ndarray, labels: np.ndarray, negative_labels=None) -> dict:
        """One integer update on a batch (1 sample on a board), with the given negative labels or ones
        drawn by the configured rule. Returns integer diagnostics."""
        model = self.model
        model.check_images(images)
        labels = model.check_labels(labels, len(images))
        if negative_labels is None:
            negs = self.negative_labels(images, labels)
        else:
            negs = model.check_labels(negative_labels, len(images))
        b = len(labels)
        q = np.concatenate([model.quantize_images(images, labels), model.quantize_images(images, negs)])
        ns, acts, raw = model.forward_layers(q)
        g = model.layer_goodness(raw)
        gc, s = self._coupled(g)
        coef = self._coefficients(gc[:, :b], gc[:, b:])                 # (n_layers, 2b)
        for i, (facet, layer) in enumerate(zip(model.facets, model.layers, strict=True)):
            # noise streams 2i and 2i + 1 of this step are layer i's
            facet.update(layer, self.weight_masters[i], self.bias_masters[i], ns[i], acts[i], coef[i],
                         self.config.lr_shift, self.config.rounding == "stochastic", self.config.seed,
                         self.step_count * 64 + 2 * i)
        if self.collab_mode == "adaptive":
            dg = (coef * s).sum(axis=1)                                   # int64
            self.gamma_q = self.gamma_q + self._round_shift(dg, self.config.gamma_shift, 63)
        self.step_count += 1
        pos, neg = g[:, :b].sum(axis=0), g[:, b:].sum(axis=0)
        return {"correct": int((pos > neg).sum()), "samples": b}

    def epoch_state(self) -> dict:
        return {"gamma_q": self.gamma_q.tolist()}



def trainer_tensors(trainer: IntTrainer) -> dict:
    """Model tensors plus the training state a board keeps (master weights, sigmoid table)."""
    out = trainer.model.tensors()
    out["gamma_q"] = trainer.gamma_q.astype(np.int32)
    out["train.sigmoid_lut"] = trainer.lut
    for i, (facet, layer) in enumerate(zip(trainer.model.facets, trainer.model.layers, strict=True)):
        out |= facet.master_tensors(layer, i, trainer.weight_masters[i], trainer.bias_masters[i])
    return out


def load_trainer(path, config: IntTrainingConfig) -> IntTrainer:
    """An IntTrainer for an int8 model file, continuing from its master weights when it has them."""
    return trainer_from_tensors(*load_model(path), config, where=path)


def trainer_from_tensors(tensors: dict, header: dict, config: IntTrainingConfig, where="model",
                         constants: "LossConstants | None" = None) -> IntTrainer:
    """An IntTrainer for model-file tensors and header (a file, or a board image)."""
    model = IntFFModel.from_tensors(tensors, header, where)
    masters = [facet.load_masters(layer, i, tensors, where)
               for i, (facet, layer) in enumerate(zip(model.facets, model.layers, strict=True))]
    if any(m is None for m in masters):
        return IntTrainer(model, config, constants=constants)
    return IntTrainer(model, config, masters, step=int(header.get("int_training", {}).get("step", 0)),
                      constants=constants)
