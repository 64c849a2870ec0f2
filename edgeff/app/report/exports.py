"""The pipeline's export stage: write the model as ONNX (float and int8), TFLite int8 and a C header, and
verify each exported file in its own runtimes on the test set (edgeff.export.verify): onnxruntime for ONNX,
TensorFlow Lite Micro and LiteRT for the TFLite file and the header's bytes."""
from pathlib import Path

from edgeff.export.verify import parity_table, verify
from edgeff.export.write import export_model


def run_exports(out_dir: Path, float_path, int8_path, test, quiet=False) -> dict:
    """Exports into out_dir and their parity results; int8_path must use int8 normalization (TFLite's)."""
    files = {"float ONNX": (float_path, "onnx", out_dir / "model.onnx"),
             "int8 ONNX": (int8_path, "onnx", out_dir / "model-int8.onnx"),
             "int8 TFLite": (int8_path, "tflite", out_dir / "model-int8.tflite"),
             "int8 C header (TFLite)": (int8_path, "c-header", out_dir / "model-int8.h")}
    out = {}
    for name, (model, fmt, path) in files.items():
        written = export_model(model, fmt, path)
        entry = {"file": str(path), "bytes": written["bytes"], "model": str(model),
                 "verify": verify(model, path, test.images, test.labels, progress=not quiet)}
        if "tflm_arena_bytes" in written:
            entry["tflm_arena_bytes"] = written["tflm_arena_bytes"]
        out[name] = entry
    return out


def _source_line(e: dict) -> str:
    v = e["verify"]
    arena = f"; TensorFlow Lite Micro arena {e['tflm_arena_bytes']:,} bytes" if "tflm_arena_bytes" in e else ""
    return (f"`{Path(e['file']).name}` ({e['bytes']:,} bytes{arena}) from `{Path(e['model']).name}`, whose test "
            f"accuracy in EdgeFF is {100 * v['edgeff_multi_pass_accuracy']:.2f} % multi-pass, "
            f"{100 * v['edgeff_one_pass_accuracy']:.2f} % one-pass; verdict: {v['verdict'].upper()}")


def exports_markdown(exports: dict) -> str:
    files = "\n".join(f"- {name}: {_source_line(e)}" for name, e in exports.items())
    tables = "\n\n".join(f"### {name}\n\n{parity_table(e['verify'])}" for name, e in exports.items())
    return f"""## Exports

{files}

Each written by `edgeff export MODEL --format onnx|tflite|c-header` and checked by `edgeff verify MODEL FILE`
in its own runtimes on the test set: the float ONNX file against torch (relative differences), the int8 files
against the integer runtime, in onnxruntime, TensorFlow Lite Micro (its own interpreter and reference kernels,
as a board runs the file; the C header's bytes too) and LiteRT. TensorFlow Lite Micro and onnxruntime must be
bit-exact; LiteRT's optimized integer kernels round the head's negative ties up, its reference
FULLY_CONNECTED and XNNPACK requantize in float (edgeff/export/tflite_int8.py), so they are held to the
tolerance each row states.

{tables}"""
