import gzip

import numpy as np
import pytest

from edgeff.data.datasets import DATA_DIR_ENV, load_dataset
from edgeff.data.idx import read_idx, write_idx
from edgeff.errors import EdgeFFError
from tests.conftest import write_dataset


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    arr = (np.random.default_rng(1).standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, arr)


def test_idx_rejects_bad_magic(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(EdgeFFError, match=r"bad: not an IDX file \(magic number 0x12340801"):
        read_idx(p)


def test_idx_rejects_truncated_data(tmp_path):
    p = write_idx(tmp_path / "x.idx", np.zeros((10, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(EdgeFFError, match=r"x.idx: header says shape \(10, 28, 28\).*truncated"):
        read_idx(p)


def test_idx_rejects_damaged_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6])
    with pytest.raises(EdgeFFError, match="x.gz: the gzip stream is damaged"):
        read_idx(p)


def test_idx_rejects_wrong_rank_and_short_files(tmp_path):
    p = write_idx(tmp_path / "labels", np.zeros(5, np.uint8))
    with pytest.raises(EdgeFFError, match="has 1 dimensions, expected 3"):
        read_idx(p, expect_ndim=3)
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(EdgeFFError, match="too short"):
        read_idx(tmp_path / "short")


def test_dataset_split_and_fingerprint(tmp_path):
    d = write_dataset(tmp_path / "d", n_train=300, n_test=50, gz=False)
    ds = load_dataset(d, val_size=60)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (240, 60, 50)
    assert ds.train.images.shape == (240, 784) and ds.train.images.dtype == np.uint8
    # validation is carved from train: no overlap, nothing lost, same split every time
    again = load_dataset(d, val_size=60)
    assert np.array_equal(again.val.images, ds.val.images)
    assert ds.fingerprint["train_sha256"] == again.fingerprint["train_sha256"]
    both = np.concatenate([ds.train.images, ds.val.images])
    assert len(np.unique(both, axis=0)) == 300


def test_dataset_lookup_from_environment(tmp_path, monkeypatch):
    d = write_dataset(tmp_path / "envdata", n_train=100, n_test=20)
    monkeypatch.setenv(DATA_DIR_ENV, str(d))
    assert load_dataset(val_size=10).directory == d


def test_dataset_missing_gives_instructions(tmp_path):
    with pytest.raises(EdgeFFError, match="apt-get install dataset-fashion-mnist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeFFError, match="missing train-images-idx3-ubyte"):
        load_dataset(tmp_path / "empty")


def test_dataset_label_count_mismatch(tmp_path):
    d = write_dataset(tmp_path / "d", n_train=100, n_test=20)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(99, np.uint8))
    with pytest.raises(EdgeFFError, match="holds 100 images but train-labels-idx1-ubyte.gz holds 99 labels"):
        load_dataset(d, val_size=10)


def test_the_validation_split_defaults_to_a_fraction_that_fits_small_datasets(tmp_path):
    d = write_dataset(tmp_path / "d", n_train=300, n_test=20)
    ds = load_dataset(d)
    assert len(ds.val) == 50 and len(ds.train) == 250 and ds.fingerprint["val_size"] == 50
    assert len(load_dataset(d, val_fraction=0.1).val) == 30
    # a recorded count (what every model file holds) selects exactly the same images again
    again = load_dataset(d, val_size=ds.fingerprint["val_size"], val_fraction=0.5)
    assert np.array_equal(again.val.images, ds.val.images)
    with pytest.raises(EdgeFFError, match="does not fit .* 300 training images; set \\[train\\] val_fraction"):
        load_dataset(d, val_size=10000)
