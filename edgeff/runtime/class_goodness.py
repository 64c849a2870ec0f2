"""Channel-wise competitive (CwC) class goodness in integers, the decision of a layered int8 model.

The float network (edgeff.train.conv_network.ConvFFNetwork.class_goodness) splits a layer's output channels
(a dense layer's units) into n_classes contiguous groups in torch's channel order, group j holding channels
j*C/n .. (j+1)*C/n - 1, and scores class j by the mean square of its group over all positions. In integers:

    G_j = sum over group j's channels c and every position (y, x) of (q[y, x, c] - zp)^2        (int32)

computed by the active kernel set's goodness kernel (reference or C) on the group's values laid out as one
row. NHWC keeps a channel's index in its last axis, so splitting that axis into (n_classes, C/n) gives
exactly torch's groups. Each term is at most 255^2 (an int8 value minus an int8 zero point), so a group of
`count` values sums to at most count * 255^2, which int32 holds for count <= MAX_GROUP_VALUES = 33,025
(2^31 - 1 over 65,025); a layer with larger groups is refused (check_group_size), never wrapped.

The real mean-square goodness is s^2 / count * G (s the layer's output scale). The quantizer turns that
factor, times 2^GOODNESS_FRAC_BITS, into an integer multiplier and shift per layer (the model's tensors
class_goodness_multiplier / class_goodness_shift), so MultiplyByQuantizedMultiplier maps every layer's G to
one fixed point and layers can be summed. check_scores_fit proves the sum of every layer's largest mapped
goodness fits int32, so summing any set of layers cannot overflow either. The class is the argmax of the
sum over the evaluation layers; a tie goes to the lowest class (NumPy's argmax, as the float model's).
"""
import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.requantize import INT32_MAX, multiply_by_quantized_multiplier

TERM_MAX = 255 * 255                      # (q - zp)^2 for int8 q and zp
MAX_GROUP_VALUES = INT32_MAX // TERM_MAX  # 33,025 values per class group


def group_values(out_shape: tuple, n_classes: int) -> int:
    """How many values one class group of a layer's output (C, H, W) or (units,) holds."""
    return int(np.prod(out_shape)) // n_classes


def check_group_size(where, layer: int, count: int):
    if count > MAX_GROUP_VALUES:
        raise EdgeFFError(f"{where}: layer {layer}'s class groups hold {count} values each, and their goodness "
                          f"(up to {count} * 255^2) could overflow int32: at most {MAX_GROUP_VALUES} values per "
                          "group (fewer channels per class, or pool the layer's output)")


def check_scores_fit(where, counts, multipliers, shifts, rounding: str):
    """Refuse multipliers whose largest mapped goodness, summed over every layer, could leave int32 (or whose
    left shift alone would: MultiplyByQuantizedMultiplier shifts its int32 input left first). `rounding`
    moves a result by at most one, which the bound allows for."""
    largest = []
    for count, m, s in zip(counts, multipliers, shifts, strict=True):
        g = count * TERM_MAX
        if g << max(int(s), 0) > INT32_MAX:
            largest.append(INT32_MAX + 1)
        else:   # G * m * 2^(s - 31), rounded up, exactly in Python integers
            largest.append(-(-(g * int(m)) >> (31 - int(s))) + 1)
    if sum(largest) > INT32_MAX:
        raise EdgeFFError(f"{where}: the layers' class goodness in the common fixed point could reach "
                          f"{sum(largest)}, beyond int32; the activation scales are too large for it")


def class_goodness(q: np.ndarray, zero_point: int, n_classes: int) -> np.ndarray:
    """(N, n_classes) int64 G_j of one layer's int8 output: NHWC (N, H, W, C) or rows (N, units)."""
    n = len(q)
    if q.ndim == 4:   # (N, H, W, n_classes, C/n) -> (N, n_classes, H, W, C/n): each group one row
        groups = q.reshape(*q.shape[:3], n_classes, -1).transpose(0, 3, 1, 2, 4)
    else:             # a dense layer's units: contiguous groups already
        groups = q.reshape(n, n_classes, -1)
    rows = np.ascontiguousarray(groups).reshape(n * n_classes, -1)
    return np.asarray(backend.kernels().goodness(rows, zero_point), np.int64).reshape(n, n_classes)


def map_class_goodness(raw: np.ndarray, multipliers, shifts, rounding: str) -> np.ndarray:
    """raw class goodness (n_layers, ...), layer l mapped by MultiplyByQuantizedMultiplier with its multiplier
    and shift into the common fixed point (real mean square * 2^GOODNESS_FRAC_BITS), so layers can be summed."""
    return np.stack([multiply_by_quantized_multiplier(g, m, s, rounding)
                     for g, m, s in zip(raw, multipliers, shifts, strict=True)])
