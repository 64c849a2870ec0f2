"""`edgeff export`: pick the exporter for a model file and a format, write the result atomically.

The board image (`--format board-header`) is the board link's export: firmware_bridge/board_export.py."""
from pathlib import Path

from edgeff.atomic_write import atomic_write_bytes
from edgeff.c_array import c_header, c_identifier
from edgeff.errors import EdgeFFError
from edgeff.export.provenance import KEY, source_record
from edgeff.model_description import ModelKind
from edgeff.model_file import is_layered, load_model

FORMATS = ("onnx", "tflite", "c-header", "nir")


def _with_source(proto_bytes: bytes, source: str) -> bytes:
    import onnx

    proto = onnx.load_from_string(proto_bytes)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, KEY: source})
    return proto.SerializeToString()


def _qcdq_bytes(model_path: Path) -> bytes:
    """Brevitas writes the file itself: into a temporary folder, read back (the caller writes atomically)."""
    import tempfile

    import torch

    from edgeff.train.model_io import load_network
    from edgeff.train.qat import export_qcdq

    net, header = load_network(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_qcdq(net, path, torch.rand(2, header["architecture"]["sizes"][0]))
        return path.read_bytes()


def _nir_bytes(model_path: Path, calibration: tuple) -> tuple[bytes, str]:
    from edgeff.export import nir_graph

    images, percentile = calibration
    graph = nir_graph.convert(nir_graph.FloatModel(model_path), images, percentile)
    return nir_graph.to_bytes(graph), (f"NIR graph of rate-coded IF neurons ({len(graph.nodes)} nodes, thresholds at "
                                       f"the {percentile:g} percentile of {len(images)} calibration images)")


def _exported(model_path: Path, fmt: str, kind: str, layered: bool, layer_op: str | None,
              calibration) -> tuple[bytes, str]:
    """(file bytes, what they are) of one export; c-header wraps the TFLite model. layered: a conv (layered
    CwC) model. ONNX, TFLite and NIR files record their source model (provenance.py)."""
    if fmt == "nir":
        return _nir_bytes(model_path, calibration)
    source = source_record(model_path, kind)
    if fmt == "onnx" and kind == ModelKind.FLOAT:
        if load_model(model_path)[1]["architecture"].get("qat"):
            return (_with_source(_qcdq_bytes(model_path), source),
                    "Brevitas QCDQ ONNX of the quantization-aware model (goodness, logits)")
        from edgeff.export import onnx_float

        return (_with_source(onnx_float.build(model_path).SerializeToString(), source),
                f"float ONNX{' of the layered model' if layered else ''} (goodness, scores, logits)")
    if kind != ModelKind.INT8:
        raise EdgeFFError(f"{model_path}: {fmt} export takes an int8 model; make one with "
                          f"`edgeff quantize {model_path} --out MODEL_INT8`")
    if layered:
        return _layered_export(model_path, fmt, layer_op or "conv_2d", source)
    from edgeff.runtime.int_model import IntFFModel

    model = IntFFModel.from_file(model_path)
    if fmt == "onnx":
        from edgeff.export import onnx_int8

        return _with_source(onnx_int8.build(model, str(model_path)).SerializeToString(), source), \
            "int8 ONNX (integer ops)"
    from edgeff.export import tflite_int8

    layer_op = layer_op or "fully_connected"
    return (tflite_int8.build(model, str(model_path), layer_op, {KEY: source}),
            f"int8 TFLite ({layer_op.upper()} layers)")


def _layered_export(model_path: Path, fmt: str, layer_op: str, source: str) -> tuple[bytes, str]:
    from edgeff.runtime.int_layered import IntLayeredModel

    model = IntLayeredModel.from_file(model_path)
    if fmt == "onnx":
        from edgeff.export import onnx_layered

        return (_with_source(onnx_layered.build(model, str(model_path)).SerializeToString(), source),
                "int8 ONNX of the layered model (integer ops)")
    from edgeff.export import tflite_layered

    return (tflite_layered.build(model, str(model_path), layer_op, {KEY: source}),
            f"int8 TFLite of the layered model (dense layers and head as {layer_op.upper()})")


def _decision(model_path: Path, layered: bool) -> tuple:
    """(goodness multipliers, shifts, eval layers, n_classes) of the int8 model, for a C header's decision."""
    if layered:
        from edgeff.runtime.int_layered import IntLayeredModel

        model = IntLayeredModel.from_file(model_path)
        return model.class_multiplier, model.class_shift, model.eval_layers, model.n_classes
    from edgeff.runtime.int_model import IntFFModel

    model = IntFFModel.from_file(model_path)
    return ([layer.goodness_multiplier for layer in model.layers], [layer.goodness_shift for layer in model.layers],
            model.eval_layers, model.n_classes)


def export_model(model_path, fmt: str, out_path, layer_op: str | None = None, calibration=None) -> dict:
    """Write model_path as `fmt` to out_path; returns what was written (for the CLI's report). layer_op: the
    TFLite op of dense layers and the head (default: fully_connected for an MLP, conv_2d for a layered model,
    tflite_layered.py says why). The NIR export takes calibration = (uint8 training images, percentile) for its
    thresholds."""
    if fmt not in FORMATS:
        raise EdgeFFError(f"format {fmt!r} must be one of {', '.join(FORMATS)}")
    model_path, out_path = Path(model_path), Path(out_path)
    arch = load_model(model_path)[1].get("architecture") or {}
    kind, layered = arch.get("kind"), is_layered(arch)
    if kind not in tuple(ModelKind):
        raise EdgeFFError(f"{model_path}: not an EdgeFF model file (architecture kind {kind!r})")
    data, what = _exported(model_path, fmt, kind, layered, layer_op, calibration)
    written = {"model": str(model_path), "out": str(out_path), "format": fmt}
    tflm_code = ""
    if fmt in ("tflite", "c-header"):   # what a board running TFLM needs: its ops and the arena it measured
        from edgeff.export import tflm

        written["tflm_ops"] = tflm.op_names_and_outputs(data)[0]
        written["tflm_arena_bytes"] = tflm.arena_bytes(data)
        tflm_code = tflm.resolver_snippet(data, c_identifier(out_path.stem), written["tflm_arena_bytes"])
    if fmt == "c-header":
        name = out_path.stem
        constants = tflm.decision_constants(*_decision(model_path, layered), c_identifier(name))
        data = c_header(data, name, f"{model_path.name} as {what}", fmt, tflm_code, constants).encode()
        what = f"C array of the {what}"
    atomic_write_bytes(out_path, data)
    return {**written, "what": what, "bytes": len(data)}
