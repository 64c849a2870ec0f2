"""The dense layer in the integer runtime, as a board runs it: L2-normalize the int8 input (to int8, or to int16
for a 16x8 FullyConnected), FullyConnected, fused ReLU, FF goodness; and the layer's integer update rule.

Tensors of layer i (see edgeff.quant.ptq for how they are made): layers.<i>.weight int8 (out, in), bias int32
(int64 in 16x8 mode), multiplier/shift int32 per output channel, goodness_multiplier/shift (1,) mapping the
layer's integer goodness to a common fixed point (GOODNESS_FRAC_BITS) so layers can be summed in multi-pass
inference. Its entry of the quantization header holds out_zero_point and norm_bits. Integer training adds
weight_master (int16) and bias_master (the bias's type).

The update (step 4 of edgeff/runtime/int_training.py): with c the signed per-row loss derivative (Q15: +e+ on
positive rows, -e- on negative rows), n the layer's normalized input and a its output,
    dM[j, k] = sum_rows c * (a_j - zp) * n_k         (|term| <= 2^15 * 255 * 128 < 2^30)
    dB[j]    = sum_rows c * (a_j - zp)
applied to int16 master weights M (8 fractional bits over the int8 weight) and master biases with a
power-of-two learning rate: M += round(dM / 2^lr_shift), B += round(dB * 2^(2(b-7) - lr_shift)), b the
layer's normalization bits (7 for int8, 15 for int16; see below); the int8 weights used by the forward pass
are round(M / 2^8), clamped to [-127, 127]. With int16 normalized inputs n is 2^8 times larger, and so is the
gradient: add 8 to lr_shift for the same step.

The bias step: the FC computes acc = sum_k W_q n_k + b_q with n = 2^b * unit vector, and the bias is in
units of (weight unit / 2^b). Plain SGD treats the bias as a weight on a constant input of 1 in
unit-vector terms, 2^b in n-units, which makes its step per master unit 2^b * 2^b = 2^(2b) times a
weight's. At batch 1 such bias steps kill units: trained from scratch that way, 21 of the board
network's 64 first-layer units were dead after 2 epochs (no input drives them past their bias; their
weights never move again), and it ended 3.1 points below float (84.2 % test). Adam, which trained the
float reference, normalizes every parameter's step and never sees this. So the rule takes the bias step
2^14 smaller than plain SGD's: with int8 inputs a bias master moves exactly as a weight master does per
unit of gradient (2^0), and with int16 inputs by 2^16, the same real-valued step. No unit died, and from
scratch the board network reached 86.65 %, 0.66 points below float (benchmarks/runtime_accuracy.py).
"""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.fully_connected import accumulate
from edgeff.runtime.int_fully_connected import (
    ACT_MAX,
    ACT_MIN,
    IntFullyConnected,
    check_requantization,
    checked_tensor,
    fully_connected_tensors,
)
from edgeff.runtime.l2_normalization import NORM_BITS_INT8, NORM_BITS_INT16
from edgeff.runtime.master_weights import MASTER_FRAC_BITS, round_shift, weights_from_masters
from edgeff.runtime.requantize import rounding_divide_by_pot


@dataclass(kw_only=True)
class IntLayer(IntFullyConnected):
    """An FF dense layer: its FullyConnected, the L2 normalization before it and the goodness after it."""

    goodness_multiplier: int
    goodness_shift: int

    def normalize(self, a: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
        """L2-normalize this layer's input: int8 (TFLite) or int16 (16x8 mode), zero point 0."""
        limit = 1 << self.norm_bits  # int8: [-128, 127]; int16: [-32768, 32767]
        return backend.kernels().l2_normalization(a, zero_point, self.norm_bits, -limit, limit - 1, rounding)

    def forward_with_goodness(self, a: np.ndarray, zero_point: int, rounding: str):
        """(normalized input, int8 output, raw int goodness) for rows a of int8 input."""
        return backend.kernels().ff_layer(a, zero_point, self.weight, self.bias, self.multiplier, self.shift,
                                          self.out_zero_point, self.act_min, self.norm_bits, rounding)


def _prefix(index: int) -> str:
    return f"layers.{index}."


def load(spec, index: int, tensors: dict, quant: dict, where) -> IntLayer:
    """Layer `index` (0-based) from model-file tensors and its quantization header entry `quant`, checked;
    `where` names their origin in errors."""
    p = _prefix(index)
    zp = quant["out_zero_point"]
    if not ACT_MIN <= zp <= ACT_MAX:
        raise EdgeFFError(f"{where}: layer {index + 1} output zero point {zp} is outside int8")
    bits = quant.get("norm_bits", NORM_BITS_INT8)
    if bits not in (NORM_BITS_INT8, NORM_BITS_INT16):
        raise EdgeFFError(f"{where}: layer {index + 1} norm_bits {bits} must be 7 (int8) or 15 (int16)")
    gm = checked_tensor(where, tensors, p + "goodness_multiplier", np.int32, (1,))
    gs = checked_tensor(where, tensors, p + "goodness_shift", np.int32, (1,))
    check_requantization(where, p + "goodness_multiplier", gm, gs)
    fc = fully_connected_tensors(where, tensors, p, (spec.out_features, spec.in_features), bits)
    return IntLayer(*fc, zp, max(ACT_MIN, zp), bits, goodness_multiplier=int(gm[0]), goodness_shift=int(gs[0]))


def tensors(layer: IntLayer, index: int) -> dict:
    """The layer's tensors by their model-file names (for saving)."""
    p = _prefix(index)
    return layer.tensors(p) | {p + "goodness_multiplier": np.array([layer.goodness_multiplier], np.int32),
                               p + "goodness_shift": np.array([layer.goodness_shift], np.int32)}


def forward(layer: IntLayer, q: np.ndarray, zero_point: int, rounding: str) -> np.ndarray:
    """The layer's int8 output for rows q of int8 input, as a layered model walks its layers (its goodness
    there is the model's class goodness, not this layer's whole-layer sum)."""
    return layer.forward_with_goodness(q, zero_point, rounding)[1]


def every_label_outputs(layer: IntLayer, q: np.ndarray, zero_point: int, n_classes: int, rounding: str):
    """(N * n_classes, out) int8 outputs and (N * n_classes,) raw goodness of the first layer for every label.

    q: N rows of int8 input labelled with label 0 (inputs 0..n_classes-1 are the label pixels: the label
    value at 0, the zero point at the others). One-hot labels of one value leave the L2 norm of the input the
    same for every label, so the normalized input differs only in the label pixels: one shared accumulation
    plus the label pixel's column, bit-identical to n_classes separate passes (tested).
    """
    c = n_classes
    n = layer.normalize(q, zero_point, rounding)
    n_label = n[:, 0].copy()                      # the normalized label pixel (same for every label)
    n[:, :c] = 0                                   # unlabelled pixels are 0.0: centred 0, normalized 0
    shared = accumulate(n, layer.weight, 0)        # (N, out), exact
    label_columns = layer.weight[:, :c].T.astype(np.int32)                   # (C, out)
    return backend.kernels().label_rows(shared, n_label, label_columns, layer.bias, layer.multiplier, layer.shift,
                                        layer.out_zero_point, layer.act_min, layer.norm_bits, rounding)


# ---------------------------------------------------------------------- integer training

def initial_masters(layer: IntLayer) -> tuple[np.ndarray, np.ndarray]:
    """(weight master, bias master) of a layer that starts training: its weights and bias with 8 fractional
    bits; the bias masters saturate to the bias's type, as every update does."""
    limits = np.iinfo(layer.bias.dtype)
    return (layer.weight.astype(np.int16) << MASTER_FRAC_BITS,
            np.clip(layer.bias.astype(np.int64) << MASTER_FRAC_BITS, limits.min, limits.max))


def load_masters(layer: IntLayer, index: int, tensors: dict, where):
    """(weight master, bias master) of layer `index` from model-file tensors, checked against its int8
    weights; None when the tensors hold none (training starts from the layer's weights)."""
    p = _prefix(index)
    if p + "weight_master" not in tensors:
        return None
    m, b = tensors[p + "weight_master"], tensors.get(p + "bias_master")
    if m.dtype != np.int16 or m.shape != layer.weight.shape or b is None or b.shape != layer.bias.shape:
        raise EdgeFFError(f"{where}: master weights of layer {index + 1} do not match its int8 weights")
    if not np.array_equal(weights_from_masters(m), layer.weight):
        raise EdgeFFError(f"{where}: layer {index + 1}'s int8 weights are not the rounding of its master "
                          "weights; the file was edited or is corrupt")
    return m, b.astype(np.int64)


def master_tensors(layer: IntLayer, index: int, weight_master: np.ndarray, bias_master: np.ndarray) -> dict:
    """The layer's training state by its model-file names (the bias master stored in the bias's type)."""
    p = _prefix(index)
    return {p + "weight_master": weight_master, p + "bias_master": bias_master.astype(layer.bias.dtype)}


def active_rows(row: np.ndarray) -> np.ndarray:
    """Output units with a non-zero gradient in some row of the batch."""
    return np.flatnonzero(row.any(axis=0))


def update(layer: IntLayer, weight_master: np.ndarray, bias_master: np.ndarray, n: np.ndarray, a: np.ndarray,
           coef: np.ndarray, lr_shift: int, stochastic: bool, seed: int, stream: int) -> None:
    """One integer update (module docstring) from rows of normalized input n, output a and signed loss
    derivatives coef (Q15), in place: the masters, and the layer's int8 weights and bias derived from them.
    Rounding draws noise streams `stream` (weights) and `stream + 1` (bias) of the seed."""
    ac = a.astype(np.int64) - layer.out_zero_point               # >= 0 after ReLU
    row = coef[:, None] * ac                                      # (rows, out), |.| < 2^23
    db = row.sum(axis=0)
    # Units whose activity is 0 in every row get a zero gradient, and a zero rounds to zero
    # either way: only the active rows of the master are touched (exactly the dense result).
    active = active_rows(row)
    dm = accumulate(row[:, active].T, n.T, 0)                     # exact int, |.| < rows * 2^30
    backend.kernels().update_weight_rows(weight_master, layer.weight, active, dm, lr_shift, stochastic, seed, stream)
    bias_gain = 2 * (layer.norm_bits - NORM_BITS_INT8)            # the bias step (module docstring)
    limit = np.iinfo(layer.bias.dtype).max                        # int32 biases, int64 in 16x8 mode
    bias_master[...] = np.clip(bias_master + round_shift(db, lr_shift - bias_gain, stochastic, seed, stream + 1),
                               -limit - 1, limit)
    layer.bias = rounding_divide_by_pot(bias_master, MASTER_FRAC_BITS).astype(layer.bias.dtype)
