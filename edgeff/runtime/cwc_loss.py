"""The channel-wise competitive (CwC) loss's derivative in fixed point: softmax cross-entropy over a layer's class
goodness, dL/dG_j = p_j - [j == y], in Q15, with no float in a step.

The float loss (edgeff.train.conv_network.ConvFFNetwork.layer_loss) is F.cross_entropy(G, y), G_j the real
mean square of class group j. The integer runtime has G in the common fixed point, G_q = G * 2^frac_bits
(edgeff.runtime.class_goodness; frac_bits = GOODNESS_FRAC_BITS, 12). The softmax, max-subtracted and taken in
base 2:

    z_j = G_q,j - max_k G_q,k                                  (<= 0, int64)
    u_j = round(-z_j * LOG2E_Q16 / 2^(16 + frac_bits - 8))     exponent of 2 in Q8: exp(z) = 2^(-u / 256)
    e_j = RoundingDivideByPOT(POW2_TABLE[u_j & 255], u_j >> 8) 2^(-u/256) in Q15 (0 past 2^-31)
    p_j = (e_j * 2^15 + S / 2) // S,  S = sum_k e_k            Q15; S >= 2^15 (the largest class's e is 2^15)

POW2_TABLE[i] = round(2^15 * 2^(-i / 256)), 256 entries (512 bytes as uint16 on a board). Error against the
float64 softmax of the same G_q / 2^frac_bits: rounding u to Q8 moves e by a factor within 2^(+-1/512)
(+-0.14 %), the table and the shift add at most one Q15 unit each, the division half a unit; so
|p_int - p| <= 2 * 0.0014 + 3 / 2^15 < 2^-8, and tests/test_conv_training.py checks it on
20,000 random cases (the measured maximum is 0.0004).
"""
import math

import numpy as np

from edgeff.runtime.requantize import rounding_divide_by_pot

Q15 = 1 << 15
LOG2E_Q16 = round(math.log2(math.e) * (1 << 16))
POW2_TABLE = np.round(Q15 * 2.0 ** (-np.arange(256) / 256.0)).astype(np.int64)
PROBABILITY_ERROR_BOUND = 2.0 ** -8   # the bound above, on |p_int - p_float64|


def softmax_q15(goodness: np.ndarray, frac_bits: int) -> np.ndarray:
    """(rows, n_classes) int64 softmax in Q15 of class goodness in Q(frac_bits) (module docstring)."""
    g = np.asarray(goodness, np.int64)
    z = g - g.max(axis=-1, keepdims=True)
    shift = 16 + frac_bits - 8
    u = (-z * LOG2E_Q16 + (1 << (shift - 1))) >> shift
    whole = np.minimum(u >> 8, 31)      # 2^-31 and below round to 0 in Q15 anyway
    e = rounding_divide_by_pot(POW2_TABLE[u & 255], whole)
    total = e.sum(axis=-1, keepdims=True)
    return (e * Q15 + total // 2) // total


def loss_derivative(goodness: np.ndarray, labels: np.ndarray, frac_bits: int) -> np.ndarray:
    """(rows, n_classes) int64 dL/dG_j = p_j - [j == y] in Q15 (in [-2^15, 2^15]) of the CwC loss of one
    layer's class goodness (Q(frac_bits)) against the labels."""
    p = softmax_q15(goodness, frac_bits)
    p[np.arange(len(p)), np.asarray(labels)] -= Q15
    return p
