"""The board image: an int8 model (and its training state) as one flat binary a board can take over the link.

A board cannot parse safetensors and JSON with fixed buffers, so the link carries this format instead
(PROTOCOL.md, "Board image"). It holds exactly the integer content of an int8 model file: a fixed header,
then every array in a fixed order, each starting on an 8-byte boundary so firmware can point into it.

    header   "EFFB", format u8, n_layers u8, n_classes u8, flags u8, goodness_frac_bits u8, label_q i8,
             neutral_label_q i8, eval-layer mask u8, head-layer mask u8, 3 pad, step u32,
             sizes u16 x (n_layers + 1), pad to 4, then each layer's record
    arrays   each layer's arrays; then the head: weight int8, bias, multiplier, shift (int32)
    flags    bit 0 master weights present; bits 1-2 collaboration (0 none, 1 fixed, 2 adaptive);
             bit 3 single rounding (TFLite's default double rounding when clear)

A layer's record and arrays are its kind's board-image facet's (edgeff/ops/<kind>/board_image.py, through
edgeff.op_registry). The format has no kind field: every layer of an image of this format is a dense layer.

pack_image/unpack_image convert between this and (tensors, header) in model-file form, so a board image
round-trips into `IntFFModel.from_tensors` with every check of a model file.
"""
import struct

import numpy as np

from edgeff.byte_layout import ByteLayout
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind, stored_architecture
from edgeff.op_registry import facet, layer_facet, spec_class
from firmware_bridge.messages import MODEL_FORMAT

MAGIC = b"EFFB"
MAX_LAYERS = 8
FIXED = ByteLayout("<4sBBBBBbbBBxxxI", ("magic", "format", "n_layers", "n_classes", "flags", "goodness_frac_bits",
                                      "label_q", "neutral_label_q", "eval_mask", "head_mask", "step"))
LAYER_KIND = "dense"             # the image has no kind field: every layer of this format is of this kind
ALIGN = 8
FLAG_MASTERS = 1                 # flags bit 0: master weights present
COLLAB_MODES = ("none", "fixed", "adaptive")


def _mask(layers) -> int:
    return sum(1 << (l - 1) for l in layers)


def _unmask(mask: int) -> list:
    return [l + 1 for l in range(MAX_LAYERS) if mask >> l & 1]


def _pad(n: int) -> int:
    return -n % ALIGN


def layer_encoding():
    """The board-image facet of the image's layers (LAYER_KIND's)."""
    return facet(LAYER_KIND, "board_image")


def _prefix(i: int) -> str:
    return f"layers.{i}."


def _array_specs(layers, n_classes, head_layers, quant_layers, masters: bool) -> list:
    """(tensor name, dtype, shape) of every array, in image order."""
    specs = []
    for i, spec in enumerate(layers):
        specs += layer_facet(spec, "board_image").array_specs(spec, _prefix(i), quant_layers[i], masters)
    sizes = [layers[0].n_inputs, *(spec.n_outputs for spec in layers)]
    d_head = sum(sizes[l] for l in head_layers)
    specs += [("head.weight", np.int8, (n_classes, d_head)), ("head.bias", np.int32, (n_classes,)),
              ("head.multiplier", np.int32, (n_classes,)), ("head.shift", np.int32, (n_classes,))]
    return specs


def _header_size(n_layers: int, record_bytes: int) -> int:
    """Bytes up to the first array, for n_layers layers whose records take record_bytes in all."""
    n = FIXED.size + 2 * (n_layers + 1)
    n += -n % 4 + record_bytes
    return n + _pad(n)


def _layers(arch: dict) -> tuple:
    """The layer specs of an architecture (one with only sizes is an FF MLP of dense layers)."""
    layers = ModelDescription.from_header(stored_architecture(arch)["layers"]).layers
    for i, spec in enumerate(layers):
        if spec.kind != LAYER_KIND:
            raise EdgeFFError(f"layer {i} is a {spec.kind} layer; a board image of format {MODEL_FORMAT} holds "
                              f"{LAYER_KIND} layers only")
    return layers


def pack_image(tensors: dict, header: dict) -> bytes:
    """The board image of an int8 model (tensors and header as in its model file; master weights included
    when the tensors have them)."""
    arch, quant = header["architecture"], header["quantization"]
    sizes, n = arch["sizes"], len(arch["sizes"]) - 1
    if not 1 <= n <= MAX_LAYERS or any(not 0 < s < 65536 for s in sizes) or arch["n_classes"] > 255:
        raise EdgeFFError(f"a board image holds 1 to {MAX_LAYERS} layers of 1 to 65535 units and up to 255 "
                          f"classes; this model has sizes {sizes} and {arch['n_classes']} classes")
    if sorted(arch["head_layers"]) != list(arch["head_layers"]):
        raise EdgeFFError(f"head layers {arch['head_layers']} must be in ascending order for a board image")
    layers = _layers(arch)
    masters = "layers.0.weight_master" in tensors
    flags = FLAG_MASTERS * masters | COLLAB_MODES.index(arch.get("collab_mode", "none")) << 1 \
        | int(quant.get("rounding", "double") == "single") << 3
    step = int((header.get("int_training") or {}).get("step", 0))
    out = bytearray(FIXED.pack(MAGIC, MODEL_FORMAT, n, arch["n_classes"], flags, quant["goodness_frac_bits"],
                               quant["label_q"], quant["neutral_label_q"], _mask(arch["eval_layers"]),
                               _mask(arch["head_layers"]), step))
    out += struct.pack(f"<{n + 1}H", *sizes)
    out += bytes(-len(out) % 4)
    gamma = tensors["gamma_q"]
    for i, spec in enumerate(layers):
        out += layer_facet(spec, "board_image").pack_record(_prefix(i), quant["layers"][i], tensors, gamma[i])
    out += bytes(_pad(len(out)))
    for name, dtype, shape in _array_specs(layers, arch["n_classes"], arch["head_layers"], quant["layers"], masters):
        data = np.ascontiguousarray(tensors[name], dtype=np.dtype(dtype).newbyteorder("<"))
        if data.shape != shape:
            raise EdgeFFError(f"tensor '{name}' has shape {list(data.shape)}, expected {list(shape)}")
        out += data.tobytes()
        out += bytes(_pad(len(out)))
    return bytes(out)


def unpack_image(blob: bytes) -> tuple[dict, dict]:
    """(tensors, header) of a board image; EdgeFFError naming the problem if it is not a valid one."""
    if len(blob) < FIXED.size or blob[:4] != MAGIC:
        raise EdgeFFError("not a board image (no 'EFFB' magic)")
    (_, fmt, n, n_classes, flags, frac_bits, label_q, neutral_q, eval_mask, head_mask,
     step) = FIXED.unpack_from(blob)
    if fmt != MODEL_FORMAT:
        raise EdgeFFError(f"board image format {fmt}; this side reads format {MODEL_FORMAT}")
    if not 1 <= n <= MAX_LAYERS or n_classes < 2 or (flags >> 1 & 3) > 2 or flags >> 4:
        raise EdgeFFError(f"board image header is invalid ({n} layers, {n_classes} classes, flags {flags:#x})")
    encoding = layer_encoding()
    if len(blob) < _header_size(n, n * encoding.RECORD.size):
        raise EdgeFFError("board image is truncated inside its header")
    sizes = list(struct.unpack_from(f"<{n + 1}H", blob, FIXED.size))
    pos = FIXED.size + 2 * (n + 1)
    pos += -pos % 4
    layers, tensors, gamma = [], {}, []
    for i in range(n):
        quant_layer, layer_tensors, layer_gamma = encoding.unpack_record(blob, pos + i * encoding.RECORD.size,
                                                                         _prefix(i))
        layers.append(quant_layer)
        tensors.update(layer_tensors)
        gamma.append(layer_gamma)
    tensors["gamma_q"] = np.array(gamma, np.int32)
    eval_layers, head_layers = _unmask(eval_mask), _unmask(head_mask)
    if (any(s == 0 for s in sizes) or not head_layers or max(eval_layers + head_layers, default=0) > n
            or n_classes > sizes[0]):
        raise EdgeFFError(f"board image header is invalid (sizes {sizes}, {n_classes} classes, eval layers "
                          f"{eval_layers}, head layers {head_layers})")
    for layer in layers:
        encoding.check_record(layer)
    pos = _header_size(n, n * encoding.RECORD.size)
    image_layers = [spec_class(LAYER_KIND)(d_in, d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:], strict=True)]
    specs = _array_specs(image_layers, n_classes, head_layers, layers, bool(flags & FLAG_MASTERS))
    for name, dtype, shape in specs:
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if pos + size > len(blob):
            raise EdgeFFError(f"board image is truncated at tensor '{name}'")
        tensors[name] = np.frombuffer(blob, np.dtype(dtype).newbyteorder("<"), int(np.prod(shape)),
                                      pos).reshape(shape).astype(dtype)
        pos += size + _pad(size)
    if pos != len(blob):
        raise EdgeFFError(f"board image has {len(blob) - pos} bytes after its last tensor")
    header = {"architecture": {"kind": ModelKind.INT8, "sizes": sizes, "n_classes": n_classes,
                               "collab_mode": COLLAB_MODES[flags >> 1 & 3], "eval_layers": eval_layers,
                               "head_layers": head_layers},
              "quantization": {"label_q": label_q, "neutral_label_q": neutral_q, "goodness_frac_bits": frac_bits,
                               "rounding": "single" if flags & 8 else "double", "layers": layers},
              "int_training": {"step": step}}
    return tensors, header


def merge_header(base: dict, image_header: dict) -> dict:
    """A model-file header for a pulled image: `base` (the file the board was loaded from, for its data
    split, float scales and history) with the image's integer fields and training step laid over it."""
    out = {**base, "architecture": {**(base.get("architecture") or {}), **image_header["architecture"]}}
    quant = {**(base.get("quantization") or {}), **image_header["quantization"]}
    base_layers = (base.get("quantization") or {}).get("layers") or []
    quant["layers"] = [{**(base_layers[i] if i < len(base_layers) else {}), **layer}
                       for i, layer in enumerate(image_header["quantization"]["layers"])]
    out["quantization"] = quant
    out["int_training"] = {**(base.get("int_training") or {}), "step": image_header["int_training"]["step"]}
    return out
