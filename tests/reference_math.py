"""Scalar oracles that only the tests use: literal translations of the C code (Python ints, explicit
32-bit wrap), against which the vectorized kernels are checked."""
import numpy as np

from edgeff.runtime.fully_connected import accumulate, requantize_output
from edgeff.runtime.l2_normalization import TFLITE_OUTPUT_SHIFT_BITS, inv_sqrt_quantized_multiplier_ref
from edgeff.runtime.requantize import (
    rounding_divide_by_pot_ref,
    saturating_rounding_doubling_high_mul_ref,
    wrap_int32_ref,
)


def hash32_ref(seed: int, step: int, index: int) -> int:
    """integer_hash.hash32 for one index."""
    m = 0xFFFFFFFF
    h = ((seed & m) * 0x9E3779B1 + (step & m) * 0x85EBCA77 + index) & m
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return h


def l2_normalization_ref(q: np.ndarray, zero_point: int, output_shift_bits=TFLITE_OUTPUT_SHIFT_BITS,
                         out_min=-128, out_max=127, rounding="double") -> np.ndarray:
    """TFLite's L2Normalization over rows of q (any int dtype), one element at a time; int64 values in
    [out_min, out_max]."""
    q = np.asarray(q)
    out = np.zeros(q.shape, dtype=np.int64)
    for r in range(q.shape[0]):
        centered = [int(v) - zero_point for v in q[r]]
        acc = wrap_int32_ref(sum(v * v for v in centered))
        mult, shift = inv_sqrt_quantized_multiplier_ref(acc, -1)
        for i, v in enumerate(centered):
            y = multiply_by_quantized_multiplier_ref(v, mult, shift + output_shift_bits, rounding)
            out[r, i] = min(out_max, max(out_min, y))
    return out


def multiply_by_quantized_multiplier_ref(x: int, multiplier: int, shift: int, rounding="double") -> int:
    """TFLite MultiplyByQuantizedMultiplier(int32 x, int32 multiplier, int shift)."""
    if rounding == "single":
        total_shift = 31 - shift
        return wrap_int32_ref((x * multiplier + (1 << (total_shift - 1))) >> total_shift)
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot_ref(
        saturating_rounding_doubling_high_mul_ref(wrap_int32_ref(x * (1 << left)), multiplier), right)


def multiply_by_quantized_multiplier_int64_ref(x: int, multiplier: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier(int64 x, ...) of the 16x8 kernels: a reduced 16-bit multiplier."""
    reduced = ((multiplier + (1 << 15)) >> 16) if multiplier < 0x7FFF0000 else 0x7FFF
    total_shift = 15 - shift
    return wrap_int32_ref((x * reduced + (1 << (total_shift - 1))) >> total_shift)


def fully_connected_16x8(x, w, bias, multiplier, shift, output_zero_point=0, act_min=-32768, act_max=32767):
    """16x8 FullyConnected: int16 activations (zero point 0), int8 weights, int64 bias and accumulator."""
    return requantize_output(accumulate(x, w, 0), bias, multiplier, shift, output_zero_point, act_min, act_max,
                             wide=True)


def fully_connected(x, w, bias, input_zero_point, multiplier, shift, output_zero_point, act_min, act_max,
                    accumulator=accumulate, rounding="double") -> np.ndarray:
    """int8 FullyConnected; returns values in [act_min, act_max] (int8 for an int8 range)."""
    return requantize_output(accumulator(x, w, input_zero_point), bias, multiplier, shift,
                             output_zero_point, act_min, act_max, rounding)
