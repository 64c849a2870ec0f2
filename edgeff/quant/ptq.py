"""Post-training quantization of a float FF model into the int8 model file the runtime and boards run.

Per layer l (TFLite semantics, see edgeff.runtime):
  input a (int8, scale s_in, zero point z_in) -> L2Norm -> n (int8, scale 1/128, zp 0), a unit vector
      (or int16 at scale 2^-15 with --norm-bits 15, feeding a 16x8 FC with int64 bias)
  FC: the float layer sees the RMS-normalized input sqrt(D) * u, so its weights are folded as
      W' = W * sqrt(D) (W itself for "length" normalization), quantized per output channel symmetrically:
      s_w[c] = max|W'[c]| / 127; bias int32 at scale s_w[c] / 128; multiplier M[c] = (s_w[c] / 128) / s_out
      from the float32 scales, as TFLite derives it; fused ReLU
  output a' (int8, scale s_out from calibration, zp -128: ReLU outputs use all 256 codes)
  goodness G = sum (a' + 128)^2 in int32; real mean goodness = s_out^2 / D_out * G.
The image enters as q = pixel - 128 (scale 1/255, zp -128): exact. Activation scales come from the
largest activity seen on calibration samples (or a percentile of them), for positive and negative labels
alike.
Every float-to-integer conversion happens here, once; the header keeps the float scales for reference.
"""
import math

import numpy as np
import torch

from edgeff.data.labels import overlay_labels
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import save_model
from edgeff.runtime.int_fully_connected import NORM_BITS_INT8
from edgeff.runtime.int_model import GAMMA_FRAC_BITS, GOODNESS_FRAC_BITS, INPUT_SCALE, INPUT_ZERO_POINT
from edgeff.runtime.requantize import float32, multiplier_from_scales, quantize_multiplier
from edgeff.train.evaluate import images_to_input
from edgeff.train.model_io import load_network

ACT_ZERO_POINT = -128


def _fold(net, width: int) -> float:
    """The factor between the kernel's unit-length normalization and the network's."""
    return math.sqrt(width) if net.normalization == "rms" else 1.0


def _per_channel(w: np.ndarray, input_scale: float, output_scale: float):
    """int8 weights, their float32 scales and the (multiplier, shift) of each output channel, derived
    from float32 scales as TFLite derives them (so a .tflite export requantizes identically)."""
    max_abs = np.abs(w).max(axis=1)
    scales = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)
    mult, shift = zip(*(multiplier_from_scales(input_scale, s, output_scale) for s in scales), strict=True)
    return q, scales, np.array(mult, np.int32), np.array(shift, np.int32)


def _calibration_activities(net, images: np.ndarray, labels: np.ndarray):
    """Float activities of every layer for positive and (random wrong label) negative inputs,
    and the one-pass head's logits."""
    x0 = images_to_input(images, net.n_classes)
    rng = np.random.default_rng(0)
    wrong = (labels + rng.integers(1, net.n_classes, len(labels))) % net.n_classes
    x = overlay_labels(torch.cat([x0, x0]), torch.from_numpy(np.concatenate([labels, wrong])), net.n_classes,
                       net.label_value)
    with torch.no_grad():
        acts = [a.numpy() for a in net.activities(x)]
        logits = net.head_logits(x0).numpy()
    return acts, logits


def _fresh_weights(tensors: dict, net, seed: int):
    """Replace the weights by a new random initialization (torch's Linear init, seeded) quantized in
    the trained model's formats; zero biases, an untrained (zero) head, gamma at its initial value."""
    torch.manual_seed(seed)
    fresh = type(net)(net.sizes, net.n_classes, net.label_value, net.goodness_kind, net.collab_mode,
                      head_layers=net.head_layers, normalization=net.normalization)
    for i, layer in enumerate(fresh.layers):
        w = layer.weight.detach().numpy().astype(np.float64) * _fold(net, net.sizes[i])
        scales = tensors[f"layers.{i}.weight_scale"].astype(np.float64)
        tensors[f"layers.{i}.weight"] = np.clip(np.round(w / scales[:, None]), -127, 127).astype(np.int8)
        tensors[f"layers.{i}.bias"] = np.zeros_like(tensors[f"layers.{i}.bias"])
    tensors["head.weight"] = np.zeros_like(tensors["head.weight"])
    tensors["head.bias"] = np.zeros_like(tensors["head.bias"])
    tensors["gamma_q"] = np.round(fresh.gamma.detach().numpy() * (1 << GAMMA_FRAC_BITS)).astype(np.int32)


def quantize(float_model_path, out_path, calib_images: np.ndarray, calib_labels: np.ndarray,
             data_fingerprint: dict, from_scratch_seed=None, percentile: float = 100.0,
             norm_bits: int = NORM_BITS_INT8, rounding: str = "double") -> dict:
    """Write the int8 model of `float_model_path` to `out_path`; returns the header written.

    With `from_scratch_seed`, only the number formats (scales, zero points, multipliers) come from the
    trained model: the weights start from a fresh random initialization, for integer training from
    scratch. Formats are a design decision made once on the host; a board cannot calibrate them.
    `rounding` is MultiplyByQuantizedMultiplier's: "double" (TFLite Micro's default) or "single" (a TFLite
    Micro built with TFLITE_SINGLE_ROUNDING); the runtime, the C kernels and the ONNX export follow it.
    `norm_bits` 15 gives every layer an int16 normalized input (16x8 FC, int64 bias) instead of
    TFLite's int8 L2_NORMALIZATION output (7): 256 times finer, where int8 costs accuracy.
    """
    if rounding not in ("double", "single"):
        raise EdgeFFError(f"rounding {rounding!r} must be double or single")
    net, header = load_network(float_model_path)
    arch = header["architecture"]
    if not 0.0 < arch["label_value"] <= 1.0:
        raise EdgeFFError(f"{float_model_path}: label_value {arch['label_value']} cannot be an int8 input "
                          "pixel (it must lie in (0, 1], the range of a pixel / 255)")
    acts, logits = _calibration_activities(net, calib_images, calib_labels)
    tensors, layers_q = {}, []
    for i, layer in enumerate(net.layers):
        # a quantization-aware layer brings its int8 weights (as it trained with them) and its output
        # range (the running maximum it trained with); a float one is quantized here, its range calibrated
        w = (layer.quantized_weight() if net.qat else layer.weight.detach()).numpy().astype(np.float64)
        b = layer.bias.detach().numpy().astype(np.float64)
        d_in, d_out = w.shape[1], w.shape[0]
        out_scale = float32(layer.output_scale() if net.qat else
                            max(float(np.percentile(acts[i], percentile)), 1e-6) / 255.0)
        norm_scale = 2.0 ** -norm_bits
        q, scales, mult, shift = _per_channel(w * _fold(net, d_in), norm_scale, out_scale)
        bias_dtype = np.int32 if norm_bits == NORM_BITS_INT8 else np.int64
        tensors |= {f"layers.{i}.weight": q, f"layers.{i}.weight_scale": scales,
                    f"layers.{i}.bias": np.round(b / (scales * norm_scale)).astype(bias_dtype),
                    f"layers.{i}.multiplier": mult, f"layers.{i}.shift": shift}
        gm, gs = quantize_multiplier(out_scale ** 2 / d_out * 2 ** GOODNESS_FRAC_BITS, rounding)
        tensors[f"layers.{i}.goodness_multiplier"] = np.array([gm], np.int32)
        tensors[f"layers.{i}.goodness_shift"] = np.array([gs], np.int32)
        layers_q.append({"out_scale": out_scale, "out_zero_point": ACT_ZERO_POINT, "norm_bits": norm_bits})
    # one-pass head: normalized activities of each head layer (1/128 after L2Norm), sqrt(D) folded in
    hw = net.head.weight.detach().numpy().astype(np.float64).copy()
    col = 0
    for l in net.head_layers:
        width = net.sizes[l]
        hw[:, col:col + width] *= _fold(net, width)
        col += width
    logit_scale = float32(max(float(np.abs(logits).max()), 1e-6) / 127.0)
    head_norm_scale = 2.0 ** -NORM_BITS_INT8  # the head keeps TFLite's int8 normalization
    q, scales, mult, shift = _per_channel(hw, head_norm_scale, logit_scale)
    tensors |= {"head.weight": q, "head.weight_scale": scales,
                "head.bias": np.round(net.head.bias.detach().numpy() / (scales * head_norm_scale)).astype(np.int32),
                "head.multiplier": mult, "head.shift": shift}
    tensors["gamma_q"] = np.round(net.gamma.detach().numpy() * (1 << GAMMA_FRAC_BITS)).astype(np.int32)
    if from_scratch_seed is not None:
        _fresh_weights(tensors, net, from_scratch_seed)
    quant = {"scheme": "int8-ff-tflite", "rounding": rounding,
             "input": {"scale": INPUT_SCALE, "zero_point": INPUT_ZERO_POINT},
             "label_q": int(round(arch["label_value"] * 255)) + INPUT_ZERO_POINT,
             "neutral_label_q": int(round(arch["label_value"] / arch["n_classes"] * 255)) + INPUT_ZERO_POINT,
             "norm": {"bits": norm_bits, "zero_point": 0, "head_bits": NORM_BITS_INT8},
             "layers": layers_q, "head": {"out_scale": logit_scale, "out_zero_point": 0},
             "goodness_frac_bits": GOODNESS_FRAC_BITS,
             "calibration": {"samples": len(calib_labels), "statistic": "max over positive and "
                             "negative inputs"},
             "weights": "trained" if from_scratch_seed is None else f"fresh random init, seed {from_scratch_seed}"}
    new_header = {"architecture": {**arch, "kind": ModelKind.INT8}, "quantization": quant,
                  "training": header.get("training"), "float_metrics": header.get("metrics", {}).get("val"),
                  "source_model": str(float_model_path), "data": data_fingerprint}
    save_model(out_path, tensors, new_header)
    return new_header
