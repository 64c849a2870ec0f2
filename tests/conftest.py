"""Shared fixtures: tiny, learnable datasets written as real files (MNIST-format IDX, CIFAR-10 binary)."""
import subprocess
import sys

import numpy as np
import pytest

from edgeff.data import cifar10
from edgeff.data.idx import write_idx


def make_images(labels: np.ndarray, rng: np.random.Generator, side=28) -> np.ndarray:
    """Class c: a bright square (6x6 in 28x28 images) at a class-specific place, plus uniform noise, as
    uint8 images."""
    imgs = rng.integers(0, 60, size=(len(labels), side, side))
    step, margin = side * 6 // 28, side * 4 // 28
    for i, c in enumerate(labels):
        r, col = margin + step * (c // 4), margin + step * (c % 4)
        imgs[i, r:r + step, col:col + step] += 180
    return np.clip(imgs, 0, 255).astype(np.uint8)


def write_dataset(directory, n_train=600, n_test=200, seed=0, gz=True, side=28):
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte{ext}", make_images(labels, rng, side))
        write_idx(directory / f"{split}-labels-idx1-ubyte{ext}", labels)
    return directory


def write_cifar_batch(path, images: np.ndarray, labels: np.ndarray):
    """images (N, 3, 32, 32) uint8: each record is the label byte, then the R, G and B planes row-major."""
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    path.write_bytes(records.tobytes())


def write_cifar_dataset(directory, n_per_batch=60, n_test=100, seed=0):
    """A CIFAR-10 binary directory of learnable colour images: class c's square (make_images') in colour plane
    c % 3, the other planes noise, so that a model must read every channel."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name in cifar10.SPLIT_FILES["train"] + cifar10.SPLIT_FILES["test"]:
        n = n_test if name in cifar10.SPLIT_FILES["test"] else n_per_batch
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, *cifar10.SHAPE)).astype(np.uint8)
        squares = make_images(labels, rng, cifar10.SHAPE[1])
        for i, c in enumerate(labels):
            images[i, c % 3] = squares[i]
        write_cifar_batch(directory / name, images, labels)
    return directory


@pytest.fixture
def tiny_data(tmp_path):
    return write_dataset(tmp_path / "data")


TINY_CONFIG = """
name = "tiny"
[model]
sizes = {sizes}
[collab]
mode = "{mode}"
[train]
epochs = {epochs}
batch_size = 10
lr = 0.01
val_size = 100
eval_samples = 100
negatives = "{negatives}"
[eval]
head_epochs = 3
"""


@pytest.fixture
def tiny_config(tmp_path):
    def make(mode="fixed", epochs=3, negatives="random", name="tiny.toml"):
        path = tmp_path / name
        path.write_text(TINY_CONFIG.format(mode=mode, epochs=epochs, negatives=negatives, sizes=[784, 32, 16]))
        return path
    return make


def run_cli(*args):
    """Run the real `edgeff` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "edgeff", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def train_tiny(root, config: str, cifar=False, **data):
    """`edgeff train` of the config text on IDX files written under root (write_dataset's keyword arguments), or
    on a CIFAR-10 binary directory (write_cifar_dataset's) with `cifar`: (float model path, data dir)."""
    data_dir = (write_cifar_dataset if cifar else write_dataset)(root / "data", **data)
    cfg = root / "tiny.toml"
    cfg.write_text(config)
    res = run_cli("train", cfg, "--data-dir", data_dir, "--out", root / "run", "--quiet")
    assert res.returncode == 0, res.stderr
    return root / "run/model.safetensors", data_dir


@pytest.fixture(scope="session")
def float_model(tmp_path_factory):
    """A tiny float model trained by the CLI: (float path, data dir)."""
    return train_tiny(tmp_path_factory.mktemp("float"),
                      TINY_CONFIG.format(mode="fixed", epochs=3, negatives="random", sizes=[784, 32, 16]))


@pytest.fixture(scope="session", params=[7, 15], ids=["int8-norm", "int16-norm"])
def int_model(request, float_model, tmp_path_factory):
    """The tiny model quantized by the CLI, with int8 (TFLite) or int16 (16x8) normalized activations:
    (float path, int8 path, data dir)."""
    float_path, data = float_model
    int_path = tmp_path_factory.mktemp("int") / f"int8-norm{request.param}.safetensors"
    res = run_cli("quantize", float_path, "--out", int_path, "--data-dir", data, "--calibration-samples", "300",
                  "--norm-bits", request.param)
    assert res.returncode == 0, res.stderr
    return float_path, int_path, data


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A [144, 16, 8] int8 model on 12x12 images, small enough for heavy fault injection: (int8 path, data)."""
    root = tmp_path_factory.mktemp("bridge")
    float_path, data = train_tiny(root, TINY_CONFIG.format(mode="none", epochs=2, negatives="random",
                                                           sizes=[144, 16, 8]), n_train=400, n_test=100, side=12)
    int_path = root / "small-int8.safetensors"
    res = run_cli("quantize", float_path, "--out", int_path, "--data-dir", data)
    assert res.returncode == 0, res.stderr
    return int_path, data
