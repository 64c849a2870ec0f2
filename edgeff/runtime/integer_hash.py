"""A counter-based integer random generator: the same bits on a board, in C and in NumPy.

hash32(seed, step, index) is murmur3's 32-bit finalizer over a mix of the three counters: every weight
of every step gets its own random word without a sequential state, so a vectorized host and a
sample-by-sample board draw the same numbers. uint32 arithmetic wraps, as in C.
"""
import numpy as np

_GOLDEN, _STEP_MIX = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77)


def hash32(seed: int, step: int, index) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (np.uint32(seed & 0xFFFFFFFF) * _GOLDEN
             + np.uint32(step & 0xFFFFFFFF) * _STEP_MIX
             + np.asarray(index, np.uint32))
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h
