"""Run an exported model in its own runtime on images and compare it with EdgeFF: the parity table and a
verdict.

ONNX files run in onnxruntime; .tflite files (and C headers holding one) in TensorFlow Lite Micro's own
interpreter and in LiteRT under three op resolvers (its reference kernels, its optimized integer kernels
without delegates, and its default with XNNPACK). The reference is EdgeFF's own computation of the same
model: torch for a float model, the integer runtime for an int8 one. Each row: the largest difference and the
number of differing values of every output, how often the predictions (multi-pass and one-pass) agree, both
accuracies, and whether the row meets its runtime's policy (POLICIES): bit-exact where the runtime computes
EdgeFF's integer kernels, a stated tolerance where it is known to round differently. The export passes when
every row does.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgeff.c_array import tflite_bytes_from_c_header
from edgeff.errors import EdgeFFError
from edgeff.export.provenance import KEY, check_source
from edgeff.export.tflm import run_tflm
from edgeff.model_description import ModelDescription, ModelKind
from edgeff.model_file import is_layered, load_model
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import INPUT_ZERO_POINT, IntFFModel

BATCH = 500
FLOAT_RTOL = 1e-5   # a float output "differs" when |a - b| > FLOAT_RTOL * max|b| (the scale of that output)
# Runtimes that requantize in float32 (or fuse QDQ pairs) move an activation one step here and there, and the
# goodness and logits sums that hold it move with it (by up to 1.1e4 and 2 on FF 784-500-500, docs/exports.md):
# no bound on those values says more than the predictions do, which must agree on at least AGREEMENT of the
# images (99.57 % multi-pass and 99.94 % one-pass on the board network, the lowest measured there).
AGREEMENT = 0.99


POLICIES = {   # name -> (what it requires, test on a row)
    "bit-exact": ("every value equal", lambda r: r["goodness_differing"] == 0 and r["logits_differing"] == 0),
    "float": (f"relative differences at most {FLOAT_RTOL:g}",
              lambda r: r["goodness_max_rel_diff"] <= FLOAT_RTOL and r["logits_max_rel_diff"] <= FLOAT_RTOL),
    "ties": ("goodness equal, logits at most 1 apart (negative ties round up)",
             lambda r: r["goodness_differing"] == 0 and r["logits_max_abs_diff"] <= 1),
    "rounds in float": (f"predictions agree on at least {AGREEMENT:.0%} of images",
                        lambda r: min(r["multi_pass_agreement"], r["one_pass_agreement"]) >= AGREEMENT),
}


def _batched(run, inputs: np.ndarray, progress: bool, desc: str) -> dict:
    parts = [run(inputs[s:s + BATCH]) for s in tqdm(range(0, len(inputs), BATCH), desc=desc, unit="batch",
                                                     disable=not progress, leave=False)]
    return {k: np.concatenate([p[k] for p in parts], axis=-2) for k in parts[0]}


def run_onnx(path, inputs: np.ndarray, progress=False, basic_optimizations=False) -> dict:
    """Outputs of an ONNX file in onnxruntime. basic_optimizations keeps onnxruntime from fusing QDQ pairs into
    its integer kernels (its default), which changes the values of a QCDQ model."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)   # errors only: its warnings about exporter details are noise here
    options = ort.SessionOptions()
    if basic_optimizations:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for every bad file
        raise EdgeFFError(f"{path}: onnxruntime cannot load it ({exc}); export it again with `edgeff export`") from None
    names = [o.name for o in session.get_outputs()]
    return _batched(lambda x: dict(zip(names, session.run(None, {"images": x}), strict=True)), inputs, progress,
                    "onnxruntime")


def tflite_interpreter(content: bytes, resolver: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(model_content=content, experimental_op_resolver_type=OpResolverType[resolver])


def run_tflite(content: bytes, inputs: np.ndarray, resolver: str, progress=False) -> dict:
    try:
        interpreter = tflite_interpreter(content, resolver)
    except ValueError as exc:
        raise EdgeFFError(f"LiteRT cannot load the model ({exc}); export it again with `edgeff export`") from None
    index = interpreter.get_input_details()[0]["index"]

    def run(x):
        interpreter.resize_tensor_input(index, list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return {o["name"]: interpreter.get_tensor(o["index"]).copy() for o in interpreter.get_output_details()}

    return _batched(run, inputs, progress, f"LiteRT {resolver}")


# LiteRT's op resolvers: the row's name and its policy for the (FULLY_CONNECTED, CONV_2D) forms (tflite_int8.py)
RESOLVERS = {
    "BUILTIN_REF": ("LiteRT reference kernels", ("rounds in float", "bit-exact")),
    "BUILTIN_WITHOUT_DEFAULT_DELEGATES": ("LiteRT optimized integer kernels", ("ties", "ties")),
    "AUTO": ("LiteRT default (XNNPACK)", ("rounds in float", "rounds in float")),
}
TFLM = "TensorFlow Lite Micro"


def _edgeff_outputs(model_path, images, header):
    """EdgeFF's goodness (n_layers, N, C), one-pass logits, and the multi-pass score function."""
    if header["architecture"]["kind"] == ModelKind.FLOAT:
        import torch

        from edgeff.train.model_io import load_network

        net, _ = load_network(model_path)
        x0 = net.inputs(images)   # an MLP's rows with the label pixels zeroed, a layered network's (C, H, W) images
        with torch.no_grad():
            return "float", net.label_scores(x0).numpy(), net.head_logits(x0).numpy(), lambda g: g
    if is_layered(header["architecture"]):
        layered = IntLayeredModel.from_file(model_path)
        return ("int8", layered.raw_class_goodness(images), layered.head_logits(images),
                lambda g: layered.layer_goodness(np.asarray(g, np.int64)))
    model = IntFFModel.from_file(model_path)
    return ("int8", model.raw_label_goodness(images), model.head_logits(images),
            lambda g: model.layer_goodness(list(np.asarray(g, np.int64))))


def _difference(out, ref) -> tuple:
    """|out - ref| in float64, and the reference's scale: its largest magnitude (1 where it is all zero)."""
    return np.abs(out.astype(np.float64) - ref.astype(np.float64)), float(np.abs(ref).max()) or 1.0


def max_relative_difference(out, ref) -> float:
    """The largest |out - ref| over the reference's scale: what the float policy holds to FLOAT_RTOL."""
    diff, scale = _difference(out, ref)
    return float(diff.max() / scale)


def _compare(name, out, ref, kind):
    diff, scale = _difference(out, ref)
    differing = diff > FLOAT_RTOL * scale if kind == "float" else diff > 0
    return {f"{name}_max_abs_diff": float(diff.max()), f"{name}_max_rel_diff": float(diff.max() / scale),
            f"{name}_differing": int(differing.sum()), f"{name}_values": int(diff.size)}


def _tflite_content(path: Path) -> bytes:
    content = tflite_bytes_from_c_header(path) if path.suffix.lower() == ".h" else path.read_bytes()
    if content[4:8] != b"TFL3":
        raise EdgeFFError(f"{path}: not a TFLite model (a board-header holds a board image: `edgeff board` checks "
                          "those); export one with `edgeff export MODEL --format tflite` or `--format c-header`")
    return content


def _tflite_runs(model_path, path: Path, images, header, progress) -> dict:
    from ai_edge_litert import schema_py_generated as schema

    from edgeff.export.tflm import op_names_and_outputs

    content = _tflite_content(path)
    try:
        model = schema.ModelT.InitFromPackedBuf(content, 0)
        sub = model.subgraphs[0]
        shape = [int(d) for d in sub.tensors[sub.inputs[0]].shape][1:]
        recorded = {m.name.decode(): bytes(model.buffers[m.buffer].data).decode() for m in model.metadata or []}
    except Exception:  # noqa: BLE001  the flatbuffer reader raises whatever a damaged buffer provokes
        raise EdgeFFError(f"{path}: a damaged TFLite file; export it again with `edgeff export`") from None
    _check_shape(model_path, header, path, "int8", shape, _input_shape(header))
    check_source(model_path, path, recorded.get(KEY))
    if is_layered(header["architecture"]):   # the image as the layered export takes it: int8 NHWC
        inputs = IntLayeredModel.from_file(model_path).quantize_images(images)
    else:
        inputs = (images.astype(np.int16) + INPUT_ZERO_POINT).astype(np.int8)
    # the form whose integer semantics LiteRT's reference kernels compute exactly: no FULLY_CONNECTED
    form = int("FULLY_CONNECTED" not in op_names_and_outputs(content)[0])
    runs = {TFLM: (run_tflm(content, inputs, progress), "bit-exact")}
    for resolver, (label, policies) in RESOLVERS.items():
        runs[label] = run_tflite(content, inputs, resolver, progress), policies[form]
    return runs


def _onnx_runs(model_path, path: Path, images, header, kind, progress) -> dict:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        graph_input = proto.graph.input[0].type.tensor_type
        shape = [d.dim_value for d in graph_input.shape.dim][1:]
        is_float = graph_input.elem_type == onnx.TensorProto.FLOAT
    except Exception:  # noqa: BLE001  onnx raises its own and protobuf's types for a damaged file
        raise EdgeFFError(f"{path}: a damaged ONNX file; export it again with `edgeff export`") from None
    # every ONNX export takes the raw pixels as rows
    _check_shape(model_path, header, path, "float" if is_float else "int8", shape, [header["architecture"]["sizes"][0]])
    check_source(model_path, path, {p.key: p.value for p in proto.metadata_props}.get(KEY))
    inputs = images.astype(np.float32) / 255.0 if kind == "float" else images
    # Brevitas' QCDQ (a QAT model): onnxruntime's QDQ fusion rounds its own way, and even without it a value on a
    # rounding boundary of the fake quantization can land a step away (16 of 200,000 on the board network)
    qat = header["architecture"].get("qat")
    policy = "rounds in float" if qat else "float" if kind == "float" else "bit-exact"
    runs = {"onnxruntime": (run_onnx(path, inputs, progress), policy)}
    if qat:
        runs["onnxruntime, basic optimizations (no QDQ fusion)"] = (run_onnx(path, inputs, progress, True), policy)
    return runs


def _input_shape(header) -> list:
    """A TFLite export's input shape without the batch: (D,) for an MLP, NHWC (H, W, C) for a layered model's
    image."""
    arch = header["architecture"]
    if is_layered(header["architecture"]):
        c, h, w = ModelDescription.from_header(arch["layers"]).input_shape
        return [h, w, c]
    return [arch["sizes"][0]]


def _check_shape(model_path, header, exported_path, export_kind, shape, expected):
    """Refuse an export of another kind (float vs int8) or input shape (`expected`, without the batch) than
    the model, naming both."""
    kind = "float" if header["architecture"]["kind"] == ModelKind.FLOAT else "int8"
    if export_kind != kind or shape != expected:
        raise EdgeFFError(f"{exported_path} is a {export_kind} export with inputs of shape {shape}, but {model_path} "
                          f"is a {kind} model with inputs of shape {expected}: verify an export against the model it "
                          "was exported from")


def verify(model_path, exported_path, images: np.ndarray, labels: np.ndarray, progress=False) -> dict:
    tensors_header = load_model(model_path)[1]
    model_kind = (tensors_header.get("architecture") or {}).get("kind")
    if model_kind not in tuple(ModelKind):
        raise EdgeFFError(f"{model_path}: not an EdgeFF model file (architecture kind {model_kind!r})")
    exported_path = Path(exported_path)
    if not exported_path.is_file():
        raise EdgeFFError(f"{exported_path}: no such file")
    suffix = exported_path.suffix.lower()
    if suffix not in (".onnx", ".tflite", ".h"):
        raise EdgeFFError(f"{exported_path}: unknown export format {suffix!r} (verify runs .onnx and .tflite files "
                          "and C headers of a .tflite)")
    if suffix == ".onnx":
        kind = "float" if model_kind == ModelKind.FLOAT else "int8"
        runs = _onnx_runs(model_path, exported_path, images, tensors_header, kind, progress)
    else:
        runs = _tflite_runs(model_path, exported_path, images, tensors_header, progress)
    kind, ref_goodness, ref_logits, scores_of = _edgeff_outputs(model_path, images, tensors_header)
    eval_layers = np.array(tensors_header["architecture"]["eval_layers"]) - 1

    ref_multi = scores_of(ref_goodness)[eval_layers].sum(axis=0).argmax(axis=1)
    ref_one = ref_logits.argmax(axis=1)
    rows = []
    for runtime, (out, policy) in runs.items():
        if "goodness" not in out or "logits" not in out:
            raise EdgeFFError(f"{exported_path}: outputs {sorted(out)} are not an EdgeFF export's (goodness, logits)")
        multi = scores_of(out["goodness"])[eval_layers].sum(axis=0).argmax(axis=1)
        one = out["logits"].argmax(axis=1)
        row = {"runtime": runtime, **_compare("goodness", out["goodness"], ref_goodness, kind),
               **_compare("logits", out["logits"], ref_logits, kind),
               "multi_pass_agreement": float((multi == ref_multi).mean()),
               "one_pass_agreement": float((one == ref_one).mean()),
               "multi_pass_accuracy": float((multi == labels).mean()),
               "one_pass_accuracy": float((one == labels).mean())}
        requirement, passes = POLICIES[policy]
        rows.append({**row, "policy": f"{policy}: {requirement}", "pass": bool(passes(row))})
    failed = [r["runtime"] for r in rows if not r["pass"]]
    return {"model": str(model_path), "export": str(exported_path), "kind": kind, "images": len(images),
            "edgeff_multi_pass_accuracy": float((ref_multi == labels).mean()),
            "edgeff_one_pass_accuracy": float((ref_one == labels).mean()), "rows": rows,
            "verdict": "fail" if failed else "pass", "failed": failed}


def verdict_line(result: dict) -> str:
    if result["verdict"] == "pass":
        return f"verify: PASS: {result['export']} computes what {result['model']} computes, in every runtime checked"
    return (f"verify: FAIL: {result['export']} differs from {result['model']} beyond its runtime's policy in "
            f"{', '.join(result['failed'])}")


def parity_table(result: dict) -> str:
    """The verify result as a Markdown table."""
    rel = result["kind"] == "float"
    diff = "max relative diff" if rel else "max abs diff"
    lines = [f"{result['export']} against EdgeFF ({result['kind']}) on {result['images']} images; EdgeFF accuracy "
             f"multi-pass {100 * result['edgeff_multi_pass_accuracy']:.2f} %, one-pass "
             f"{100 * result['edgeff_one_pass_accuracy']:.2f} %", "",
             f"| runtime | goodness {diff} | goodness values differing | logits {diff} | logits values differing | "
             "predictions agreeing (multi / one) | accuracy (multi / one) | policy | meets it |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        key = "max_rel_diff" if rel else "max_abs_diff"
        lines.append(f"| {r['runtime']} | {r['goodness_' + key]:.3g} | {r['goodness_differing']:,} of "
                     f"{r['goodness_values']:,} | {r['logits_' + key]:.3g} | {r['logits_differing']:,} of "
                     f"{r['logits_values']:,} | {100 * r['multi_pass_agreement']:.2f} % / "
                     f"{100 * r['one_pass_agreement']:.2f} % | {100 * r['multi_pass_accuracy']:.2f} % / "
                     f"{100 * r['one_pass_accuracy']:.2f} % | {r['policy']} | {'yes' if r['pass'] else 'NO'} |")
    return "\n".join(lines + ["", verdict_line(result)])
