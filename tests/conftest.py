"""Shared fixtures: a tiny, learnable MNIST-format dataset written as real IDX files."""
import numpy as np
import pytest

from edgeff.data.idx import write_idx


def make_images(labels: np.ndarray, rng: np.random.Generator, side=28) -> np.ndarray:
    """Class c: a bright 6x6 square at a class-specific place, plus uniform noise, as uint8 images."""
    imgs = rng.integers(0, 60, size=(len(labels), side, side))
    for i, c in enumerate(labels):
        r, col = 4 + 6 * (c // 4), 4 + 6 * (c % 4)
        imgs[i, r:r + 6, col:col + 6] += 180
    return np.clip(imgs, 0, 255).astype(np.uint8)


def write_dataset(directory, n_train=600, n_test=200, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte{ext}", make_images(labels, rng))
        write_idx(directory / f"{split}-labels-idx1-ubyte{ext}", labels)
    return directory


@pytest.fixture
def tiny_data(tmp_path):
    return write_dataset(tmp_path / "data")


TINY_CONFIG = """
name = "tiny"
[model]
sizes = [784, 32, 16]
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
        path.write_text(TINY_CONFIG.format(mode=mode, epochs=epochs, negatives=negatives))
        return path
    return make
