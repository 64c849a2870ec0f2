"""Exports proven against EdgeFF and timed against it, on the full Fashion-MNIST test set.

For each float model given (default: the board network and FF 784-500-500 from benchmarks/trainer_accuracy.py)
the script quantizes it (PTQ, int8 normalization), exports float ONNX, int8 ONNX and int8 TFLite (both the
FULLY_CONNECTED and the 1x1 CONV_2D forms), and runs `edgeff verify` on every file: the parity tables
(TensorFlow Lite Micro, LiteRT's three resolvers, onnxruntime). Then, side by side in one run, inference
latency (one image: multi-pass over every label plus the one-pass head) and throughput (batches of 1000;
TFLM runs image by image) of torch float32, onnxruntime, TFLM, LiteRT and the EdgeFF integer runtime on the
same model; median of --repeats runs. Last, one summary table per model: each runtime's values differing,
predictions agreeing and latency per image.

    python benchmarks/exports.py [--models F1,F2] [--out runs/bench-exports]
Writes results.json and results.md to --out.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edgeff.atomic_write import atomic_write_text
from edgeff.data.datasets import load_dataset
from edgeff.export.tflm import interpreter as tflm_interpreter
from edgeff.export.verify import TFLM, parity_table, tflite_interpreter, verify
from edgeff.export.write import export_model
from edgeff.model_file import load_model
from edgeff.quant.ptq import quantize
from edgeff.runtime.int_model import INPUT_ZERO_POINT, IntFFModel
from edgeff.train.evaluate import images_to_input
from edgeff.train.model_io import load_network

DEFAULT_MODELS = "runs/bench-trainer/board-784-64-32/model.safetensors," \
                 "runs/bench-trainer/ff-784-500-500-fast-seed0/model.safetensors"


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def runners(float_path, int_path, files):
    """name -> function(uint8 images) running multi-pass scores and the one-pass head in that runtime."""
    import onnxruntime as ort

    net, _ = load_network(float_path)
    model = IntFFModel.from_file(int_path)

    def torch_run(images):
        x0 = images_to_input(images, net.n_classes)
        with torch.no_grad():
            return net.label_scores(x0), net.head_logits(x0)

    def onnx_run(path, to_input):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": to_input(images)})

    def tflite_run(path, resolver):
        interpreter = tflite_interpreter(Path(path).read_bytes(), resolver)
        index = interpreter.get_input_details()[0]["index"]
        shape = [None]

        def run(images):
            if shape[0] != images.shape:   # resizing re-plans the graph: only when the batch changes
                interpreter.resize_tensor_input(index, list(images.shape))
                interpreter.allocate_tensors()
                shape[0] = images.shape
            interpreter.set_tensor(index, (images.astype(np.int16) + INPUT_ZERO_POINT).astype(np.int8))
            interpreter.invoke()
            return [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
        return run

    def tflm_run(path):
        it = tflm_interpreter(Path(path).read_bytes())

        def run(images):
            outs = []
            for x in (images.astype(np.int16) + INPUT_ZERO_POINT).astype(np.int8):
                it.set_input(x[None], 0)
                it.invoke()
                outs.append((it.get_output(0), it.get_output(1)))
            return outs
        return run

    # keys: (the export's name in `files`, the runtime's row name in verify) where the runtime runs an export
    return {"torch float32": torch_run,
            ("float ONNX", "onnxruntime"): onnx_run(files["float ONNX"], lambda im: im.astype(np.float32) / 255.0),
            "EdgeFF integer runtime": lambda images: (model.raw_label_goodness(images), model.head_logits(images)),
            ("int8 ONNX", "onnxruntime"): onnx_run(files["int8 ONNX"], lambda im: im),
            ("int8 TFLite", TFLM): tflm_run(files["int8 TFLite"]),
            ("int8 TFLite, CONV_2D form", TFLM): tflm_run(files["int8 TFLite, CONV_2D form"]),
            ("int8 TFLite", "LiteRT optimized integer kernels"): tflite_run(files["int8 TFLite"],
                                                                          "BUILTIN_WITHOUT_DEFAULT_DELEGATES"),
            ("int8 TFLite", "LiteRT default (XNNPACK)"): tflite_run(files["int8 TFLite"], "AUTO"),
            ("int8 TFLite", "LiteRT reference kernels"): tflite_run(files["int8 TFLite"], "BUILTIN_REF"),
            ("int8 TFLite, CONV_2D form", "LiteRT reference kernels"): tflite_run(files["int8 TFLite, CONV_2D form"],
                                                                                "BUILTIN_REF")}


def _label(runtime) -> str:
    return runtime if isinstance(runtime, str) else f"{runtime[1]} ({runtime[0]})"


def speed_table(name, runs, images, repeats):
    rows = [f"| {name}: runtime | latency per image (ms) | throughput (images/s, batch 1000) | "
            "throughput / EdgeFF |", "|---|---|---|---|"]
    singles, batch = [images[i:i + 1] for i in range(50)], images[:1000]
    measured = {}
    for runtime, run in runs.items():
        runtime = _label(runtime)
        run(singles[0])
        latency = median_time(lambda: [run(x) for x in singles], repeats) / len(singles)
        run(batch)
        throughput = len(batch) / median_time(lambda: run(batch), repeats)
        measured[runtime] = {"latency_ms": 1e3 * latency, "images_per_s": throughput}
    base = measured["EdgeFF integer runtime"]["images_per_s"]
    for runtime, m in measured.items():
        rows.append(f"| {runtime} | {m['latency_ms']:.3f} | {m['images_per_s']:,.0f} | "
                    f"{m['images_per_s'] / base:.2f}x |")
    return measured, "\n".join(rows)


def summary_table(name, parity, speed):
    """One row per (export, runtime): values differing, predictions agreeing, latency, verdict."""
    rows = [f"| {name}: runtime (export) | goodness values differing | logits values differing | predictions "
            "agreeing (multi / one) | latency per image (ms) | policy met |", "|---|---|---|---|---|---|"]
    for what, result in parity.items():
        for r in result["rows"]:
            latency = speed.get(_label((what, r["runtime"])), {}).get("latency_ms")
            rows.append(f"| {r['runtime']} ({what}) | {r['goodness_differing']:,} of {r['goodness_values']:,} | "
                        f"{r['logits_differing']:,} of {r['logits_values']:,} | "
                        f"{100 * r['multi_pass_agreement']:.2f} % / {100 * r['one_pass_agreement']:.2f} % | "
                        f"{'' if latency is None else f'{latency:.3f}'} | {'yes' if r['pass'] else 'NO'} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated float model files")
    p.add_argument("--out", type=Path, default=Path("runs/bench-exports"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    data = load_dataset()
    results, tables = {}, []
    for float_path in args.models.split(","):
        float_path = Path(float_path)
        name = float_path.parent.name
        out = args.out / name
        int_path = out / "model-int8.safetensors"
        quantize(float_path, int_path, data.train.images[:2000], data.train.labels[:2000], data.fingerprint)
        files = {"float ONNX": (float_path, "onnx", {}), "int8 ONNX": (int_path, "onnx", {}),
                 "int8 TFLite": (int_path, "tflite", {}),
                 "int8 TFLite, CONV_2D form": (int_path, "tflite", {"layer_op": "conv_2d"})}
        paths, parity = {}, {}
        for what, (model, fmt, options) in files.items():
            suffix = "-conv.tflite" if options else f".{fmt}"
            paths[what] = out / f"{'model' if model == float_path else 'model-int8'}{suffix}"
            export_model(model, fmt, paths[what], **options)
            parity[what] = verify(model, paths[what], data.test.images, data.test.labels, progress=True)
            tables.append(f"**{name}, {what}**\n\n{parity_table(parity[what])}")
            print(tables[-1] + "\n", flush=True)
        sizes = load_model(float_path)[1]["architecture"]["sizes"]
        speed, table = speed_table(f"{name} {sizes}", runners(float_path, int_path, paths), data.test.images,
                                   args.repeats)
        tables += [table, summary_table(f"{name} {sizes}", parity, speed)]
        print("\n\n".join(tables[-2:]) + "\n", flush=True)
        results[name] = {"parity": parity, "speed": speed, "files": {k: str(v) for k, v in paths.items()}}
    print(f"torch {torch.__version__} with {torch.get_num_threads()} threads")
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(args.out / "results.md", "\n\n".join(tables))


if __name__ == "__main__":
    main()
