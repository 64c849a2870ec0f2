"""The one model file format of EdgeFF: safetensors tensors plus a versioned JSON header.

Every stage (trainer, quantizer, runtime, profiler, exporters, serial bridge) reads and writes this file.
No pickle: a safetensors file is a length-prefixed JSON header followed by raw tensor bytes, so loading a
file a user hands us can never run code. The EdgeFF header sits in the safetensors metadata under the key
"edgeff" and holds at least {"format", "version", "kind"}; the rest (architecture, training config,
metrics, data fingerprint, quantization) is up to the kind. Writes are atomic.
"""
import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from edgeff.atomic_write import atomic_write_bytes
from edgeff.errors import EdgeFFError

FORMAT = "edgeff"
VERSION = 1
_METADATA_KEY = "edgeff"
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def save_model(path, tensors: dict, header: dict, kind: str = "model") -> Path:
    """Write tensors (name -> NumPy array) and a JSON-serialisable header to `path`, atomically."""
    full_header = {"format": FORMAT, "version": VERSION, "kind": kind, **header}
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    data = st_save(arrays, metadata={_METADATA_KEY: json.dumps(full_header, sort_keys=True)})
    return atomic_write_bytes(path, data)


def _parse_safetensors_header(path: Path, data: bytes) -> dict:
    if len(data) < 8:
        raise EdgeFFError(f"{path}: {len(data)} bytes is too short to be an EdgeFF model file "
                          "(it is empty or truncated)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise EdgeFFError(f"{path}: not an EdgeFF model file (no valid safetensors header; "
                          "the file is truncated or of another format)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EdgeFFError(f"{path}: not an EdgeFF model file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise EdgeFFError(f"{path}: not an EdgeFF model file (its header is not a JSON object)")
    end = max([8 + n] + [8 + n + int(v["data_offsets"][1]) for k, v in header.items()
                         if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v])
    if end != len(data):
        raise EdgeFFError(f"{path}: the file is truncated or has trailing bytes "
                          f"(header promises {end} bytes, the file has {len(data)})")
    return header


def load_model(path, kind: str = "model") -> tuple[dict, dict]:
    """Return (tensors, header) of an EdgeFF file, refusing foreign, truncated or newer files clearly."""
    path = Path(path)
    if not path.is_file():
        raise EdgeFFError(f"{path}: no such model file")
    data = path.read_bytes()
    st_header = _parse_safetensors_header(path, data)
    meta = (st_header.get("__metadata__") or {}).get(_METADATA_KEY)
    if meta is None:
        raise EdgeFFError(f"{path}: a safetensors file, but not one written by EdgeFF (no '{_METADATA_KEY}' "
                          "header); train or convert a model with `edgeff train`")
    try:
        header = json.loads(meta)
    except json.JSONDecodeError:
        raise EdgeFFError(f"{path}: the EdgeFF header is not valid JSON; the file is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise EdgeFFError(f"{path}: the header does not carry format '{FORMAT}'; not an EdgeFF file")
    version = header.get("version")
    if not isinstance(version, int):
        raise EdgeFFError(f"{path}: the header has no integer 'version'; the file is corrupt")
    if version > VERSION:
        raise EdgeFFError(f"{path}: written by a newer EdgeFF (file format version {version}; this EdgeFF "
                          f"reads up to {VERSION}); upgrade EdgeFF to read it")
    if header.get("kind") != kind:
        raise EdgeFFError(f"{path}: this is an EdgeFF '{header.get('kind')}' file, expected a '{kind}' file")
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for damaged data
        raise EdgeFFError(f"{path}: the tensor data is damaged ({exc})") from None
    return tensors, header


# a quantization-aware layer's output range, a running maximum (Brevitas' name for it; edgeff/train/qat.py)
QAT_ACT_SCALE_TENSOR = "act.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.runtime_stats.running_stats"


def ff_tensor_shapes(arch: dict) -> dict:
    """Name -> shape of every tensor an FF MLP model file must hold, from its architecture header."""
    sizes, n = arch["sizes"], len(arch["sizes"]) - 1
    shapes = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shapes[f"layers.{i}.weight"] = (b, a)
        shapes[f"layers.{i}.bias"] = (b,)
        if arch.get("qat"):
            shapes[f"layers.{i}.{QAT_ACT_SCALE_TENSOR}"] = (1,)
    shapes["gamma"] = (n,)
    shapes["alpha"] = (n, n)
    shapes["head.weight"] = (arch["n_classes"], sum(sizes[l] for l in arch["head_layers"]))
    shapes["head.bias"] = (arch["n_classes"],)
    return shapes


def check_ff_tensors(path, tensors: dict, arch: dict):
    """Refuse a model whose tensors are missing, extra, misshapen or not finite, naming the tensor."""
    try:
        expected = ff_tensor_shapes(arch)
    except (KeyError, TypeError, IndexError) as exc:
        raise EdgeFFError(f"{path}: the architecture header is incomplete or inconsistent ({exc!r})") from None
    for name, shape in expected.items():
        if name not in tensors:
            raise EdgeFFError(f"{path}: tensor '{name}' is missing (architecture {arch['sizes']})")
        if tuple(tensors[name].shape) != tuple(shape):
            raise EdgeFFError(f"{path}: tensor '{name}' has shape {tuple(tensors[name].shape)}, "
                              f"but the architecture {arch['sizes']} needs {tuple(shape)}")
        if tensors[name].dtype.kind == "f" and not np.isfinite(tensors[name]).all():
            raise EdgeFFError(f"{path}: tensor '{name}' holds NaN or infinite values")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise EdgeFFError(f"{path}: unexpected tensor(s) {extra} for architecture {arch['sizes']}")
