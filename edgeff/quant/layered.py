"""Post-training quantization of a layered FF network (edgeff.train.conv_network: conv blocks, max pooling,
flatten, dense) trained with channel-wise competitive FF, into the int8 model file that
edgeff.runtime.int_layered runs.

Each layer's kind folds and quantizes itself through the op registry (edgeff/ops/<kind>/ptq.py): `fold` gives
the layer as the integer kernels compute it (a conv block's BatchNorm folded into its filters, in float64;
the others as they are), and the calibration runs on that folded network, since it is what the integers
compute. `quantize` takes each layer's calibration outputs and its input's scale and zero point (the image's
1/255 and -128 for the first layer, q = pixel - 128, exact) and returns its tensors and header entry; this
module adds to each entry the input it was quantized for, so the runtime can check the chain.

Then the model's decision (edgeff.runtime.class_goodness): per layer the integer multiplier and shift that
map its class goodness G (a sum of (q - zp)^2 over a class group of `count` values) to the real mean square
times 2^GOODNESS_FRAC_BITS, from s^2 / count, with the groups checked to fit int32 and the mapped sum of
every layer too. The one-pass softmax head is quantized as the MLP's (edgeff.quant.fully_connected.
quantize_head): TFLite's L2_NORMALIZATION of each head layer's flattened output (channel-major, as torch
flattens), the rms fold sqrt(D), int8 logits.
"""
import copy

import numpy as np
import torch

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelKind
from edgeff.model_file import is_layered, load_model, save_model
from edgeff.op_registry import layer_facet
from edgeff.quant.fully_connected import quantize_head
from edgeff.runtime.class_goodness import check_group_size, check_scores_fit, group_values
from edgeff.runtime.int_model import GOODNESS_FRAC_BITS, INPUT_SCALE, INPUT_ZERO_POINT
from edgeff.runtime.l2_normalization import NORM_BITS_INT8
from edgeff.runtime.requantize import quantize_multiplier

CHUNK = 500   # calibration images per float64 forward pass


def folded_network(net, conv_padding: str = "batchnorm", only=None):
    """A float64 copy of the network with every layer as its kind's `fold` gives it: what the int8 model
    computes before rounding (a conv block's border semantics, `conv_padding`, included: see
    edgeff/ops/conv2d/ptq.py). `only`: the 0-based layers to fold, the others kept as trained (to measure
    each fold's share)."""
    folded = copy.deepcopy(net).double()
    for i, spec in enumerate(net.specs):
        if only is None or i in only:
            folded.layers[i] = layer_facet(spec, "ptq").fold(folded.layers[i], spec, conv_padding)
    return folded.eval()


def dequantized_network(net, int8_path):
    """A float64 copy of the network computing what the int8 model file at int8_path computes, without its
    roundings: each layer as its kind's ptq `dequantize` rebuilds it from the file's tensors (the integer
    model's starting point in real numbers, where fine-tuning can follow the device's integer training).
    Refused for another architecture, or a layer kind without a real-number form of its int8 tensors."""
    tensors, header = load_model(int8_path)
    arch, quant = header.get("architecture") or {}, header.get("quantization")
    if not is_layered(arch) or arch.get("kind") != ModelKind.INT8 or not isinstance(quant, dict):
        raise EdgeFFError(f"{int8_path}: not an int8 layered model; make one with `edgeff quantize MODEL --out "
                          "MODEL_INT8`")
    if [spec.to_header() for spec in net.specs] != arch["layers"]:
        raise EdgeFFError(f"{int8_path}: its layers are not the float model's; quantize that float model")
    copied = copy.deepcopy(net).double()
    for i, spec in enumerate(net.specs):
        ptq = layer_facet(spec, "ptq")
        if not hasattr(ptq, "dequantize"):
            raise EdgeFFError(f"{int8_path}: layer {i + 1} ({spec.kind}) has no real-number form of its int8 "
                              "tensors yet")
        copied.layers[i] = ptq.dequantize(copied.layers[i], spec, i, tensors, quant["layers"][i])
    return copied.eval()


@torch.no_grad()
def folded_outputs(folded, net, images: np.ndarray):
    """(every layer's float64 outputs, head logits) of the folded network on uint8 images."""
    acts, logits = [[] for _ in folded.layers], []
    for s in range(0, len(images), CHUNK):
        x = net.inputs(images[s:s + CHUNK]).double()
        outs = folded.activities(x)
        for k, h in enumerate(outs):
            acts[k].append(h.numpy())
        logits.append(folded.head(folded.head_input(outs)).numpy())
    return [np.concatenate(a) for a in acts], np.concatenate(logits)


def group_counts(where, specs, n_classes: int) -> list:
    """Each layer's class-group size, refused where its goodness could overflow int32."""
    counts = [group_values(spec.out_shape, n_classes) for spec in specs]
    for i, count in enumerate(counts):
        check_group_size(where, i + 1, count)
    return counts


def class_goodness_multipliers(where, counts, scales, rounding: str):
    """(multipliers, shifts) int32 per layer: real mean-square class goodness * 2^GOODNESS_FRAC_BITS from the
    integer G, s^2 / count each; refused where the mapped sum of every layer could overflow int32."""
    mult, shift = zip(*(quantize_multiplier(s * s / count * 2 ** GOODNESS_FRAC_BITS, rounding)
                        for s, count in zip(scales, counts, strict=True)), strict=True)
    check_scores_fit(where, counts, mult, shift, rounding)
    return np.array(mult, np.int32), np.array(shift, np.int32)


def quantize_layered(net, header: dict, float_model_path, out_path, calib_images: np.ndarray, data_fingerprint,
                     from_scratch_seed, percentile: float, norm_bits: int, rounding: str, conv_padding: str) -> dict:
    """Write the int8 model of a layered float network (edgeff.quant.ptq.quantize's arguments); returns the
    header written. conv_padding: what a padded conv block's input is padded with, "zero-point" (TFLite's)
    or "batchnorm" (BatchNorm's zero, torch's semantics; edgeff/ops/conv2d/ptq.py)."""
    arch = header["architecture"]
    where = str(float_model_path)
    if arch["objective"] != "cwc":
        raise EdgeFFError(f"{where}: quantizing a layered model trained with objective {arch['objective']!r} is "
                          "not supported yet: the int8 layered model decides by channel-wise competitive (cwc) "
                          "class goodness")
    if from_scratch_seed is not None:
        raise EdgeFFError(f"{where}: --from-scratch prepares integer training, which layered (conv) models do not "
                          "have yet; quantize without it")
    facets = [layer_facet(spec, "ptq") for spec in net.specs]   # a kind without PTQ is refused before any work
    counts = group_counts(where, net.specs, net.n_classes)
    folded = folded_network(net, conv_padding)
    acts, logits = folded_outputs(folded, net, calib_images)
    tensors, layers_q = {}, []
    source = {"scale": INPUT_SCALE, "zero_point": INPUT_ZERO_POINT}
    for i, (facet, spec) in enumerate(zip(facets, net.specs, strict=True)):
        layer_tensors, entry = facet.quantize(spec, folded.layers[i], i, acts[i], source, False, percentile,
                                              norm_bits, rounding)
        tensors |= layer_tensors
        layers_q.append({"in_scale": source["scale"], "in_zero_point": source["zero_point"], **entry})
        source = {"scale": entry["out_scale"], "zero_point": entry["out_zero_point"]}
    mult, shift = class_goodness_multipliers(where, counts, [e["out_scale"] for e in layers_q], rounding)
    tensors |= {"class_goodness_multiplier": mult, "class_goodness_shift": shift}
    head, logit_scale = quantize_head(net.head.weight.detach().numpy(), net.head.bias.detach().numpy(),
                                      [net.sizes[l] for l in net.head_layers], "rms", logits)
    tensors |= head
    quant = {"scheme": "int8-cwc-tflite", "rounding": rounding, "conv_padding": conv_padding,
             "input": {"scale": INPUT_SCALE, "zero_point": INPUT_ZERO_POINT},
             "layout": "NHWC activations, OHWI filters; the image, flatten and the head's input in torch's "
                       "channel-major order",
             "norm": {"bits": norm_bits, "zero_point": 0, "head_bits": NORM_BITS_INT8},
             "layers": layers_q, "head": {"out_scale": logit_scale, "out_zero_point": 0},
             "goodness_frac_bits": GOODNESS_FRAC_BITS,
             "class_goodness": "G_j = sum of (q - zp)^2 over class group j's channels (a contiguous block of "
                               "channels / n_classes in torch's order) and every position, int32; times "
                               "class_goodness_multiplier / shift: the mean square * 2^goodness_frac_bits; "
                               "summed over the evaluation layers; argmax, a tie to the lowest class",
             "calibration": {"samples": len(calib_images), "percentile": percentile,
                             "statistic": "of every layer's outputs in the folded float64 network"},
             "weights": "trained"}
    new_header = {"architecture": {**arch, "kind": ModelKind.INT8}, "quantization": quant,
                  "training": header.get("training"), "float_metrics": header.get("metrics", {}).get("val"),
                  "source_model": where, "data": data_fingerprint}
    save_model(out_path, tensors, new_header)
    return new_header
