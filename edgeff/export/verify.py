"""Run an exported model in its own runtime on images and compare it with EdgeFF: the parity table.

ONNX files run in onnxruntime; .tflite files in LiteRT under three op resolvers (its reference kernels,
its optimized integer kernels without delegates, and its default with XNNPACK). The reference is
EdgeFF's own computation of the same model: torch for a float model, the integer runtime for an int8 one.
Each row: the largest difference and the number of differing values of every output, how often the
predictions (multi-pass and one-pass) agree, and both accuracies.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.runtime.int_model import INPUT_ZERO_POINT, IntFFModel

BATCH = 500
FLOAT_RTOL = 1e-5   # a float output "differs" when |a - b| > FLOAT_RTOL * max|b| (the scale of that output)


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


# LiteRT's op resolvers, with what each computes (see tflite_int8.py)
RESOLVERS = {
    "BUILTIN_REF": "LiteRT reference kernels",
    "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "LiteRT optimized integer kernels",
    "AUTO": "LiteRT default (XNNPACK)",
}


def _edgeff_outputs(model_path, images, header):
    """EdgeFF's goodness (n_layers, N, C), one-pass logits, and the multi-pass score function."""
    kind = (header.get("architecture") or {}).get("kind")
    if kind == "ff-mlp":
        import torch

        from edgeff.train.evaluate import images_to_input
        from edgeff.train.model_io import load_network

        net, _ = load_network(model_path)
        x0 = images_to_input(images, net.n_classes)
        with torch.no_grad():
            return "float", net.label_scores(x0).numpy(), net.head_logits(x0).numpy(), lambda g: g
    if kind == "ff-mlp-int8":
        model = IntFFModel.from_file(model_path)
        return ("int8", model.raw_label_goodness(images), model.head_logits(images),
                lambda g: model.layer_goodness(list(np.asarray(g, np.int64))))
    raise EdgeFFError(f"{model_path}: not an EdgeFF model file (architecture kind {kind!r})")


def _compare(name, out, ref, kind):
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    scale = float(np.abs(ref).max()) or 1.0
    differing = diff > FLOAT_RTOL * scale if kind == "float" else diff > 0
    return {f"{name}_max_abs_diff": float(diff.max()), f"{name}_max_rel_diff": float(diff.max() / scale),
            f"{name}_differing": int(differing.sum()), f"{name}_values": int(diff.size)}


def verify(model_path, exported_path, images: np.ndarray, labels: np.ndarray, progress=False) -> dict:
    tensors_header = load_model(model_path)[1]
    kind, ref_goodness, ref_logits, scores_of = _edgeff_outputs(model_path, images, tensors_header)
    eval_layers = np.array(tensors_header["architecture"]["eval_layers"]) - 1
    exported_path = Path(exported_path)
    if not exported_path.is_file():
        raise EdgeFFError(f"{exported_path}: no such file")
    suffix = exported_path.suffix.lower()
    if suffix == ".onnx":
        inputs = images.astype(np.float32) / 255.0 if kind == "float" else images
        runs = {"onnxruntime": run_onnx(exported_path, inputs, progress)}
        if tensors_header["architecture"].get("qat"):   # Brevitas' QCDQ: also without QDQ fusion
            runs["onnxruntime, basic optimizations (no QDQ fusion)"] = run_onnx(exported_path, inputs, progress, True)
    elif suffix == ".tflite":
        if kind != "int8":
            raise EdgeFFError(f"{exported_path}: TFLite exports are int8; verify it against the int8 model file")
        content = exported_path.read_bytes()
        inputs = (images.astype(np.int16) + INPUT_ZERO_POINT).astype(np.int8)
        runs = {label: run_tflite(content, inputs, resolver, progress) for resolver, label in RESOLVERS.items()}
    else:
        raise EdgeFFError(f"{exported_path}: unknown export format {suffix!r} (verify runs .onnx and .tflite files)")

    ref_multi = scores_of(ref_goodness)[eval_layers].sum(axis=0).argmax(axis=1)
    ref_one = ref_logits.argmax(axis=1)
    rows = []
    for runtime, out in runs.items():
        if "goodness" not in out or "logits" not in out:
            raise EdgeFFError(f"{exported_path}: outputs {sorted(out)} are not an EdgeFF export's (goodness, logits)")
        multi = scores_of(out["goodness"])[eval_layers].sum(axis=0).argmax(axis=1)
        one = out["logits"].argmax(axis=1)
        rows.append({"runtime": runtime, **_compare("goodness", out["goodness"], ref_goodness, kind),
                     **_compare("logits", out["logits"], ref_logits, kind),
                     "multi_pass_agreement": float((multi == ref_multi).mean()),
                     "one_pass_agreement": float((one == ref_one).mean()),
                     "multi_pass_accuracy": float((multi == labels).mean()),
                     "one_pass_accuracy": float((one == labels).mean())})
    return {"model": str(model_path), "export": str(exported_path), "kind": kind, "images": len(images),
            "edgeff_multi_pass_accuracy": float((ref_multi == labels).mean()),
            "edgeff_one_pass_accuracy": float((ref_one == labels).mean()), "rows": rows}


def parity_table(result: dict) -> str:
    """The verify result as a Markdown table."""
    rel = result["kind"] == "float"
    diff = "max relative diff" if rel else "max abs diff"
    lines = [f"{result['export']} against EdgeFF ({result['kind']}) on {result['images']} images; EdgeFF accuracy "
             f"multi-pass {100 * result['edgeff_multi_pass_accuracy']:.2f} %, one-pass "
             f"{100 * result['edgeff_one_pass_accuracy']:.2f} %", "",
             f"| runtime | goodness {diff} | goodness values differing | logits {diff} | logits values differing | "
             "predictions agreeing (multi / one) | accuracy (multi / one) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        key = "max_rel_diff" if rel else "max_abs_diff"
        lines.append(f"| {r['runtime']} | {r['goodness_' + key]:.3g} | {r['goodness_differing']:,} of "
                     f"{r['goodness_values']:,} | {r['logits_' + key]:.3g} | {r['logits_differing']:,} of "
                     f"{r['logits_values']:,} | {100 * r['multi_pass_agreement']:.2f} % / "
                     f"{100 * r['one_pass_agreement']:.2f} % | {100 * r['multi_pass_accuracy']:.2f} % / "
                     f"{100 * r['one_pass_accuracy']:.2f} % |")
    return "\n".join(lines)
