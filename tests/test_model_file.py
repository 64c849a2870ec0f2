import json
import os
import struct

import numpy as np
import pytest
import torch
from safetensors.numpy import save as st_save

from edgeff import model_file
from edgeff.atomic_write import atomic_write_bytes
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model, save_model
from edgeff.train.model_io import load_network, save_network
from edgeff.train.network import FFNetwork


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = FFNetwork([784, 20, 10], collab_mode="adaptive", gamma_init=0.3)
    path = save_network(tmp_path / "m.safetensors", net, [1, 2], metrics={"val": 0.5}, data={"sha": "x"})
    return net, path


def test_round_trip_keeps_every_tensor_and_the_header(saved):
    net, path = saved
    back, header = load_network(path)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), back.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert header["version"] == model_file.VERSION and header["metrics"] == {"val": 0.5}
    assert header["architecture"]["sizes"] == [784, 20, 10]
    stored = json.loads(_edgeff_header(path))["architecture"]
    assert "sizes" not in stored and "normalization" not in stored
    assert [(layer["in_features"], layer["out_features"]) for layer in stored["layers"]] == [(784, 20), (20, 10)]
    assert back.collab_mode == "adaptive" and back.gamma.requires_grad


def _edgeff_header(path) -> str:
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    return json.loads(path.read_bytes()[8:8 + n])["__metadata__"]["edgeff"]


def test_file_is_not_pickle(saved):
    _, path = saved
    assert json.loads(_edgeff_header(path))["format"] == "edgeff"


def test_truncated_file_refused(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(EdgeFFError, match="cut.safetensors: the file is truncated"):
        load_model(cut)
    cut.write_bytes(path.read_bytes()[:5])
    with pytest.raises(EdgeFFError, match="too short"):
        load_model(cut)


def test_foreign_and_garbage_files_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(st_save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(EdgeFFError, match="not one written by EdgeFF"):
        load_model(foreign)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(4000))
    with pytest.raises(EdgeFFError, match="garbage.bin: not an EdgeFF model file"):
        load_model(garbage)
    with pytest.raises(EdgeFFError, match="no such model file"):
        load_model(tmp_path / "absent")


def test_newer_version_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(model_file, "VERSION", model_file.VERSION + 1)
    path = save_model(tmp_path / "new.safetensors", {"w": np.zeros(2, np.float32)}, {})
    monkeypatch.undo()
    with pytest.raises(EdgeFFError, match="written by a newer EdgeFF .*upgrade EdgeFF"):
        load_model(path)


def test_wrong_kind_refused(tmp_path):
    path = save_model(tmp_path / "c.safetensors", {"w": np.zeros(2, np.float32)}, {}, kind="checkpoint")
    with pytest.raises(EdgeFFError, match="'checkpoint' file, expected a 'model' file"):
        load_model(path)


def test_inconsistent_shapes_and_nan_refused(saved, tmp_path):
    _, path = saved
    tensors, header = load_model(path)
    bad = dict(tensors, **{"layers.1.weight": np.zeros((10, 21), np.float32)})
    p = save_model(tmp_path / "bad.safetensors", bad, header)
    with pytest.raises(EdgeFFError, match=r"tensor 'layers.1.weight' has shape \(10, 21\).*needs \(10, 20\)"):
        load_network(p)
    nan = dict(tensors, **{"head.bias": np.full(10, np.nan, np.float32)})
    p = save_model(tmp_path / "nan.safetensors", nan, header)
    with pytest.raises(EdgeFFError, match="'head.bias' holds NaN"):
        load_network(p)
    missing = {k: v for k, v in tensors.items() if k != "gamma"}
    p = save_model(tmp_path / "missing.safetensors", missing, header)
    with pytest.raises(EdgeFFError, match="tensor 'gamma' is missing"):
        load_network(p)


def test_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    target = atomic_write_bytes(tmp_path / "model.safetensors", b"old contents")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left
