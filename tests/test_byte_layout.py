"""ByteLayout (edgeff/byte_layout.py): the field offsets the generated C headers carry are where struct packs
each field, and a layout whose names do not match its items is refused."""
import struct

import pytest

from edgeff.byte_layout import ByteLayout
from edgeff.op_registry import facet
from firmware_bridge import board_image
from firmware_bridge import messages as m


@pytest.mark.parametrize("layout", [m.INFO, m.CONFIGURE, m.METRICS, m.STAGED, m.ERROR, board_image.FIXED,
                                    board_image.layer_encoding().RECORD, board_image.LAYERED_FIXED,
                                    board_image.LAYERED_LAYER,
                                    *(facet(kind, "board_image").RECORD for kind in board_image.LAYERED_KINDS)])
def test_each_offset_is_where_struct_packs_its_field(layout):
    """Pack distinct marker values, one field at a time, and find each one's bytes at its offset."""
    codes = [c for c in struct.Struct(layout.format).format.lstrip("<") if c.isalpha() and c != "x"]
    assert len(codes) == len(layout.fields)
    for k, name in enumerate(layout.fields):
        values = [b"" if c == "s" else 0 for c in codes]
        values[k] = b"\x5a" if codes[k] == "s" else 0x5A
        packed = layout.pack(*values)
        assert packed.index(0x5A) == layout.offsets[name], name


def test_names_must_match_the_items():
    assert ByteLayout("<BxxI8s", ("a", "b", "c")).offsets == {"a": 0, "b": 3, "c": 7}
    with pytest.raises(ValueError, match="3 fields, 2 names"):
        ByteLayout("<BII", ("a", "b"))
    with pytest.raises(ValueError, match="little-endian"):
        ByteLayout("BI", ("a", "b"))
