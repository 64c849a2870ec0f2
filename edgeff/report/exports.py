"""The pipeline's export stage: write the model as ONNX (float and int8), TFLite int8 and a C header, and
verify each exported file in its own runtime on the test set (edgeff.export.verify)."""
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
        entry = {"file": str(path), "bytes": written["bytes"], "model": str(model)}
        if fmt != "c-header":
            entry["verify"] = verify(model, path, test.images, test.labels, progress=not quiet)
        out[name] = entry
    return out


def exports_markdown(exports: dict) -> str:
    files = ", ".join(f"`{Path(e['file']).name}` ({e['bytes']:,} bytes)" for e in exports.values())
    tables = "\n\n".join(f"### {name}\n\n{parity_table(e['verify'])}" for name, e in exports.items() if "verify" in e)
    return f"""## Exports

{files}: `edgeff export MODEL --format onnx|tflite|c-header`, each checked by `edgeff verify MODEL FILE`
in its own runtime on the test set. The float ONNX file is compared with torch (relative differences), the
int8 files with the integer runtime (they should be equal: LiteRT's optimized integer kernels round the
head's negative ties up, its reference FULLY_CONNECTED and XNNPACK requantize in float; see
edgeff/export/tflite_int8.py).

{tables}"""
