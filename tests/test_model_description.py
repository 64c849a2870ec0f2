import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save as st_save

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, ModelKind, parse_layer, stored_architecture
from edgeff.model_file import VERSION, load_model, save_model
from edgeff.ops.dense.spec import DenseSpec
from edgeff.train.model_io import load_network, network_tensors
from edgeff.train.network import FFNetwork


def test_model_kinds_keep_the_stored_strings():
    assert ModelKind.FLOAT == "ff-mlp" and ModelKind.INT8 == "ff-mlp-int8"
    assert json.dumps({"kind": ModelKind.INT8}) == '{"kind": "ff-mlp-int8"}'


def test_dense_description_round_trips_through_the_header():
    description = ModelDescription.dense([784, 64, 32], "length")
    header = description.to_header()
    assert header[0] == {"kind": "dense", "in_features": 784, "out_features": 64, "normalization": "length",
                         "activation": "relu"}
    assert ModelDescription.from_header(json.loads(json.dumps(header))) == description
    assert description.sizes == [784, 64, 32] and description.normalization == "length"


def test_unknown_layer_kind_is_refused_naming_it_and_the_known_kinds():
    with pytest.raises(EdgeFFError, match=r"unknown layer kind 'conv3d'; this EdgeFF knows dense, conv2d, flatten"):
        parse_layer({"kind": "conv3d", "in_channels": 1})
    with pytest.raises(EdgeFFError, match=r"unknown \['bias'\]"):
        parse_layer({"kind": "dense", "in_features": 4, "out_features": 2, "bias": True})
    with pytest.raises(EdgeFFError, match=r"missing \['out_features'\]"):
        parse_layer({"kind": "dense", "in_features": 4})
    with pytest.raises(EdgeFFError, match="'activation' must be one of relu, got 'tanh'"):
        parse_layer({"kind": "dense", "in_features": 4, "out_features": 2, "activation": "tanh"})


def test_layers_must_chain():
    with pytest.raises(EdgeFFError, match="layer 1 takes 5 inputs, but layer 0 gives 6"):
        ModelDescription((DenseSpec(4, 6), DenseSpec(5, 2)))
    with pytest.raises(EdgeFFError, match="layers normalize differently"):
        _ = ModelDescription((DenseSpec(4, 6, "rms"), DenseSpec(6, 2, "length"))).normalization


def test_stored_architecture_drops_derived_keys_and_refuses_disagreement():
    arch = {"kind": ModelKind.INT8, "layers": ModelDescription.dense([8, 4]).to_header(), "n_classes": 2}
    assert stored_architecture({**arch, "sizes": [8, 4], "normalization": "rms"}) == arch
    assert stored_architecture({"kind": ModelKind.INT8, "sizes": [8, 4], "n_classes": 2}) == arch
    with pytest.raises(EdgeFFError, match=r"'sizes' \[8, 5\] disagrees with its layers"):
        stored_architecture({**arch, "sizes": [8, 5]})


def _format1_file(path, net, **arch_changes):
    """A model file as format 1 wrote it: `sizes` and one `normalization` in the architecture."""
    arch = {"kind": "ff-mlp", "sizes": net.sizes, "n_classes": net.n_classes, "label_value": net.label_value,
            "goodness": net.goodness_kind, "normalization": net.normalization, "collab_mode": net.collab_mode,
            "eval_layers": [1, 2], "head_layers": net.head_layers, "qat": False, **arch_changes}
    header = {"format": "edgeff", "version": 1, "kind": "model", "architecture": arch, "metrics": {"val": 0.5}}
    path.write_bytes(st_save(network_tensors(net), metadata={"edgeff": json.dumps(header, sort_keys=True)}))
    return path


def test_format1_file_loads_through_the_migration(tmp_path):
    torch.manual_seed(0)
    net = FFNetwork([20, 6, 4], n_classes=10, collab_mode="fixed", normalization="length")
    path = _format1_file(tmp_path / "v1.safetensors", net)
    tensors, header = load_model(path)
    arch = header["architecture"]
    assert ModelDescription.from_header(arch["layers"]) == ModelDescription.dense([20, 6, 4], "length")
    assert arch["sizes"] == [20, 6, 4] and arch["normalization"] == "length"
    back, _ = load_network(path)
    x = torch.rand(3, 20)
    assert torch.equal(back.layer_goodness(x), net.eval().layer_goodness(x))
    # written again, the file is format 2 and reads back the same
    again = save_model(tmp_path / "v2.safetensors", tensors, header)
    tensors2, header2 = load_model(again)
    assert header2["version"] == VERSION == 2 and header2["architecture"] == arch
    assert all(np.array_equal(tensors[k], tensors2[k]) for k in tensors)


def test_format1_file_without_normalization_migrates_to_rms(tmp_path):
    net = FFNetwork([20, 6, 4], n_classes=10)
    path = _format1_file(tmp_path / "older.safetensors", net)
    data = json.loads(_metadata(path))
    del data["architecture"]["normalization"]   # files written before it existed normalize by "rms"
    path.write_bytes(st_save(network_tensors(net), metadata={"edgeff": json.dumps(data)}))
    arch = load_model(path)[1]["architecture"]
    assert arch["normalization"] == "rms" and arch["layers"][0]["normalization"] == "rms"


def _metadata(path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata()["edgeff"]


def test_format2_file_with_format1_keys_or_bad_layers_is_refused(tmp_path):
    net = FFNetwork([20, 6, 4], n_classes=10)
    path = save_model(tmp_path / "m.safetensors", network_tensors(net),
                      {"architecture": {"kind": "ff-mlp", "sizes": [20, 6, 4], "n_classes": 10, "label_value": 1.0,
                                        "goodness": "mean", "collab_mode": "none", "eval_layers": [1, 2],
                                        "head_layers": net.head_layers}})
    header = json.loads(_metadata(path))
    mixed = [{**header["architecture"]["layers"][0], "normalization": "length"}, header["architecture"]["layers"][1]]
    for arch, message in [({**header["architecture"], "sizes": [20, 6, 4]}, "holds its layers under 'layers'"),
                          ({**header["architecture"], "layers": []}, "'layers' must be a non-empty list"),
                          ({**header["architecture"], "layers": [{"kind": "pool"}]}, "unknown layer kind 'pool'"),
                          ({**header["architecture"], "layers": mixed}, "m.safetensors: the layers normalize")]:
        meta = {"edgeff": json.dumps({**header, "architecture": arch})}
        path.write_bytes(st_save(network_tensors(net), metadata=meta))
        with pytest.raises(EdgeFFError, match=message):
            load_model(path)
