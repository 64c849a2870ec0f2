"""Hashes of every artifact the chain makes from one seed, to show a refactor changed no bit.

Runs the CLI end to end on a small synthetic IDX dataset (written here, so no dataset is needed):
train (FF, F-CFF, A-CFF, the board network, QAT), quantize (double and single rounding, int16
normalization, from scratch), finetune, every export format, board training on the virtual board and
its pull, and the board image. Prints one `sha256  artifact` line per file (or `--json`), sorted.

    python benchmarks/artifact_hashes.py > before.txt   # ... refactor ...
    python benchmarks/artifact_hashes.py | diff before.txt -

benchmarks/artifact_hashes.txt is this script's output at commit 05ee80e, before the redesign into the op
registry (issue 16); `python benchmarks/artifact_hashes.py | diff benchmarks/artifact_hashes.txt -` prints
nothing on main: every MLP artifact is bit-identical to what the pre-redesign code made from the same seed.
"""
import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from edgeff.c_array import tflite_bytes_from_c_header
from edgeff.data.idx import write_idx
from edgeff.package_data import MODELS_DIR

CONFIG = """
name = "{name}"
[model]
sizes = {sizes}
[collab]
mode = "{mode}"
[train]
epochs = 2
batch_size = 10
lr = 0.01
val_size = 100
eval_samples = 100
seed = 3
{extra}
[eval]
head_epochs = 2
"""

MODELS = {
    "ff": dict(sizes=[784, 32, 16], mode="none", extra=""),
    "fcff": dict(sizes=[784, 32, 16], mode="fixed", extra=""),
    "acff": dict(sizes=[784, 32, 16], mode="adaptive", extra=""),
}


def write_data(directory: Path):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True)
    for split, n in (("train", 600), ("t10k", 200)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            r, col = 4 + 6 * (c // 4), 4 + 6 * (c % 4)
            images[i, r:r + 6, col:col + 6] += 180
        write_idx(directory / f"{split}-images-idx3-ubyte", np.clip(images, 0, 255).astype(np.uint8))
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels)


def edgeff(work: Path, *args):
    cmd = [sys.executable, "-m", "edgeff", *map(str, args), "--data-dir", str(work / "data")]
    if args[0] in ("export", "memory-plan"):
        cmd = cmd[:-2]
    print("$ edgeff " + " ".join(map(str, args)), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=work, stdout=subprocess.DEVNULL)


def board(work: Path, *args):
    cmd = [sys.executable, "-m", "edgeff", "board", *map(str, args)]
    print("$ edgeff board " + " ".join(map(str, args)), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=work, stdout=subprocess.DEVNULL)


def make_artifacts(work: Path):
    write_data(work / "data")
    for name, spec in MODELS.items():
        (work / f"{name}.toml").write_text(CONFIG.format(name=name, **spec))
        edgeff(work, "train", f"{name}.toml", "--out", f"runs/{name}", "--quiet")
    for name in ("board-784-64-32", "board-784-64-32-qat"):
        edgeff(work, "train", MODELS_DIR / f"{name}.toml", "--out", f"runs/{name}", "--epochs", "1", "--quiet")
    for name in ("ff", "fcff", "acff", "board-784-64-32", "board-784-64-32-qat"):
        model = f"runs/{name}/model.safetensors"
        edgeff(work, "quantize", model, "--out", f"q/{name}.int8.safetensors", "--calibration-samples", "200")
    edgeff(work, "quantize", "runs/acff/model.safetensors", "--out", "q/acff.single.safetensors", "--rounding",
           "single")
    edgeff(work, "quantize", "runs/acff/model.safetensors", "--out", "q/acff.n15.safetensors", "--norm-bits", "15")
    edgeff(work, "quantize", "runs/board-784-64-32/model.safetensors", "--out", "q/board.scratch.safetensors",
           "--from-scratch", "5")
    edgeff(work, "finetune", "q/board-784-64-32.int8.safetensors", "--out", "q/board.ft.safetensors",
           "--samples", "100")
    edgeff(work, "finetune", "q/acff.int8.safetensors", "--out", "q/acff.ft4.safetensors", "--samples", "60",
           "--batch-size", "4")
    for fmt, ext in (("onnx", "onnx"), ("tflite", "tflite"), ("c-header", "h")):
        for model in ("runs/acff/model.safetensors", "q/acff.int8.safetensors", "q/board.ft.safetensors"):
            if fmt != "onnx" and not model.startswith("q/"):
                continue
            edgeff(work, "export", model, "--format", fmt, "--out", f"x/{Path(model).stem}.{fmt}.{ext}")
    edgeff(work, "export", "q/acff.int8.safetensors", "--format", "tflite", "--layer-op", "conv_2d",
           "--out", "x/acff.conv.tflite")
    edgeff(work, "export", "q/board.ft.safetensors", "--format", "board-header", "--out", "x/board.image.h")
    board(work, "train", "--model", "q/board-784-64-32.int8.safetensors", "--samples", "40", "--storage", "runs/vb",
          "--data-dir", work / "data", "--out", "b/board.trained.safetensors")
    board(work, "pull", "--storage", "runs/vb", "--model", "q/board-784-64-32.int8.safetensors",
          "--out", "b/board.pulled.safetensors")
    # The memory plan is an artifact too: the buffer list a board allocates.
    for name in ("q/board-784-64-32.int8.safetensors", "q/acff.int8.safetensors"):
        out = subprocess.run([sys.executable, "-m", "edgeff", "memory-plan", name, "--json"], cwd=work,
                             check=True, capture_output=True).stdout
        (work / f"{name}.plan.json").write_bytes(out)


def canonical_bytes(path: Path) -> bytes:
    """What must stay identical: a model file's tensors (its JSON header is the format, which a redesign may
    change); an export's bytes with the source model's sha256 (provenance, which follows the header) blanked;
    a C header's embedded TFLite model, so blanked too. Board images and memory plans as they are."""
    if path.suffix == ".safetensors":
        tensors = load_file(path)
        return b"".join(name.encode() + str(t.dtype).encode() + str(t.shape).encode() + t.tobytes()
                        for name, t in sorted(tensors.items()))
    data = path.read_bytes()
    if path.suffix == ".h" and b"board_model" not in data:
        data = tflite_bytes_from_c_header(path)
    if path.suffix in (".onnx", ".tflite", ".h"):
        data = re.sub(rb"[0-9a-f]{64}", b"0" * 64, data)
    return data


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="one JSON document {artifact: sha256}")
    p.add_argument("--keep", help="make the artifacts in this (new) folder and keep them")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=False if args.keep else True)
        make_artifacts(work)
        files = sorted(f for sub in ("runs", "q", "x", "b") for f in (work / sub).rglob("*")
                       if f.is_file() and "checkpoint" not in f.name
                       and (f.suffix in (".safetensors", ".onnx", ".tflite", ".h") or f.name.endswith(".plan.json")))
        hashes = {str(f.relative_to(work)): hashlib.sha256(canonical_bytes(f)).hexdigest() for f in files}
    if args.json:
        print(json.dumps(hashes, indent=1))
    else:
        for name, digest in hashes.items():
            print(f"{digest}  {name}")


if __name__ == "__main__":
    main()
