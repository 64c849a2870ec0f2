"""The one model file format of EdgeFF: safetensors tensors plus a versioned JSON header.

Every stage (trainer, quantizer, runtime, profiler, exporters, serial bridge) reads and writes this file.
No pickle: a safetensors file is a length-prefixed JSON header followed by raw tensor bytes, so loading a
file a user hands us can never run code. The EdgeFF header sits in the safetensors metadata under the key
"edgeff" and holds at least {"format", "version", "kind"}; the rest (architecture, training config,
metrics, data fingerprint, quantization) is up to the kind. Writes are atomic.

A model's architecture holds its layers as a model description (edgeff/model_description.py) since format 2;
format-1 files (`sizes` and one `normalization`) are migrated when they load. In memory the architecture
also carries the derived `sizes` and `normalization`, which are not stored.
"""
import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from edgeff.atomic_write import atomic_write_bytes
from edgeff.errors import EdgeFFError
from edgeff.model_description import (
    ModelDescription,
    ModelKind,
    migrate_v1_architecture,
    stored_architecture,
    with_derived_keys,
)

FORMAT = "edgeff"
VERSION = 2
_METADATA_KEY = "edgeff"
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def save_model(path, tensors: dict, header: dict, kind: str = "model") -> Path:
    """Write tensors (name -> NumPy array) and a JSON-serialisable header to `path`, atomically."""
    if kind == "model" and isinstance(header.get("architecture"), dict):
        header = {**header, "architecture": stored_architecture(header["architecture"], str(path))}
    # a header loaded from an older file is written as this version: its own format fields give way
    full_header = {**header, "format": FORMAT, "version": VERSION, "kind": kind}
    arrays = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    data = st_save(arrays, metadata={_METADATA_KEY: json.dumps(full_header, sort_keys=True)})
    return atomic_write_bytes(path, data)


def _json(path: Path, text, what: str):
    try:
        return json.loads(text)
    # ValueError covers JSONDecodeError and integers too long to convert; RecursionError deep nesting
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise EdgeFFError(f"{path}: not an EdgeFF model file ({what} is not valid JSON)") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_safetensors_header(path: Path, data: bytes) -> dict:
    """The safetensors header, with every entry checked against the format (a metadata table of text, and
    tensors with a dtype, a shape and data offsets), so that nothing downstream meets a malformed one."""
    if len(data) < 8:
        raise EdgeFFError(f"{path}: {len(data)} bytes is too short to be an EdgeFF model file "
                          "(it is empty or truncated)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise EdgeFFError(f"{path}: not an EdgeFF model file (no valid safetensors header; "
                          "the file is truncated or of another format)")
    header = _json(path, data[8:8 + n], "its header")
    if not isinstance(header, dict):
        raise EdgeFFError(f"{path}: not an EdgeFF model file (its header is not a JSON object)")
    end = 8 + n
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise EdgeFFError(f"{path}: the safetensors metadata is not a table of texts; the file is corrupt")
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(v) for v in offsets)
                and 0 <= offsets[0] <= offsets[1] and isinstance(entry.get("dtype"), str)
                and isinstance(shape, list) and all(_is_int(v) and v >= 0 for v in shape)):
            raise EdgeFFError(f"{path}: tensor entry {name!r} is malformed (it needs a dtype, a shape and "
                              "two data offsets); the file is corrupt")
        end = max(end, 8 + n + offsets[1])
    if end != len(data):
        raise EdgeFFError(f"{path}: the file is truncated or has trailing bytes "
                          f"(header promises {end} bytes, the file has {len(data)})")
    return header


def load_model(path, kind: str = "model") -> tuple[dict, dict]:
    """Return (tensors, header) of an EdgeFF file, refusing foreign, truncated, newer or inconsistent files
    clearly. A model file (kind "model") must carry an FF architecture that its tensors match."""
    path = Path(path)
    if not path.is_file():
        raise EdgeFFError(f"{path}: no such model file")
    data = path.read_bytes()
    st_header = _parse_safetensors_header(path, data)
    meta = st_header.get("__metadata__", {}).get(_METADATA_KEY)
    if meta is None:
        raise EdgeFFError(f"{path}: a safetensors file, but not one written by EdgeFF (no '{_METADATA_KEY}' "
                          "header); train or convert a model with `edgeff train`")
    header = _json(path, meta, "the EdgeFF header")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise EdgeFFError(f"{path}: the header does not carry format '{FORMAT}'; not an EdgeFF file")
    version = header.get("version")
    if not _is_int(version):
        raise EdgeFFError(f"{path}: the header has no integer 'version'; the file is corrupt")
    if version > VERSION:
        raise EdgeFFError(f"{path}: written by a newer EdgeFF (file format version {version}; this EdgeFF "
                          f"reads up to {VERSION}); upgrade EdgeFF to read it")
    if header.get("kind") != kind:
        raise EdgeFFError(f"{path}: this is an EdgeFF {header.get('kind')!r} file, expected a '{kind}' file")
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for damaged data
        raise EdgeFFError(f"{path}: the tensor data is damaged ({exc})") from None
    if kind == "model":
        check_model(path, tensors, header)
    return tensors, header


# a quantization-aware layer's output range, a running maximum (Brevitas' name for it; edgeff/train/qat.py)
QAT_ACT_SCALE_TENSOR = ("act.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.runtime_stats."
                        "running_stats")


def ff_tensor_shapes(arch: dict) -> dict:
    """Name -> shape of every tensor an FF MLP model file must hold, from its architecture header."""
    sizes, n = arch["sizes"], len(arch["sizes"]) - 1
    shapes = {}
    for i, layer in enumerate(ModelDescription.from_header(arch["layers"]).layers):
        shapes |= {f"layers.{i}.{suffix}": shape for suffix, shape in layer.float_tensors().items()}
        if arch.get("qat"):
            shapes[f"layers.{i}.{QAT_ACT_SCALE_TENSOR}"] = (1,)
    if "objective" not in arch:    # the label-overlay MLP couples its layers (CFF); the layered network does not
        shapes["gamma"] = (n,)
        shapes["alpha"] = (n, n)
    shapes["head.weight"] = (arch["n_classes"], sum(sizes[l] for l in arch["head_layers"]))
    shapes["head.bias"] = (arch["n_classes"],)
    return shapes


def check_ff_tensors(path, tensors: dict, arch: dict):
    """Refuse a model whose tensors are missing, extra, misshapen or not finite, naming the tensor."""
    expected = ff_tensor_shapes(arch)   # the architecture was checked by _architecture
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


_ARCH_CHOICES = {"goodness": ("mean", "sum"), "collab_mode": ("none", "fixed", "adaptive")}
# how a layered network (edgeff.train.conv_network; conv blocks, flatten, dense) was trained: channel-wise
# competitive FF, FF with a spatial label overlay and negatives, or backprop. The MLP's files have none.
OBJECTIVES = ("cwc", "overlay", "backprop")


def _layer_numbers(value, n_layers: int) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(v) and 1 <= v <= n_layers for v in value)


def _architecture(path, arch, version: int) -> dict:
    """The checked architecture with its derived keys; a format-1 one migrated to layers first."""
    if not isinstance(arch, dict) or arch.get("kind") not in tuple(ModelKind):
        kind = arch.get("kind") if isinstance(arch, dict) else None
        raise EdgeFFError(f"{path}: the file describes no FF network (architecture kind {kind!r}); train one "
                          "with `edgeff train` or quantize one with `edgeff quantize`")
    if version == 1:
        arch = migrate_v1_architecture(arch, str(path))
    elif "sizes" in arch or "normalization" in arch:
        raise EdgeFFError(f"{path}: a format-{version} architecture holds its layers under 'layers', not "
                          "'sizes' / 'normalization'; the file is corrupt")
    description = ModelDescription.from_header(arch.get("layers"), str(path))
    try:
        arch = with_derived_keys(arch, description)
    except EdgeFFError as exc:   # layers that normalize differently, which no backend runs yet
        raise EdgeFFError(f"{path}: {exc}") from None
    _check_ff_settings(path, arch)
    return arch


def _check_ff_settings(path, arch):
    sizes = arch["sizes"]
    n_classes = arch.get("n_classes")
    if not (_is_int(n_classes) and 2 <= n_classes <= sizes[0]):
        raise EdgeFFError(f"{path}: the architecture's 'n_classes' must be 2..{sizes[0]} (the label pixels are "
                          f"input pixels), got {n_classes!r}; the file is corrupt")
    for key in ("eval_layers", "head_layers"):
        if not _layer_numbers(arch.get(key), len(sizes) - 1):
            raise EdgeFFError(f"{path}: the architecture's '{key}' must list layers 1..{len(sizes) - 1}, got "
                              f"{arch.get(key)!r}; the file is corrupt")
    for key, choices in _ARCH_CHOICES.items():
        if not isinstance(arch.get(key), str) or arch[key] not in choices:
            raise EdgeFFError(f"{path}: the architecture's '{key}' must be one of {', '.join(choices)}, "
                              f"got {arch.get(key)!r}; the file is corrupt")
    if is_layered(arch) and arch["objective"] not in OBJECTIVES:
        raise EdgeFFError(f"{path}: the architecture's 'objective' must be one of {', '.join(OBJECTIVES)}, "
                          f"got {arch['objective']!r}; the file is corrupt")
    if not isinstance(arch.get("qat", False), bool):
        raise EdgeFFError(f"{path}: the architecture's 'qat' must be true or false, got {arch['qat']!r}")
    value = arch.get("label_value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise EdgeFFError(f"{path}: the architecture's 'label_value' must be a positive number, got {value!r}")


def is_layered(arch: dict | None) -> bool:
    """Whether a model file's architecture is a layered network's (conv blocks, pooling, flatten, dense), which
    has a training objective, rather than an FF MLP's; None or {} (not a model file's) is neither."""
    return "objective" in (arch or {})


def int8_tensor_specs(arch: dict, quant: dict) -> dict:
    """Name -> (dtype, shape) of every tensor an int8 FF model file must hold."""
    sizes, n_classes = arch["sizes"], arch["n_classes"]
    specs = {}
    for i, layer in enumerate(ModelDescription.from_header(arch["layers"]).layers):
        layer_tensors = layer.int8_tensors(quant["layers"][i].get("norm_bits", 7))
        specs |= {f"layers.{i}.{suffix}": (np.dtype(dtype), shape) for suffix, (dtype, shape) in layer_tensors.items()}
    d_head = sum(sizes[l] for l in arch["head_layers"])
    specs |= {"head.weight": (np.int8, (n_classes, d_head)), "head.bias": (np.int32, (n_classes,)),
              "head.multiplier": (np.int32, (n_classes,)), "head.shift": (np.int32, (n_classes,))}
    per_layer = (np.int32, (len(sizes) - 1,))
    if is_layered(arch):   # a layered model decides by class goodness (edgeff.runtime.class_goodness)
        return specs | {"class_goodness_multiplier": per_layer, "class_goodness_shift": per_layer}
    return specs | {"gamma_q": per_layer}


def _check_int8(path, tensors: dict, arch: dict, quant):
    n = len(arch["sizes"]) - 1
    quant = quant if isinstance(quant, dict) else {}
    layers = quant.get("layers")
    checks = {"quantization": bool(quant),
              "layers": isinstance(layers, list) and len(layers) == n and all(
                  isinstance(q, dict) and _is_int(q.get("out_zero_point")) and q.get("norm_bits", 7) in (7, 15)
                  for q in layers),
              # the label pixels' values: an MLP's input carries its label; a layered (cwc) model's does not
              **{k: _is_int(quant.get(k)) for k in ("goodness_frac_bits", "label_q", "neutral_label_q")
                 if k == "goodness_frac_bits" or "objective" not in arch}}
    for key, ok in checks.items():
        if not ok:
            raise EdgeFFError(f"{path}: the int8 model header is incomplete ('{key}' is missing or malformed); the "
                              "file is corrupt or was not written by `edgeff quantize`")
    for name, (dtype, shape) in int8_tensor_specs(arch, quant).items():
        if name not in tensors:
            raise EdgeFFError(f"{path}: tensor '{name}' is missing (architecture {arch['sizes']})")
        t = tensors[name]
        if t.dtype != np.dtype(dtype) or tuple(t.shape) != shape:
            raise EdgeFFError(f"{path}: tensor '{name}' is {t.dtype}{list(t.shape)}, expected "
                              f"{np.dtype(dtype)}{list(shape)} (architecture {arch['sizes']})")


def check_model(path, tensors: dict, header: dict):
    """Refuse a model file whose architecture is missing or malformed, or whose tensors do not match it.
    The header's architecture becomes the checked one in memory (format 1 migrated, derived keys added)."""
    arch = header["architecture"] = _architecture(path, header.get("architecture"), header["version"])
    if arch["kind"] == ModelKind.FLOAT:
        check_ff_tensors(path, tensors, arch)
    else:
        _check_int8(path, tensors, arch, header.get("quantization"))
