"""The integer FullyConnected layer the runtime holds: int8 weights (out, in), a bias (int32; int64 after a
16-bit normalization), an int32 multiplier and shift per output channel, an output zero point and clamp.

Its forward pass runs through the active kernel set (backend.kernels()). The classifier head is one;
each layer kind's runtime layer (edgeff/ops/<kind>/runtime.py) builds on it. Loading checks every tensor's
type and shape and every quantized multiplier, so a corrupt model file is refused by name, not run.
"""
from dataclasses import dataclass

import numpy as np

from edgeff.errors import EdgeFFError
from edgeff.runtime import backend
from edgeff.runtime.fully_connected import accumulate
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import INT32_MAX

ACT_MIN, ACT_MAX = -128, 127


def checked_tensor(where, tensors: dict, name: str, dtype, shape) -> np.ndarray:
    """tensors[name], refused unless it has this dtype and shape; `where` names the tensors' origin."""
    if name not in tensors:
        raise EdgeFFError(f"{where}: tensor '{name}' is missing")
    t = tensors[name]
    if t.dtype != np.dtype(dtype) or tuple(t.shape) != tuple(shape):
        raise EdgeFFError(f"{where}: tensor '{name}' is {t.dtype}{list(t.shape)}, expected "
                          f"{np.dtype(dtype)}{list(shape)}")
    return t


def check_requantization(where, name: str, multiplier: np.ndarray, shift: np.ndarray) -> None:
    """Refuse quantized multipliers/shifts that MultiplyByQuantizedMultiplier does not take."""
    bad = (multiplier != 0) & ((multiplier < (1 << 30)) | (multiplier > INT32_MAX))
    if bad.any() or (shift < -31).any() or (shift > 30).any():
        raise EdgeFFError(f"{where}: '{name}' holds an invalid quantized multiplier/shift (multipliers must "
                          "be 0 or in [2^30, 2^31), shifts in [-31, 30]); the file is corrupt or was not "
                          "written by `edgeff quantize`")


def fully_connected_tensors(where, tensors: dict, prefix: str, shape, norm_bits: int = NORM_BITS_INT8) -> tuple:
    """(weight, bias, multiplier, shift): tensors prefix + those names, checked, for a weight of `shape` (out, in)."""
    d_out = shape[0]
    multiplier = checked_tensor(where, tensors, prefix + "multiplier", np.int32, (d_out,))
    shift = checked_tensor(where, tensors, prefix + "shift", np.int32, (d_out,))
    check_requantization(where, prefix + "multiplier", multiplier, shift)
    bias_dtype = np.int32 if norm_bits == NORM_BITS_INT8 else np.int64
    return (checked_tensor(where, tensors, prefix + "weight", np.int8, shape),
            checked_tensor(where, tensors, prefix + "bias", bias_dtype, (d_out,)), multiplier, shift)


@dataclass
class IntFullyConnected:
    weight: np.ndarray        # int8 (out, in)
    bias: np.ndarray          # int32 (out,); int64 after a 16-bit normalization
    multiplier: np.ndarray    # int32 (out,)
    shift: np.ndarray         # int32 (out,)
    out_zero_point: int
    act_min: int              # fused ReLU: the output zero point; no activation: -128
    norm_bits: int = NORM_BITS_INT8   # width of the normalized input: 7 (int8) or 15 (int16)

    def tensors(self, prefix: str) -> dict:
        """The layer's tensors by their model-file names (for saving)."""
        return {prefix + "weight": self.weight, prefix + "bias": self.bias,
                prefix + "multiplier": self.multiplier, prefix + "shift": self.shift}

    def forward(self, n: np.ndarray, rounding: str) -> np.ndarray:
        """FullyConnected on the normalized input n (zero point 0)."""
        return self.requantize(accumulate(n, self.weight, 0), rounding)

    def requantize(self, acc: np.ndarray, rounding: str) -> np.ndarray:
        return backend.kernels().requantize_output(acc, self.bias, self.multiplier, self.shift, self.out_zero_point,
                                                   self.act_min, ACT_MAX, rounding, self.norm_bits > NORM_BITS_INT8)
