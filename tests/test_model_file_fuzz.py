"""Property-based fuzzing of the model loader: whatever a crafted file holds, only EdgeFFError escapes."""
import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeff.errors import EdgeFFError
from edgeff.model_file import VERSION, load_model
from edgeff.train.model_io import architecture, load_network, network_tensors
from edgeff.train.network import FFNetwork

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
offsets = st.one_of(json_values, st.lists(st.integers(-10, 300), min_size=0, max_size=3))
tensor_entries = st.fixed_dictionaries(
    {}, optional={"dtype": st.sampled_from(["F32", "I8", "I64", "U8", "BOOL", "X9"]) | json_values,
                  "shape": st.lists(st.integers(-3, 2**40), max_size=3) | json_values,
                  "data_offsets": offsets})


def _file(header_text: bytes, payload: bytes) -> bytes:
    return struct.pack("<Q", len(header_text)) + header_text + payload


def _load_only_named_errors(path, data: bytes, loader=load_model):
    path.write_bytes(data)
    try:
        loader(path)
    except EdgeFFError:
        pass


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


@FUZZ
@given(meta=json_values, entries=st.dictionaries(st.text(max_size=6), tensor_entries | json_values, max_size=3),
       payload=st.binary(max_size=64))
def test_crafted_safetensors_headers_give_named_errors(tmp_path, meta, entries, payload):
    header = {**entries, "__metadata__": meta}
    _load_only_named_errors(tmp_path / "f.safetensors", _file(json.dumps(header).encode(), payload))


@FUZZ
@given(edgeff=json_values | st.builds(json.dumps, json_values), payload=st.binary(max_size=16))
def test_crafted_edgeff_headers_give_named_errors(tmp_path, edgeff, payload):
    meta = {"edgeff": edgeff if isinstance(edgeff, str) else json.dumps(edgeff)}
    _load_only_named_errors(tmp_path / "f.safetensors", _file(json.dumps({"__metadata__": meta}).encode(), payload))


@FUZZ
@given(depth=st.integers(1, 200_000), kind=st.sampled_from(["list", "dict"]), where=st.sampled_from(["st", "edgeff"]))
def test_deeply_nested_json_gives_named_errors(tmp_path, depth, kind, where):
    nested = _nested(depth, kind)
    text = nested if where == "st" else json.dumps({"__metadata__": {"edgeff": nested}})
    _load_only_named_errors(tmp_path / "f.safetensors", _file(text.encode(), b""))


@pytest.fixture(scope="module")
def valid_model():
    torch.manual_seed(0)
    net = FFNetwork([20, 6, 4], n_classes=10, collab_mode="fixed")
    header = {"format": "edgeff", "version": VERSION, "kind": "model", "architecture": architecture(net, [1, 2])}
    return network_tensors(net), header


@FUZZ
@given(key=st.sampled_from(["layers", "n_classes", "eval_layers", "head_layers", "goodness", "collab_mode",
                            "label_value", "qat", "kind", "sizes", "normalization"]),
       value=json_values | st.lists(st.integers(-2, 30), max_size=4), drop=st.booleans())
def test_crafted_architectures_give_named_errors(tmp_path, valid_model, key, value, drop):
    from safetensors.numpy import save as st_save

    tensors, header = valid_model
    arch = dict(header["architecture"])
    if drop:
        arch.pop(key, None)
    else:
        arch[key] = value
    data = st_save(tensors, metadata={"edgeff": json.dumps({**header, "architecture": arch})})
    # what load_model lets through, the float network builds from
    _load_only_named_errors(tmp_path / "f.safetensors", data, load_network)


@FUZZ
@given(key=st.sampled_from(["kind", "in_features", "out_features", "normalization", "activation"]),
       value=json_values, drop=st.booleans(), layer=st.integers(0, 1))
def test_crafted_layer_specs_give_named_errors(tmp_path, valid_model, key, value, layer, drop):
    from safetensors.numpy import save as st_save

    tensors, header = valid_model
    layers = [dict(entry) for entry in header["architecture"]["layers"]]
    if drop:
        layers[layer].pop(key)
    else:
        layers[layer][key] = value
    arch = {**header["architecture"], "layers": layers}
    data = st_save(tensors, metadata={"edgeff": json.dumps({**header, "architecture": arch})})
    _load_only_named_errors(tmp_path / "f.safetensors", data, load_network)


def test_a_file_without_architecture_is_refused_at_load(tmp_path, valid_model):
    from safetensors.numpy import save as st_save

    tensors, header = valid_model
    path = tmp_path / "noarch.safetensors"
    path.write_bytes(st_save(tensors, metadata={"edgeff": json.dumps({**header, "architecture": None})}))
    with pytest.raises(EdgeFFError, match="describes no FF network"):
        load_model(path)
    layers = header["architecture"]["layers"]
    wrong = {**header["architecture"], "layers": [{**layers[0], "out_features": 7}, {**layers[1], "in_features": 7}]}
    path.write_bytes(st_save(tensors, metadata={"edgeff": json.dumps({**header, "architecture": wrong})}))
    with pytest.raises(EdgeFFError, match="tensor 'layers.0.weight' has shape"):
        load_model(path)
    np.testing.assert_equal(load_model(_saved(tmp_path, tensors, header))[0]["gamma"], tensors["gamma"])


def _saved(tmp_path, tensors, header):
    from safetensors.numpy import save as st_save

    path = tmp_path / "ok.safetensors"
    path.write_bytes(st_save(tensors, metadata={"edgeff": json.dumps(header)}))
    return path
