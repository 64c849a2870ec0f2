"""A packed little-endian byte layout with named fields: a struct.Struct that also knows each field's offset.

The board protocol's payloads and the board image's header and layer records are defined once, in Python, as
ByteLayouts; firmware_bridge/c_constants.py writes each field's offset into the generated C headers, so the
firmware reads `p + EF_INFO_AT_SRAM_BUDGET` instead of a number that could drift from the Python side.
Core code: imports only the standard library.
"""
import re
import struct

_ITEM = re.compile(r"(\d*)([xcbB?hHiIlLqQefds])")


class ByteLayout(struct.Struct):
    def __init__(self, fmt: str, fields: tuple):
        if not fmt.startswith("<"):
            raise ValueError(f"layout {fmt!r} must be little-endian and packed ('<')")
        super().__init__(fmt)
        self.fields = tuple(fields)
        starts, at = [], 0
        for count, code in _ITEM.findall(fmt[1:]):
            n = int(count or 1)
            if code == "x":                       # padding has no name
                at += n
                continue
            for _ in range(1 if code == "s" else n):   # "16s" is one field of 16 bytes
                starts.append(at)
                at += n if code == "s" else struct.calcsize("<" + code)
        if at != self.size or len(starts) != len(self.fields):
            raise ValueError(f"layout {fmt!r} has {len(starts)} fields, {len(self.fields)} names given")
        self.offsets = dict(zip(self.fields, starts, strict=True))
