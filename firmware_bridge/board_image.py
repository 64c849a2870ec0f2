"""The board image: an int8 model (and its training state) as one flat binary a board can take over the link.

A board cannot parse safetensors and JSON with fixed buffers, so the link carries this format instead
(PROTOCOL.md, "Board image"). It holds exactly the integer content of an int8 model file: a fixed header,
then every array in a fixed order, each starting on an 8-byte boundary so firmware can point into it. Two
formats, told apart by the byte after the magic:

Format 1, an FF MLP (dense layers only; it has no kind field):

    header   "EFFB", format u8, n_layers u8, n_classes u8, flags u8, goodness_frac_bits u8, label_q i8,
             neutral_label_q i8, eval-layer mask u8, head-layer mask u8, 3 pad, step u32,
             sizes u16 x (n_layers + 1), pad to 4, then each layer's record
    arrays   each layer's arrays; then the head: weight int8, bias, multiplier, shift (int32)
    flags    bit 0 master weights present; bits 1-2 collaboration (0 none, 1 fixed, 2 adaptive);
             bit 3 single rounding (TFLite's default double rounding when clear)

Format 2, a layered channel-wise competitive (CwC) int8 model (conv2d blocks, maxpool2d; IntLayeredModel):

    header   "EFFB", format u8, n_layers u8, n_classes u8, flags u8, goodness_frac_bits u8, eval-layer mask u8,
             head-layer mask u8, trained-layer mask u8, step u32, then each layer's record
    record   LAYERED_LAYER (kind u8: its place in edgeff.op_registry.KINDS, out_zero_point i8, 2 pad, input and
             output channels, height, width u16 each, class-goodness multiplier i32 and shift i32), then its
             kind's record (edgeff/ops/<kind>/board_image.py); pad to 8 after the last
    arrays   each layer's arrays (its kind's), then the head: weight int8, bias, multiplier, shift (int32)
    flags    bit 3 single rounding, as format 1; the other bits 0

The trained layers of a format-2 image are the blocks whose masters the tensors hold (as format 1's master
flag, and as load_layered_trainer continues from them): pack_image(trainer.tensors(), header) is a trainer's
whole state, and one source (the tensors) says which blocks train, so no `last_k` can disagree with them. They
must be the last k trainable layers, as --last-k trains. A trained block's step factors are made at pack time
from the header's float scales (edgeff.runtime.int_layered_training.step_scales).

A layer's record and arrays are its kind's board-image facet's (edgeff/ops/<kind>/board_image.py, through
edgeff.op_registry). pack_image/unpack_image convert between an image and (tensors, header) in model-file
form, so an image round-trips into `IntFFModel.from_tensors` / `IntLayeredModel.from_tensors` (with the
conv facet's `load_masters`) with every check of a model file; unpack_image refuses, naming what is wrong,
every image those refuse and every image the firmware could not run.
"""
import struct

import numpy as np

from edgeff.byte_layout import ByteLayout
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind, stored_architecture
from edgeff.model_file import is_layered
from edgeff.op_registry import KINDS, facet, layer_facet, spec_class
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import step_scales, trainable_layers
from edgeff.runtime.int_model import INPUT_SCALE, INPUT_ZERO_POINT
from firmware_bridge import layered_firmware
from firmware_bridge.messages import LAYERED_MODEL_FORMAT, MAX_LAYERS, MODEL_FORMAT

MAGIC = b"EFFB"
FIXED = ByteLayout("<4sBBBBBbbBBxxxI", ("magic", "format", "n_layers", "n_classes", "flags", "goodness_frac_bits",
                                      "label_q", "neutral_label_q", "eval_mask", "head_mask", "step"))
LAYER_KIND = "dense"             # the image has no kind field: every layer of this format is of this kind
ALIGN = 8
FLAG_MASTERS = 1                 # flags bit 0: master weights present
FLAG_SINGLE_ROUNDING = 8         # flags bit 3: single rounding
COLLAB_MODES = ("none", "fixed", "adaptive")
# format 2
LAYERED_FIXED = ByteLayout("<4sBBBBBBBBI", ("magic", "format", "n_layers", "n_classes", "flags", "goodness_frac_bits",
                                           "eval_mask", "head_mask", "trained_mask", "step"))
LAYERED_LAYER = ByteLayout("<BbxxHHHHHHii", ("kind", "out_zero_point", "in_channels", "in_height", "in_width",
                                            "out_channels", "out_height", "out_width", "class_multiplier",
                                            "class_shift"))
LAYERED_KINDS = layered_firmware.KINDS   # the kinds the board's CwC model runs (edgeff/csrc/kernels/cwc_model.c)
MAX_SIDE = 65535                         # channels, height and width are u16


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
    return specs + _head_specs(n_classes, sum(sizes[l] for l in head_layers))


def _head_specs(n_classes: int, d_head: int) -> list:
    """(tensor name, dtype, shape) of the one-pass head's arrays, the last of every image (both formats)."""
    return [("head.weight", np.int8, (n_classes, d_head)), ("head.bias", np.int32, (n_classes,)),
            ("head.multiplier", np.int32, (n_classes,)), ("head.shift", np.int32, (n_classes,))]


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
    when the tensors have them): format 2 for a layered CwC model, else format 1."""
    if is_layered(header.get("architecture")):
        return _pack_layered(tensors, header)
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


def _read_array(blob: bytes, name: str, dtype, shape, pos: int) -> tuple[np.ndarray, int]:
    """(the array at pos, where the next one starts: past its padding to ALIGN), refused if the image ends first."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if pos + size > len(blob):
        raise EdgeFFError(f"board image is truncated at tensor '{name}'")
    array = np.frombuffer(blob, np.dtype(dtype).newbyteorder("<"), int(np.prod(shape)), pos).reshape(shape)
    return array.astype(dtype), pos + size + _pad(size)


def _check_end(blob: bytes, pos: int):
    if pos != len(blob):
        raise EdgeFFError(f"board image has {len(blob) - pos} bytes after its last tensor")


def unpack_image(blob: bytes) -> tuple[dict, dict]:
    """(tensors, header) of a board image; EdgeFFError naming the problem if it is not a valid one."""
    if len(blob) <= len(MAGIC) or blob[:4] != MAGIC:
        raise EdgeFFError("not a board image (no 'EFFB' magic)")
    if blob[4] == LAYERED_MODEL_FORMAT:
        return _unpack_layered(blob)
    if len(blob) < FIXED.size:
        raise EdgeFFError("board image is truncated inside its header")
    (_, fmt, n, n_classes, flags, frac_bits, label_q, neutral_q, eval_mask, head_mask,
     step) = FIXED.unpack_from(blob)
    if fmt != MODEL_FORMAT:
        raise EdgeFFError(f"board image format {fmt}; this side reads formats {MODEL_FORMAT} and "
                          f"{LAYERED_MODEL_FORMAT}")
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
        tensors[name], pos = _read_array(blob, name, dtype, shape, pos)
    _check_end(blob, pos)
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


# ---------------------------------------------------------------------- format 2: a layered CwC model

def _layered_array_specs(description: ModelDescription, trained, n_classes: int, head_layers) -> list:
    """(tensor name, dtype, shape) of every array of a format-2 image, in image order."""
    specs = []
    for i, spec in enumerate(description.layers):
        specs += layer_facet(spec, "board_image").array_specs(spec, _prefix(i), i in trained)
    return specs + _head_specs(n_classes, sum(description.sizes[l] for l in head_layers))


def _checked_trained(model: IntLayeredModel, trained: list, where: str) -> None:
    """Refuse trained layers that are not the last k trainable ones (what --last-k trains)."""
    trainable = trainable_layers(model)
    if trained and trained != trainable[-len(trained):]:
        raise EdgeFFError(f"{where}: layers {[i + 1 for i in trained]} train (hold master weights), but a board "
                          f"trains the last k trainable layers (--last-k) of {[i + 1 for i in trainable]}")


def _pack_layered(tensors: dict, header: dict) -> bytes:
    model = IntLayeredModel.from_tensors(tensors, header)
    layered_firmware.check(model)
    specs = model.description.layers
    for i, spec in enumerate(specs):
        if max(*spec.in_shape, *spec.out_shape) > MAX_SIDE:
            raise EdgeFFError(f"layer {i + 1}'s shapes {spec.in_shape} -> {spec.out_shape}: a board image holds "
                              f"up to {MAX_SIDE} channels, rows and columns")
    trained = [i for i in range(len(specs)) if _prefix(i) + "weight_master" in tensors]
    _checked_trained(model, trained, "model")
    arrays = model.tensors()
    for i in trained:
        runtime = layer_facet(specs[i], "runtime")
        arrays |= runtime.master_tensors(model.layers[i], i, *runtime.load_masters(model.layers[i], i, tensors,
                                                                                    "model"))
    scales = step_scales(model, trained)
    flags = FLAG_SINGLE_ROUNDING * (model.rounding == "single")
    step = int((header.get("int_training") or {}).get("step", 0))
    out = bytearray(LAYERED_FIXED.pack(MAGIC, LAYERED_MODEL_FORMAT, len(specs), model.n_classes, flags,
                                       model.quant["goodness_frac_bits"], _mask(model.eval_layers),
                                       _mask(model.head_layers), _mask(i + 1 for i in trained), step))
    zero_point = INPUT_ZERO_POINT
    for i, (spec, layer) in enumerate(zip(specs, model.layers, strict=True)):
        encoding = layer_facet(spec, "board_image")
        out += LAYERED_LAYER.pack(KINDS.index(spec.kind), layer.out_zero_point, *spec.in_shape, *spec.out_shape,
                                  int(model.class_multiplier[i]), int(model.class_shift[i]))
        out += encoding.pack_record(spec, layer, zero_point, scales.get(i))
        if i in scales:
            arrays[_prefix(i) + encoding.STEP_MULTIPLIERS] = encoding.step_factors(scales[i])
        zero_point = layer.out_zero_point
    out += bytes(_pad(len(out)))
    for name, dtype, _ in _layered_array_specs(model.description, trained, model.n_classes, model.head_layers):
        out += np.ascontiguousarray(arrays[name], dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        out += bytes(_pad(len(out)))
    _unpack_layered(bytes(out))   # what pack writes, unpack takes: the record's checks (step factors) are one code
    return bytes(out)


def _layered_records(blob: bytes, n: int) -> tuple[list, list, list, int]:
    """(specs, common fields, kind fields) of a format-2 image's n layer records, and where the arrays start."""
    pos, specs, common, fields = LAYERED_FIXED.size, [], [], []
    for i in range(n):
        where = f"board image layer {i + 1}"
        if pos + LAYERED_LAYER.size > len(blob):
            raise EdgeFFError("board image is truncated inside its header")
        record = dict(zip(LAYERED_LAYER.fields, LAYERED_LAYER.unpack_from(blob, pos), strict=True))
        kind = KINDS[record["kind"]] if record["kind"] < len(KINDS) else None
        if kind not in LAYERED_KINDS:
            raise EdgeFFError(f"{where} has kind {record['kind']}; a board image of format {LAYERED_MODEL_FORMAT} "
                              "holds " + " and ".join(f"{k} ({KINDS.index(k)})" for k in LAYERED_KINDS) + " layers")
        encoding = facet(kind, "board_image")
        pos += LAYERED_LAYER.size
        if pos + encoding.RECORD.size > len(blob):
            raise EdgeFFError("board image is truncated inside its header")
        in_shape = (record["in_channels"], record["in_height"], record["in_width"])
        out_shape = (record["out_channels"], record["out_height"], record["out_width"])
        try:
            spec, kind_fields = encoding.unpack_record(blob, pos, in_shape, record["out_channels"])
        except EdgeFFError as exc:
            raise EdgeFFError(f"{where}: {exc}") from None
        if spec.out_shape != out_shape:
            raise EdgeFFError(f"{where}: a {kind} layer of input {list(in_shape)} gives {list(spec.out_shape)}, but "
                              f"its record says {list(out_shape)}")
        pos += encoding.RECORD.size
        specs.append(spec)
        common.append(record)
        fields.append(kind_fields)
    return specs, common, fields, pos + _pad(pos)


def _parse_layered(blob: bytes) -> tuple:
    """(header fields, description, common record fields, kind record fields, [(array name, dtype, shape,
    offset)]) of a format-2 image, its header and records checked; the arrays not read yet."""
    if len(blob) < LAYERED_FIXED.size:
        raise EdgeFFError("board image is truncated inside its header")
    fixed = dict(zip(LAYERED_FIXED.fields, LAYERED_FIXED.unpack_from(blob), strict=True))
    n, masks = fixed["n_layers"], fixed["eval_mask"] | fixed["head_mask"] | fixed["trained_mask"]
    if not 1 <= n <= MAX_LAYERS or fixed["n_classes"] < 2 or fixed["flags"] & ~FLAG_SINGLE_ROUNDING or masks >> n:
        raise EdgeFFError(f"board image header is invalid ({n} layers, {fixed['n_classes']} classes, flags "
                          f"{fixed['flags']:#x}, eval mask {fixed['eval_mask']:#x}, head mask {fixed['head_mask']:#x}, "
                          f"trained mask {fixed['trained_mask']:#x})")
    specs, common, fields, pos = _layered_records(blob, n)
    if pos > len(blob):
        raise EdgeFFError("board image is truncated inside its header")
    try:
        description = ModelDescription(tuple(specs))
    except EdgeFFError as exc:   # the shapes do not chain
        raise EdgeFFError(f"board image: the layers' shapes do not chain ({exc})") from None
    arrays = []
    for name, dtype, shape in _layered_array_specs(description, _trained(fixed), fixed["n_classes"],
                                                   _unmask(fixed["head_mask"])):
        arrays.append((name, dtype, shape, pos))
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pos += size + _pad(size)
    return fixed, description, common, fields, arrays


def _trained(fixed: dict) -> list:
    return [l - 1 for l in _unmask(fixed["trained_mask"])]


def array_offsets(blob: bytes) -> dict:
    """{array name: (offset, dtype, shape)} of a format-2 image (its header checked), as the firmware points
    into it; a trained block's step multipliers are "layers.<i>.step_multipliers"."""
    return {name: (at, dtype, shape) for name, dtype, shape, at in _parse_layered(blob)[4]}


def layered_state(blob: bytes) -> tuple:
    """What a board trains of a format-2 image, checked as unpack_image checks it: (the model, with placeholder
    float scales it never reads; {trained layer: (filter master, bias master)}; {trained layer: its step factors,
    an UpdateScales}; the step). A board has no float scales to make the step factors from: it takes the image's."""
    _, header, model, masters, steps = _decode_layered(blob)
    scales = {i: layer_facet(model.description.layers[i], "board_image").step_scales(model.layers[i], *steps[i])
              for i in steps}
    return model, masters, scales, header["int_training"]["step"]


def trained_in_place(blob: bytes, tensors: dict, step: int) -> bytes:
    """The format-2 image `blob` with the arrays of `tensors` (by their model-file names) written over its own and
    its step set: what a board that trains the image in place holds (PROTOCOL.md, "Format 2 over the link")."""
    out = bytearray(blob)
    for name, (at, dtype, shape) in array_offsets(blob).items():
        if name in tensors:
            data = np.ascontiguousarray(tensors[name], dtype=np.dtype(dtype).newbyteorder("<"))
            if data.shape != shape:
                raise EdgeFFError(f"tensor '{name}' has shape {list(data.shape)}, expected {list(shape)}")
            out[at:at + data.nbytes] = data.tobytes()
    struct.pack_into("<I", out, LAYERED_FIXED.offsets["step"], step)
    return bytes(out)


def _unpack_layered(blob: bytes) -> tuple[dict, dict]:
    tensors, header, _, _, _ = _decode_layered(blob)
    return tensors, header


def _decode_layered(blob: bytes) -> tuple:
    """(model-file tensors, integer header, the model with placeholder scales, {trained layer: its masters},
    {trained layer: (its kind record's fields, its step multipliers)}) of a format-2 image, every check made."""
    fixed, description, common, fields, arrays = _parse_layered(blob)
    tensors = {}
    for name, dtype, shape, pos in arrays:   # the head's arrays always come last
        tensors[name], pos = _read_array(blob, name, dtype, shape, pos)
    _check_end(blob, pos)
    specs, trained = description.layers, _trained(fixed)
    # a trained block's step factors are the image's, not a model-file tensor (a layer of a kind that has none is
    # refused as trained by _check_layered)
    steps = {i: _prefix(i) + getattr(layer_facet(specs[i], "board_image"), "STEP_MULTIPLIERS", "") for i in trained}
    multipliers = {i: tensors.pop(name) for i, name in steps.items() if name in tensors}
    tensors["class_goodness_multiplier"] = np.array([r["class_multiplier"] for r in common], np.int32)
    tensors["class_goodness_shift"] = np.array([r["class_shift"] for r in common], np.int32)
    zero_points = [INPUT_ZERO_POINT] + [r["out_zero_point"] for r in common]
    header = {"architecture": {"kind": ModelKind.INT8, "objective": "cwc", "layers": description.to_header(),
                               "sizes": description.sizes, "n_classes": fixed["n_classes"],
                               "eval_layers": _unmask(fixed["eval_mask"]), "head_layers": _unmask(fixed["head_mask"])},
              "quantization": {"goodness_frac_bits": fixed["goodness_frac_bits"],
                               "rounding": "single" if fixed["flags"] & FLAG_SINGLE_ROUNDING else "double",
                               "layers": [{"in_zero_point": a, "out_zero_point": b}
                                          for a, b in zip(zero_points[:-1], zero_points[1:], strict=True)]},
              "int_training": {"step": fixed["step"]}}
    model, masters = _check_layered(tensors, header, trained, fields, multipliers)
    return tensors, header, model, masters, {i: (fields[i], multipliers[i]) for i in multipliers}


def _check_layered(tensors: dict, header: dict, trained: list, fields: list, multipliers: dict) -> tuple:
    """Every check of the model loader, the trainer's masters and the firmware on a decoded format-2 image; (the
    model, {trained layer: its masters}) it checked. The image holds no float scales; the loader's chain of (zero
    point, scale) is given one placeholder scale, so every integer check runs and only the scales (which
    merge_header takes from the base file) are not checked."""
    quant = header["quantization"]
    placeholder = {**header, "quantization": {**quant, "layers": [
        {**entry, "in_scale": INPUT_SCALE, "out_scale": INPUT_SCALE} for entry in quant["layers"]]}}
    where = "board image"
    model = IntLayeredModel.from_tensors(tensors, placeholder, where=where)
    try:
        layered_firmware.check(model)
    except EdgeFFError as exc:
        raise EdgeFFError(f"{where}: {exc}") from None
    _checked_trained(model, trained, where)
    specs, zero_point, masters = model.description.layers, INPUT_ZERO_POINT, {}
    for i, (spec, layer) in enumerate(zip(specs, model.layers, strict=True)):
        if i in trained:
            masters[i] = layer_facet(spec, "runtime").load_masters(layer, i, tensors, where)
        layer_facet(spec, "board_image").check_record(i, layer, zero_point, fields[i], multipliers.get(i))
        zero_point = layer.out_zero_point
    return model, masters
