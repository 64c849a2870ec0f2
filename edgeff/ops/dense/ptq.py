"""The dense layer's post-training quantization: its int8 tensors and its entry in the header's
quantization "layers" (TFLite semantics, see edgeff.runtime).

  input a (int8, scale s_in, zero point z_in) -> L2Norm -> n (int8, scale 1/128, zp 0), a unit vector
      (or int16 at scale 2^-15 with --norm-bits 15, feeding a 16x8 FC with int64 bias)
  FC: the float layer sees its normalized input, sqrt(D) * u for "rms" normalization, so its weights are
      folded as W' = W * sqrt(D) (W itself for "length" normalization), quantized per output channel
      symmetrically: s_w[c] = max|W'[c]| / 127; bias int32 at scale s_w[c] / 128; multiplier
      M[c] = (s_w[c] / 128) / s_out from the float32 scales, as TFLite derives it; fused ReLU
  output a' (int8, scale s_out from calibration, zp -128: ReLU outputs use all 256 codes)
  goodness G = sum (a' + 128)^2 in int32; real mean goodness = s_out^2 / D_out * G.

Tensors of layer i: layers.<i>.weight, weight_scale, bias, multiplier, shift, goodness_multiplier,
goodness_shift (edgeff.runtime.int_model reads them).
"""
import numpy as np

from edgeff.quant.fully_connected import normalization_fold, per_channel, relu_output_scale, weights_on_scales
from edgeff.runtime.int_model import GOODNESS_FRAC_BITS
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import float32, quantize_multiplier

ACT_ZERO_POINT = -128


def _output_scale(module, activities: np.ndarray, qat: bool, percentile: float) -> float:
    """s_out: a quantization-aware layer's trained range (the running maximum it trained with); a float
    layer's is calibrated, the `percentile` of its activities spread over the 256 codes of a ReLU output."""
    if qat:
        return float32(module.output_scale())
    return relu_output_scale(activities, percentile)


def fold(module, spec, padding: str = "batchnorm"):
    """The layer as the integer kernels compute it: itself (its normalization runs in integers; `padding`,
    a conv block's border, does not apply)."""
    return module


def quantize(spec, module, index: int, activities: np.ndarray, input_quant: dict, qat: bool, percentile: float,
             norm_bits: int, rounding: str):
    """The int8 tensors (layers.<index>.*) and the header entry of one dense layer.

    module is the trainer's layer; a quantization-aware one brings its int8 weights as it trained with
    them. activities are its float outputs on the calibration inputs. input_quant (the input's scale and
    zero point) does not enter: the L2 normalization makes the input scale-free. norm_bits is the width of the
    normalized input (7: int8, TFLite's; 15: int16 with an int64 bias); rounding is the goodness
    multiplier's (MultiplyByQuantizedMultiplier's "double" or "single").
    """
    w = (module.quantized_weight() if qat else module.weight.detach()).numpy().astype(np.float64)
    b = module.bias.detach().numpy().astype(np.float64)
    out_scale = _output_scale(module, activities, qat, percentile)
    norm_scale = 2.0 ** -norm_bits
    q, scales, mult, shift = per_channel(w * normalization_fold(spec.normalization, spec.in_features), norm_scale,
                                         out_scale)
    bias_dtype = np.int32 if norm_bits == NORM_BITS_INT8 else np.int64
    gm, gs = quantize_multiplier(out_scale ** 2 / spec.out_features * 2 ** GOODNESS_FRAC_BITS, rounding)
    name = f"layers.{index}."
    tensors = {name + "weight": q, name + "weight_scale": scales,
               name + "bias": np.round(b / (scales * norm_scale)).astype(bias_dtype),
               name + "multiplier": mult, name + "shift": shift,
               name + "goodness_multiplier": np.array([gm], np.int32),
               name + "goodness_shift": np.array([gs], np.int32)}
    return tensors, {"out_scale": out_scale, "out_zero_point": ACT_ZERO_POINT, "norm_bits": norm_bits}


def fresh_weights(spec, module, index: int, tensors: dict) -> dict:
    """The weight and bias tensors of layer `index` for a fresh start: module's (untrained) weights
    quantized at the trained layer's weight scales in `tensors`, and zero biases."""
    name = f"layers.{index}."
    w = module.weight.detach().numpy().astype(np.float64) * normalization_fold(spec.normalization, spec.in_features)
    scales = tensors[name + "weight_scale"].astype(np.float64)
    return {name + "weight": weights_on_scales(w, scales), name + "bias": np.zeros_like(tensors[name + "bias"])}
