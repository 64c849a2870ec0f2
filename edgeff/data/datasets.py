"""Find a dataset on disk (MNIST-format IDX files, or CIFAR-10's binary batches), load it, and split a
validation set off the training set.

Lookup order: an explicit --data-dir, then $EDGEFF_DATA_DIR, then the Debian package
`dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist). The test split is only ever read for final
numbers; the trainer sees train and validation only.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeff.data import cifar10
from edgeff.data.idx import read_idx
from edgeff.errors import EdgeFFError

DATA_DIR_ENV = "EDGEFF_DATA_DIR"
# 10,000 of Fashion-MNIST's 60,000 training images: the split every earlier model and README figure used
DEFAULT_VAL_FRACTION = 1 / 6
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET_DATA = (
    "Get Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; it lands in "
    f"{DEBIAN_FASHION_MNIST}), or point --data-dir or ${DATA_DIR_ENV} at any directory holding the four "
    "MNIST-format IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte; .gz or raw), or at an unpacked CIFAR-10 binary directory (cifar-10-batches-bin)."
)


@dataclass
class Split:
    images: np.ndarray  # uint8, (N, rows*cols)
    labels: np.ndarray  # int64, (N,)

    def __len__(self):
        return len(self.labels)


@dataclass
class Dataset:
    directory: Path
    train: Split
    val: Split
    test: Split
    n_classes: int
    fingerprint: dict


def find_file(directory: Path, stem: str) -> Path:
    """The IDX file `stem` in `directory`, raw or .gz."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise EdgeFFError(f"{directory}: missing {stem} (or {stem}.gz). {HOW_TO_GET_DATA}")


def resolve_data_dir(data_dir=None, given_by="--data-dir") -> Path:
    """The directory to read, from the argument (given_by names where it came from, for the error), the
    environment or the Debian package, in that order."""
    candidates = []
    if data_dir:
        candidates = [(given_by, Path(data_dir))]
    elif os.environ.get(DATA_DIR_ENV):
        candidates = [(f"${DATA_DIR_ENV}", Path(os.environ[DATA_DIR_ENV]))]
    else:
        candidates = [("the Debian package", DEBIAN_FASHION_MNIST)]
    source, directory = candidates[0]
    if not directory.is_dir():
        raise EdgeFFError(f"no dataset directory at {directory} (from {source}). {HOW_TO_GET_DATA}")
    return directory


def _load_split(directory: Path, split: str) -> tuple[Split, str]:
    if cifar10.is_cifar10_dir(directory):
        return _split_and_digest(*cifar10.read_split(directory, split))
    image_stem, label_stem = SPLIT_FILES[split]
    image_path, label_path = find_file(directory, image_stem), find_file(directory, label_stem)
    images = read_idx(image_path, expect_ndim=3)
    labels = read_idx(label_path, expect_ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise EdgeFFError(f"{directory}: {split} images and labels must be uint8 IDX files "
                          f"(got {images.dtype} and {labels.dtype})")
    if len(images) != len(labels):
        raise EdgeFFError(f"{directory}: {image_path.name} holds {len(images)} images but "
                          f"{label_path.name} holds {len(labels)} labels")
    return _split_and_digest(images, labels)


def _split_and_digest(images: np.ndarray, labels: np.ndarray) -> tuple[Split, str]:
    """The split (images flattened) and the sha256 of its uint8 images and labels, which model files record."""
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    return Split(images.reshape(len(images), -1), labels.astype(np.int64)), digest


def training_digest(data_dir=None, given_by="--data-dir") -> str:
    """The train_sha256 that load_dataset records for data_dir, reading the training split only."""
    return _load_split(resolve_data_dir(data_dir, given_by), "train")[1]


def load_dataset(data_dir=None, val_size=None, split_seed=0, val_fraction=DEFAULT_VAL_FRACTION) -> Dataset:
    """Load train and test from an MNIST-format directory; carve `val_size` validation samples from train
    (when given, as model files record it), else `val_fraction` of them.

    The validation split depends on `split_seed` and its size only, so every model trained on the same
    files is validated on the same samples.
    """
    directory = resolve_data_dir(data_dir)
    train, train_digest = _load_split(directory, "train")
    test, test_digest = _load_split(directory, "test")
    if train.images.shape[1] != test.images.shape[1]:
        raise EdgeFFError(f"{directory}: train images have {train.images.shape[1]} pixels but test "
                          f"images have {test.images.shape[1]}")
    if not val_size:
        val_size = round(val_fraction * len(train))
    if not 0 < val_size < len(train):
        raise EdgeFFError(f"a validation split of {val_size} images does not fit {directory}'s {len(train)} "
                          "training images; set [train] val_fraction (or val_size) in the config, or pass "
                          "--val-fraction to `edgeff train`")
    n_classes = int(max(train.labels.max(), test.labels.max())) + 1
    order = np.random.default_rng(split_seed).permutation(len(train))
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    fingerprint = {"directory": str(directory), "train_sha256": train_digest,
                   "test_sha256": test_digest, "val_size": val_size, "split_seed": split_seed,
                   "n_train": len(train_idx), "n_val": val_size, "n_test": len(test)}
    return Dataset(directory=directory,
                   train=Split(train.images[train_idx], train.labels[train_idx]),
                   val=Split(train.images[val_idx], train.labels[val_idx]),
                   test=test, n_classes=n_classes, fingerprint=fingerprint)
