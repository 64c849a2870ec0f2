"""Max pooling in the board image of a layered CwC model (format 2; firmware_bridge/board_image.py has the
image's header, the part of a layer's record every kind shares, and the layout).

    record   size u8, 3 pad
    arrays   none (no parameters)
"""
from edgeff.byte_layout import ByteLayout
from edgeff.ops.maxpool2d.spec import MaxPool2dSpec

RECORD = ByteLayout("<Bxxx", ("size",))


def pack_record(spec: MaxPool2dSpec, layer, in_zero_point: int, scales) -> bytes:
    return RECORD.pack(spec.size)


def unpack_record(blob: bytes, pos: int, in_shape: tuple, out_channels: int) -> tuple[MaxPool2dSpec, dict]:
    (size,) = RECORD.unpack_from(blob, pos)
    return MaxPool2dSpec(*in_shape, size), {"size": size}


def check_record(index: int, layer, in_zero_point: int, fields: dict, multipliers) -> None:
    """Nothing of the record follows from tensors (the size is the spec's, and the loader checks the rest)."""


def array_specs(spec: MaxPool2dSpec, prefix: str, trained: bool) -> list:
    return []
