"""The dense layer in the board image (firmware_bridge/board_image.py has the image's header and layout).

Each layer has a record in the image header and its arrays after it:

    record   out_zero_point i8, norm_bits u8, 2 pad, goodness multiplier i32, goodness shift i32, gamma (Q8) i32
    arrays   weight int8 (out, in), bias, multiplier int32 (out), shift int32 (out),
             [master weight int16 (out, in), master bias]
             (bias and master bias are int32, or int64 for a layer with int16 normalized inputs)

Tensors and header fields are named as in an int8 model file (`prefix` is the layer's "layers.<i>.").
"""
import numpy as np

from edgeff.byte_layout import ByteLayout
from edgeff.errors import EdgeFFError
from edgeff.runtime.l2_normalization import NORM_BITS_INT8, NORM_BITS_INT16
from edgeff.runtime.memory_plan import Buffer

RECORD = ByteLayout("<bBxxiii", ("out_zero_point", "norm_bits", "goodness_multiplier", "goodness_shift", "gamma_q"))
NORM_BITS = (NORM_BITS_INT8, NORM_BITS_INT16)   # int8 normalized inputs (TFLite), int16 (16x8 mode)


def pack_record(prefix: str, quant_layer: dict, tensors: dict, gamma: int) -> bytes:
    """The layer's record: its quantization fields, goodness rescaling and collaboration strength gamma."""
    return RECORD.pack(quant_layer["out_zero_point"], quant_layer.get("norm_bits", 7),
                       int(tensors[prefix + "goodness_multiplier"][0]), int(tensors[prefix + "goodness_shift"][0]),
                       int(gamma))


def unpack_record(blob: bytes, pos: int, prefix: str) -> tuple[dict, dict, int]:
    """(quantization fields, tensors, gamma) of the record at pos."""
    zero_point, bits, multiplier, shift, gamma = RECORD.unpack_from(blob, pos)
    tensors = {prefix + "goodness_multiplier": np.array([multiplier], np.int32),
               prefix + "goodness_shift": np.array([shift], np.int32)}
    return {"out_zero_point": zero_point, "norm_bits": bits}, tensors, gamma


def check_record(quant_layer: dict):
    """EdgeFFError when a decoded record's fields are not a layer's."""
    if quant_layer["norm_bits"] not in NORM_BITS:
        raise EdgeFFError("board image header is invalid (norm bits must be 7 or 15)")


def array_specs(spec, prefix: str, quant_layer: dict, masters: bool) -> list:
    """(tensor name, dtype, shape) of the layer's arrays, in image order; masters: the image holds the
    master weights."""
    bias = np.int64 if quant_layer.get("norm_bits", 7) > 7 else np.int32
    d_in, d_out = spec.in_features, spec.out_features
    specs = [(prefix + "weight", np.int8, (d_out, d_in)), (prefix + "bias", bias, (d_out,)),
             (prefix + "multiplier", np.int32, (d_out,)), (prefix + "shift", np.int32, (d_out,))]
    if masters:
        specs += [(prefix + "weight_master", np.int16, (d_out, d_in)), (prefix + "bias_master", bias, (d_out,))]
    return specs


def training_buffers(spec, layer: int, norm_bits: int) -> list:
    """The layer's buffers of one integer training step on a board (edgeff.runtime.memory_plan): its arrays in
    SRAM or flash, and the step's activations."""
    p, d_in, d_out = f"layer {layer} ", spec.in_features, spec.out_features
    wide = norm_bits > NORM_BITS_INT8
    bias = "int64" if wide else "int32"
    return [Buffer(p + "weights int8", "sram", "int8", (d_out, d_in), "weights", layer),
            Buffer(p + "master weights int16", "sram", "int16", (d_out, d_in), "update_state", layer),
            Buffer(p + "bias", "sram", bias, (d_out,), "weights", layer),
            Buffer(p + "master bias", "sram", bias, (d_out,), "update_state", layer),
            Buffer(p + "normalized input, +/- pass", "sram", "int16" if wide else "int8", (2, d_in), "activations",
                   layer),
            Buffer(p + "output, +/- pass", "sram", "int8", (2, d_out), "activations", layer),
            Buffer(p + "goodness, +/- pass", "sram", "int32", (2,), "activations", layer),
            Buffer(p + "multiplier + shift", "flash", "int32", (2, d_out), "constants", layer),
            Buffer(p + "goodness multiplier + shift", "flash", "int32", (2,), "constants", layer)]
