"""The integer update of master weights: int16 masters with 8 fractional bits over the int8 weights the
forward pass uses, moved by a gradient rounded to a power-of-two step (stochastically or to nearest)."""
import numpy as np

from edgeff.runtime.integer_hash import hash32
from edgeff.runtime.requantize import rounding_divide_by_pot

MASTER_FRAC_BITS = 8
WEIGHT_MAX = 127


def weights_from_masters(master: np.ndarray) -> np.ndarray:
    """int8 forward weights: RoundingDivideByPOT(master, 8), clamped to [-127, 127]. For int16 masters
    that is (m + 128 - [m < 0]) >> 8 in int32 (tested against rounding_divide_by_pot on every int16)."""
    m = master.astype(np.int32)
    return np.clip((m + 128 + (m >> 15)) >> MASTER_FRAC_BITS, -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)


def round_shift(v: np.ndarray, shift: int, stochastic: bool, seed: int, stream: int, index=None) -> np.ndarray:
    """v / 2^shift rounded: stochastically (unbiased: integer_hash noise of (seed, stream) drawn for element
    `index`, by default the position in v) or to nearest. A negative shift is an exact left shift."""
    if shift <= 0:
        return v << -shift
    if not stochastic:
        return rounding_divide_by_pot(v, shift) if shift <= 62 else np.zeros_like(v)
    index = np.arange(v.size) if index is None else index
    noise = hash32(seed, stream, index).reshape(v.shape)
    noise = noise.astype(np.int64) & ((np.int64(1) << min(shift, 32)) - 1)
    return (v + (noise << max(shift - 32, 0))) >> shift
