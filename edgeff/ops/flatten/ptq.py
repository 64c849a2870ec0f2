"""The flatten layer's post-training quantization: nothing to quantize (edgeff/ops/passthrough.py). Its int8
output has its input's scale and zero point, as a RESHAPE keeps them; no tensors."""
from edgeff.ops.passthrough import dequantize, fold, quantize

__all__ = ["dequantize", "fold", "quantize"]
