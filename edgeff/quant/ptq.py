"""Post-training quantization of a float FF model into the int8 model file the runtime and boards run.

The model description is walked through the op registry: each layer's kind quantizes its own weights,
bias, requantization multipliers and output range (edgeff/ops/<kind>/ptq.py, the dense layer's there).
This module runs the calibration, quantizes the one-pass head and gamma, and writes the file; a layered
(convolutional) network's quantization is edgeff.quant.layered's.
The image enters as q = pixel - 128 (scale 1/255, zp -128): exact. Activation scales come from the
largest activity seen on calibration samples (or a percentile of them), for positive and negative labels
alike.
Every float-to-integer conversion happens at quantization, once; the header keeps the float scales for
reference.
"""
import numpy as np
import torch

from edgeff.data.labels import overlay_labels
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import is_layered, save_model
from edgeff.op_registry import layer_facet
from edgeff.quant.fully_connected import quantize_head
from edgeff.quant.layered import quantize_layered
from edgeff.runtime.int_model import GAMMA_FRAC_BITS, GOODNESS_FRAC_BITS, INPUT_SCALE, INPUT_ZERO_POINT
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.train.evaluate import images_to_input
from edgeff.train.model_io import load_network


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
    """Replace the weights by a new random initialization (torch's init, seeded) quantized in the trained
    model's formats; an untrained (zero) head, gamma at its initial value."""
    torch.manual_seed(seed)
    fresh = type(net)(net.description, net.n_classes, net.label_value, net.goodness_kind, net.collab_mode,
                      head_layers=net.head_layers)
    for i, (spec, layer) in enumerate(zip(fresh.specs, fresh.layers, strict=True)):
        tensors |= layer_facet(spec, "ptq").fresh_weights(spec, layer, i, tensors)
    tensors["head.weight"] = np.zeros_like(tensors["head.weight"])
    tensors["head.bias"] = np.zeros_like(tensors["head.bias"])
    tensors["gamma_q"] = np.round(fresh.gamma.detach().numpy() * (1 << GAMMA_FRAC_BITS)).astype(np.int32)


def quantize(float_model_path, out_path, calib_images: np.ndarray, calib_labels: np.ndarray,
             data_fingerprint: dict, from_scratch_seed=None, percentile: float = 100.0,
             norm_bits: int = NORM_BITS_INT8, rounding: str = "double", conv_padding: str = "batchnorm") -> dict:
    """Write the int8 model of `float_model_path` to `out_path`; returns the header written.

    With `from_scratch_seed`, only the number formats (scales, zero points, multipliers) come from the
    trained model: the weights start from a fresh random initialization, for integer training from
    scratch. Formats are a design decision made once on the host; a board cannot calibrate them.
    `rounding` is MultiplyByQuantizedMultiplier's: "double" (TFLite Micro's default) or "single" (a TFLite
    Micro built with TFLITE_SINGLE_ROUNDING); the runtime, the C kernels and the ONNX export follow it.
    `norm_bits` 15 gives every layer an int16 normalized input (16x8 FC, int64 bias) instead of
    TFLite's int8 L2_NORMALIZATION output (7): 256 times finer, where int8 costs accuracy.
    `conv_padding` is a layered model's (edgeff.quant.layered).
    """
    if rounding not in ("double", "single"):
        raise EdgeFFError(f"rounding {rounding!r} must be double or single")
    net, header = load_network(float_model_path)
    arch = header["architecture"]
    if is_layered(arch):   # a layered network: conv blocks, pooling, flatten, dense (edgeff.quant.layered)
        return quantize_layered(net, header, float_model_path, out_path, calib_images, data_fingerprint,
                                from_scratch_seed, percentile, norm_bits, rounding, conv_padding)
    if not 0.0 < arch["label_value"] <= 1.0:
        raise EdgeFFError(f"{float_model_path}: label_value {arch['label_value']} cannot be an int8 input "
                          "pixel (it must lie in (0, 1], the range of a pixel / 255)")
    facets = [layer_facet(spec, "ptq") for spec in net.specs]   # a kind without PTQ is refused before any work
    acts, logits = _calibration_activities(net, calib_images, calib_labels)
    tensors, layers_q = {}, []
    for i, (facet, spec, layer) in enumerate(zip(facets, net.specs, net.layers, strict=True)):
        source = {"scale": INPUT_SCALE, "zero_point": INPUT_ZERO_POINT} if i == 0 else \
            {"scale": layers_q[-1]["out_scale"], "zero_point": layers_q[-1]["out_zero_point"]}
        layer_tensors, entry = facet.quantize(spec, layer, i, acts[i], source, net.qat, percentile, norm_bits,
                                              rounding)
        tensors |= layer_tensors
        layers_q.append(entry)
    # one-pass head: normalized activities of each head layer (1/128 after L2Norm), sqrt(D) folded in
    head, logit_scale = quantize_head(net.head.weight.detach().numpy(), net.head.bias.detach().numpy(),
                                      [net.sizes[l] for l in net.head_layers], net.normalization, logits)
    tensors |= head
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
