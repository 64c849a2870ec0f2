"""Read and write IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.

IDX layout: 2 zero bytes, a type code, the number of dimensions, one big-endian uint32 per dimension,
then the values in C order. Every check names the file and the problem.
"""
import gzip
import struct
from pathlib import Path

import numpy as np

from edgeff.atomic_write import atomic_write_bytes
from edgeff.errors import EdgeFFError

# IDX type code -> NumPy dtype (multi-byte types are big-endian in the file).
_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in _IDX_TYPES.items()}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise EdgeFFError(f"{path}: no such file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise EdgeFFError(f"{path}: the gzip stream is damaged or truncated ({exc}); "
                              "download the file again") from None
    return raw


def read_idx(path, expect_ndim=None) -> np.ndarray:
    """Return the array stored in an IDX file (.gz or raw), in native byte order."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise EdgeFFError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_TYPES:
        raise EdgeFFError(f"{path}: not an IDX file (magic number 0x{data[:4].hex()}; "
                          "expected 0x0000 then a type code such as 0x08 for uint8)")
    if expect_ndim is not None and ndim != expect_ndim:
        raise EdgeFFError(f"{path}: has {ndim} dimensions, expected {expect_ndim}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise EdgeFFError(f"{path}: truncated inside the header")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header_len
    if got != expected:
        raise EdgeFFError(f"{path}: header says shape {tuple(shape)} ({expected} bytes of data) "
                          f"but the file holds {got} bytes; the file is truncated or corrupt")
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path, array: np.ndarray, compress=None) -> Path:
    """Write an array as an IDX file, atomically; gzip when the name ends in .gz (or compress=True)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    code = _CODE_OF.get(array.dtype.newbyteorder("="))
    if code is None:
        raise EdgeFFError(f"{path}: IDX cannot store dtype {array.dtype}")
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    body = array.astype(_IDX_TYPES[code], copy=False).tobytes()
    data = header + body
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)
