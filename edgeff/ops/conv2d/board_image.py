"""The conv block in the board image of a layered CwC model (format 2; firmware_bridge/board_image.py has the
image's header, the part of a layer's record every kind shares, and the layout).

    record   kernel u8, stride u8, padding u8, pool u8, explicit_pad u8, act_min i8, 2 pad,
             step_weight_shift i32, step_bias_shift i32 (update_scales' shifts; 0 for a frozen block)
    arrays   weight int8 OHWI (out, kernel, kernel, in), bias int32 (out), multiplier int32 (out),
             shift int32 (out), pad_value int8 (in);
             a trained block then: weight_master int16 OHWI, bias_master int64 (out),
             step multipliers int64 (2, out): update_scales' filter multipliers, then its bias multipliers

explicit_pad and act_min follow from the tensors (the runtime facet's explicit_pad, max(-128, zero point)); the
record carries them so the firmware need not derive them, and unpack refuses a record whose copies disagree.
The step factors need the file's float scales, which the image does not hold: the host makes them at pack time
(edgeff.runtime.int_layered_training.step_scales, as the trainer does), and an image's are checked against the
bound that keeps the update's products inside int64 (largest_step_multiplier). They are not a model-file
tensor: unpack_image checks them and leaves them out of the tensors (array_offsets says where they are).
"""
import numpy as np

from edgeff.byte_layout import ByteLayout
from edgeff.errors import EdgeFFError
from edgeff.ops.conv2d.runtime import explicit_pad, gradient_bits, largest_step_multiplier
from edgeff.ops.conv2d.spec import Conv2dSpec
from edgeff.runtime.conv2d_training import UpdateScales

RECORD = ByteLayout("<BBBBBbxxii", ("kernel", "stride", "padding", "pool", "explicit_pad", "act_min",
                                    "step_weight_shift", "step_bias_shift"))
STEP_MULTIPLIERS = "step_multipliers"   # the image's array of update_scales' multipliers, after the masters
SHIFT_RANGE = (0, 62)                   # a step shift with lr_shift >= 0 and its product shifted inside int64


def pack_record(spec: Conv2dSpec, layer, in_zero_point: int, scales) -> bytes:
    """The block's record; scales: its UpdateScales when it trains, else None."""
    shifts = (scales.weight_shift, scales.bias_shift) if scales is not None else (0, 0)
    return RECORD.pack(spec.kernel, spec.stride, spec.padding, spec.pool, explicit_pad(layer, in_zero_point),
                       layer.act_min, *shifts)


def unpack_record(blob: bytes, pos: int, in_shape: tuple, out_channels: int) -> tuple[Conv2dSpec, dict]:
    """(spec, the record's fields) of the record at pos, for a block of input (C, H, W) and out_channels."""
    fields = dict(zip(RECORD.fields, RECORD.unpack_from(blob, pos), strict=True))
    return Conv2dSpec(*in_shape, out_channels, fields["kernel"], fields["padding"], fields["stride"],
                      fields["pool"]), fields


def step_factors(scales) -> np.ndarray:
    """The (2, out) int64 array of a trained block's step multipliers."""
    return np.stack([scales.weight_multiplier, scales.bias_multiplier]).astype(np.int64)


def step_scales(layer, fields: dict, multipliers: np.ndarray) -> UpdateScales:
    """A trained block's step factors as its image holds them (the record's shifts, the (2, out) step multipliers):
    the inverse of pack_record's shifts and step_factors, for a board, which has no float scales to make them."""
    return UpdateScales(multipliers[0], fields["step_weight_shift"], multipliers[1], fields["step_bias_shift"],
                        *gradient_bits(layer))


def check_record(index: int, layer, in_zero_point: int, fields: dict, multipliers) -> None:
    """EdgeFFError naming what disagrees between the record of layer `index` (0-based), its loaded layer
    and, for a trained block, its step multipliers ((2, out) int64, else None)."""
    where = f"board image layer {index + 1} (conv2d)"
    if fields["act_min"] != layer.act_min:
        raise EdgeFFError(f"{where}: act_min {fields['act_min']} is not max(-128, its output zero point "
                          f"{layer.out_zero_point})")
    if fields["explicit_pad"] != explicit_pad(layer, in_zero_point):
        raise EdgeFFError(f"{where}: explicit_pad {fields['explicit_pad']} disagrees with its padding and pad "
                          f"values ({explicit_pad(layer, in_zero_point)})")
    shifts = (fields["step_weight_shift"], fields["step_bias_shift"])
    if multipliers is None:
        if shifts != (0, 0):
            raise EdgeFFError(f"{where}: a frozen block has step shifts {list(shifts)}; they must be 0")
        return
    low, high = SHIFT_RANGE
    if not all(low <= s <= high for s in shifts):
        raise EdgeFFError(f"{where}: step shifts {list(shifts)} must lie in [{low}, {high}]")
    for name, row, bits in zip(("filter", "bias"), multipliers, gradient_bits(layer), strict=True):
        if row.min() < 0 or row.max() > largest_step_multiplier(bits):
            raise EdgeFFError(f"{where}: {name} step multipliers must lie in [0, {largest_step_multiplier(bits)}] "
                              "so that the update's products fit int64")


def array_specs(spec: Conv2dSpec, prefix: str, trained: bool) -> list:
    """(name, dtype, shape) of the block's arrays, in image order (prefix: "layers.<i>.")."""
    o, k, c = spec.out_channels, spec.kernel, spec.in_channels
    specs = [(prefix + "weight", np.int8, (o, k, k, c)), (prefix + "bias", np.int32, (o,)),
             (prefix + "multiplier", np.int32, (o,)), (prefix + "shift", np.int32, (o,)),
             (prefix + "pad_value", np.int8, (c,))]
    if trained:
        specs += [(prefix + "weight_master", np.int16, (o, k, k, c)), (prefix + "bias_master", np.int64, (o,)),
                  (prefix + STEP_MULTIPLIERS, np.int64, (2, o))]
    return specs
