"""The CIFAR-10 binary reader, on small batch files written here in the format's layout."""
import numpy as np
import pytest

from edgeff.data import cifar10
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from tests.conftest import write_cifar_batch


def _cifar_dir(tmp_path, n_per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    written = {}
    for name in cifar10.SPLIT_FILES["train"] + cifar10.SPLIT_FILES["test"]:
        images = rng.integers(0, 256, (n_per_batch, *cifar10.SHAPE), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch)
        write_cifar_batch(tmp_path / name, images, labels)
        written[name] = (images, labels)
    return written


def test_a_batch_reads_back_channel_major_with_its_labels(tmp_path):
    images = np.zeros((2, 3, 32, 32), np.uint8)
    images[0, 0, 0, 1] = 11      # red, row 0, column 1
    images[1, 2, 31, 31] = 200   # blue, last pixel
    write_cifar_batch(tmp_path / "b.bin", images, np.array([3, 9]))
    got, labels = cifar10.read_batch(tmp_path / "b.bin")
    assert got.shape == (2, 3072) and got.dtype == np.uint8
    assert got[0, 1] == 11 and got[1, 2 * 1024 + 31 * 32 + 31] == 200 and got.sum() == 211
    assert labels.tolist() == [3, 9]


def test_the_dataset_loader_reads_a_cifar_directory_with_every_training_batch(tmp_path):
    written = _cifar_dir(tmp_path)
    data = load_dataset(tmp_path, val_size=5)
    assert len(data.train) + len(data.val) == 20 and len(data.test) == 4
    assert data.train.images.shape[1] == 3072 and data.n_classes <= 10
    test_images, test_labels = written["test_batch.bin"]
    assert np.array_equal(data.test.images, test_images.reshape(4, -1))
    assert np.array_equal(data.test.labels, test_labels)
    all_train = np.concatenate([written[n][0].reshape(4, -1) for n in cifar10.SPLIT_FILES["train"]])
    assert np.array_equal(np.sort(np.concatenate([data.train.images, data.val.images]), axis=0),
                          np.sort(all_train, axis=0))


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-5], "not a whole number of CIFAR-10 records"),
    (lambda raw: b"", "not a whole number"),
    (lambda raw: bytes([10]) + raw[1:], "record 0 has label 10"),
])
def test_a_damaged_batch_is_refused_by_name(tmp_path, damage, message):
    write_cifar_batch(tmp_path / "b.bin", np.zeros((2, 3, 32, 32), np.uint8), np.array([1, 2]))
    (tmp_path / "b.bin").write_bytes(damage((tmp_path / "b.bin").read_bytes()))
    with pytest.raises(EdgeFFError, match=message):
        cifar10.read_batch(tmp_path / "b.bin")


def test_a_missing_training_batch_is_named(tmp_path):
    _cifar_dir(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(EdgeFFError, match="needs data_batch_3.bin"):
        load_dataset(tmp_path, val_size=5)
