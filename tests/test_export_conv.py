"""The int8 TFLite and ONNX exports of layered (conv) models: TensorFlow Lite Micro's interpreter, LiteRT's
reference kernels and onnxruntime compute the integer runtime's class goodness and one-pass logits bit for bit,
for both conv paddings (TFLite's zero-point padding as SAME or PAD + VALID, BatchNorm's per-channel border as
concatenated constants), strides, max pooling, flatten and dense; a wrong border shows; the C header; the float
ONNX of the same models in onnxruntime within FLOAT_RTOL of torch (BatchNorm's zero-padded output at the
borders, which a folded conv would miss); and the command line (export, verify, --json, refusals)."""
import copy
import json
import re

import numpy as np
import onnx
import pytest
import torch
from ai_edge_litert import schema_py_generated as schema

from edgeff.c_array import tflite_bytes_from_c_header
from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.export import tflite_layered, tflm
from edgeff.export.tflm import op_names_and_outputs, run_tflm
from edgeff.export.verify import FLOAT_RTOL, max_relative_difference, run_onnx, run_tflite, verify
from edgeff.export.write import export_model
from edgeff.model_description import ModelDescription
from edgeff.model_file import load_model, save_model
from edgeff.quant.layered import folded_network
from edgeff.runtime.class_goodness import MAX_GROUP_VALUES
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.requantize import multiply_by_quantized_multiplier
from edgeff.train.model_io import load_network
from tests.conftest import run_cli
from tests.test_conv_ptq import COLOUR, MIXED, PADDED, _quantized, _random_images

pytest.importorskip("tflite_micro")

# 14 -> stride 2 -> 7 -> 5x5 kernel, padding 1 -> 5 -> pool 2 -> 2: neither block's padding is TFLite's SAME
STRIDED = ('[{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1, stride = 2}, '
           '{kind = "conv2d", out_channels = 20, kernel = 5, padding = 1, pool = 2}]', [1, 2])
EXACT = ("TensorFlow Lite Micro", "LiteRT reference kernels")


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    return _quantized(tmp_path_factory, "padded", PADDED, "--conv-padding", "zero-point")


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    return _quantized(tmp_path_factory, "strided", STRIDED, "--conv-padding", "zero-point")


def _requantized(model, name):
    """The same float model quantized with BatchNorm's padding (the default)."""
    float_path, int_path, data, _ = model
    path = int_path.with_name(f"int8-{name}.safetensors")
    res = run_cli("quantize", float_path, "--out", path, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    return float_path, path, data, json.loads(res.stdout)


@pytest.fixture(scope="module")
def padded_bn(padded):
    return _requantized(padded, "bn")


@pytest.fixture(scope="module")
def strided_bn(strided):
    return _requantized(strided, "bn")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _quantized(tmp_path_factory, "mixed", MIXED)


@pytest.fixture(scope="module")
def colour(tmp_path_factory):
    return _quantized(tmp_path_factory, "colour", COLOUR, colour=True)


def _images(data):
    """Test images of the kind the model was trained on, random ones, and the input range's ends."""
    test = load_dataset(data, val_size=100).test
    noise = _random_images(150, seed=3, pixels=test.images.shape[1])
    noise[:2] = np.array([[0], [255]])
    return np.concatenate([test.images, noise]), np.concatenate([test.labels, np.zeros(150, test.labels.dtype)])


def _conv_paddings(content: bytes) -> list:
    """Each CONV_2D's padding (SAME / VALID) in the file, in graph order."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    names = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
    return [names[op.builtinOptions.padding] for op in model.subgraphs[0].operators
            if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D]


@pytest.mark.parametrize(("name", "convs", "concatenated"), [
    ("padded", ["SAME", "SAME", "VALID"], False),          # stride 1, kernel 3, padding 1: TFLite's SAME
    ("strided", ["VALID", "VALID", "VALID"], False),       # PAD with the zero point, then VALID
    ("padded_bn", ["VALID", "VALID", "VALID"], True),      # BatchNorm's border, concatenated
    ("strided_bn", ["VALID", "VALID", "VALID"], True),
    ("mixed", ["VALID", "VALID", "VALID", "VALID"], False),   # no padding; a dense layer, then the head
    ("colour", ["VALID", "VALID", "VALID"], True)])           # three input channels, BatchNorm's border
def test_tflite_export_is_bit_exact_in_tflm_and_litert_reference(request, tmp_path, name, convs, concatenated):
    _, int_path, data, _ = request.getfixturevalue(name)
    out = tmp_path / "m.tflite"
    written = export_model(int_path, "tflite", out)
    content = out.read_bytes()
    assert _conv_paddings(content) == convs   # the blocks', then the head's 1x1 CONV_2D
    assert ("CONCATENATION" in written["tflm_ops"]) == concatenated
    assert "FULLY_CONNECTED" not in written["tflm_ops"]   # the default form for conv models: 1x1 CONV_2D
    images, labels = _images(data)
    result = verify(int_path, out, images, labels)
    rows = {r["runtime"]: r for r in result["rows"]}
    for runtime in EXACT:
        row = rows[runtime]
        assert row["policy"].startswith("bit-exact") and row["pass"], row
        assert row["goodness_differing"] == 0 and row["logits_differing"] == 0
        assert row["multi_pass_agreement"] == 1.0 and row["one_pass_agreement"] == 1.0
    assert result["verdict"] == "pass", result["failed"]
    model = IntLayeredModel.from_file(int_path)
    assert rows["TensorFlow Lite Micro"]["goodness_values"] == len(model.layers) * len(images) * model.n_classes
    if concatenated:
        assert load_model(int_path)[1]["quantization"]["conv_padding"] == "batchnorm"


@pytest.mark.parametrize("name", ["padded", "strided", "padded_bn", "strided_bn", "mixed", "colour"])
def test_onnx_export_is_bit_exact_in_onnxruntime(request, tmp_path, name):
    """The int8 ONNX graph of integer ops (ConvInteger, MaxPool, int64 requantization) in onnxruntime: every
    goodness and logit equal, at the batch size of the whole set and one image alone."""
    _, int_path, data, _ = request.getfixturevalue(name)
    out = tmp_path / "m.onnx"
    export_model(int_path, "onnx", out)
    assert {"ConvInteger", "MatMulInteger"} & {n.op_type for n in onnx.load(out).graph.node} == {"ConvInteger",
                                                                                             "MatMulInteger"}
    images, labels = _images(data)
    result = verify(int_path, out, images, labels)
    (row,) = result["rows"]
    assert row["runtime"] == "onnxruntime" and row["policy"].startswith("bit-exact") and row["pass"], row
    assert row["goodness_differing"] == 0 and row["logits_differing"] == 0 and row["goodness_values"] > 0
    one = run_onnx(out, images[5:6])
    assert np.array_equal(one["goodness"], IntLayeredModel.from_file(int_path).raw_class_goodness(images[5:6]))


def _outputs(content, model, images):
    return run_tflm(content, model.quantize_images(images))


def test_the_border_holds_each_channels_pad_value(padded_bn):
    """The border constants are each channel's pad_value: with pad values far from the zero point (the
    trained ones, and then every channel's replaced by the int8 range's ends and values between), the export
    computes what the runtime computes with them, and what the trained pad values give differs from what
    those others give, so a wrong border would show."""
    _, int_path, data, _ = padded_bn
    model = IntLayeredModel.from_file(int_path)
    zero_points = [e["in_zero_point"] for e in model.quant["layers"]]
    assert max(np.abs(layer.pad_value.astype(int) - zp).max() for layer, zp in zip(model.layers, zero_points,
                                                                                  strict=True)) > 20
    images = _images(data)[0][:150]
    other = copy.deepcopy(model)
    for layer in other.layers:
        layer.pad_value = np.resize(np.array([127, -128, 64, -50, 0], np.int8), layer.pad_value.shape)
    for m in (model, other):
        got = _outputs(tflite_layered.build(m), m, images)
        assert np.array_equal(got["goodness"], m.raw_class_goodness(images))
        assert np.array_equal(got["logits"], m.head_logits(images))
    assert not np.array_equal(model.raw_class_goodness(images), other.raw_class_goodness(images))


def test_litert_runs_the_file_at_any_batch_size(padded_bn):
    """The batch is dynamic in LiteRT: one image at a time gives the rows of a batch of 150, and the broadcast
    border is the same for each image."""
    _, int_path, data, _ = padded_bn
    model = IntLayeredModel.from_file(int_path)
    content = tflite_layered.build(model)
    q = model.quantize_images(_images(data)[0][:150])
    whole = run_tflite(content, q, "BUILTIN_REF")
    for i in (0, 7, 149):
        one = run_tflite(content, q[i:i + 1], "BUILTIN_REF")
        assert np.array_equal(one["goodness"], whole["goodness"][:, i:i + 1])
        assert np.array_equal(one["logits"], whole["logits"][i:i + 1])


def test_c_header_of_a_conv_model(padded_bn, tmp_path):
    """The C header holds the TFLite file, registers exactly its ops, and its class-goodness constants turn
    TFLM's goodness output into the integer runtime's multi-pass decision."""
    _, int_path, data, _ = padded_bn
    written = export_model(int_path, "c-header", tmp_path / "conv.h")
    export_model(int_path, "tflite", tmp_path / "conv.tflite")
    content = tflite_bytes_from_c_header(tmp_path / "conv.h")
    assert content == (tmp_path / "conv.tflite").read_bytes()
    text = (tmp_path / "conv.h").read_text()
    assert sorted(re.findall(r"resolver\.(Add\w+)\(\);", text)) == sorted(tflm.RESOLVER_METHODS[op]
                                                                          for op in written["tflm_ops"])
    tflm.interpreter(content, written["tflm_arena_bytes"])

    def constant(name):
        return np.array([int(v) for v in re.search(rf"conv_{name}\[\d+\] = \{{([^}}]*)\}}", text)[1].split(",")])

    model = IntLayeredModel.from_file(int_path)
    images = _images(data)[0]
    goodness = _outputs(content, model, images)["goodness"]
    layers = constant("eval_layers")
    scores = sum(multiply_by_quantized_multiplier(goodness[l], constant("goodness_multiplier")[l],
                                                  constant("goodness_shift")[l]) for l in layers)
    assert np.array_equal(scores, model.multi_pass_scores(images))


def test_a_class_group_whose_goodness_could_overflow_int32_is_refused_at_export(padded_bn):
    """The exporter checks every layer's class groups against int32 itself (a model built in memory skips the
    file's checks): 10 channels of 190 x 190 hold 36,100 values a group."""
    model = IntLayeredModel.from_file(padded_bn[1])
    wide = copy.copy(model)
    wide.layers = model.layers[:1]
    wide.description = ModelDescription.chain((1, 190, 190), [{"kind": "conv2d", "out_channels": 10, "kernel": 1}])
    assert wide.description.layers[0].n_outputs // 10 > MAX_GROUP_VALUES
    with pytest.raises(EdgeFFError, match="layer 1's class groups hold 36100 values each"):
        tflite_layered.build(wide, "wide")


# ------------------------------------------------------------------ the command line

def test_export_and_verify_from_the_command_line(strided_bn, tmp_path):
    _, int_path, data, _ = strided_bn
    out = tmp_path / "m.tflite"
    res = run_cli("export", int_path, "--format", "tflite", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    written = json.loads(res.stdout)   # one JSON document
    assert written["out"] == str(out) and written["bytes"] == out.stat().st_size
    assert "CONV_2D" in written["tflm_ops"] and written["tflm_arena_bytes"] > 0
    # every test image: XNNPACK's float rescale moves a few near-tied one-pass decisions of this tiny model
    res = run_cli("verify", int_path, out, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["verdict"] == "pass" and result["images"] == 200 and result["kind"] == "int8"
    assert {r["runtime"] for r in result["rows"] if r["goodness_differing"] == 0 and r["logits_differing"] == 0
            } >= set(EXACT)
    assert "verify: PASS" in res.stderr
    res = run_cli("verify", int_path, out, "--data-dir", data, "--images", "60")
    assert "| TensorFlow Lite Micro | 0 | 0 of 1,200 | 0 | 0 of 600 |" in res.stdout, res.stdout
    # the FULLY_CONNECTED form: TFLM still bit-exact, LiteRT's reference kernel rescales the head in float
    fc = tmp_path / "fc.tflite"
    assert run_cli("export", int_path, "--format", "tflite", "--out", fc, "--layer-op", "fully_connected"
                   ).returncode == 0
    assert "FULLY_CONNECTED" in op_names_and_outputs(fc.read_bytes())[0]
    res = run_cli("verify", int_path, fc, "--data-dir", data, "--images", "60", "--json")
    rows = {r["runtime"]: r for r in json.loads(res.stdout)["rows"]}
    assert rows["TensorFlow Lite Micro"]["logits_differing"] == 0
    assert rows["LiteRT reference kernels"]["policy"].startswith("rounds in float")


def test_verify_refuses_a_conv_export_against_another_model(strided_bn, padded_bn, tmp_path):
    export_model(strided_bn[1], "tflite", tmp_path / "m.tflite")
    res = run_cli("verify", padded_bn[1], tmp_path / "m.tflite", "--data-dir", padded_bn[2], "--images", "5")
    assert res.returncode == 2 and "was exported from another model" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_float_onnx_export_and_verify_from_the_command_line(padded_bn, tmp_path):
    float_path, int_path, data, _ = padded_bn
    out = tmp_path / "m.onnx"
    res = run_cli("export", float_path, "--format", "onnx", "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["bytes"] == out.stat().st_size   # one JSON document
    res = run_cli("verify", float_path, out, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    (row,) = result["rows"]
    assert result["kind"] == "float" and result["verdict"] == "pass" and result["images"] == 200
    assert row["policy"].startswith("float") and row["goodness_max_rel_diff"] <= FLOAT_RTOL, row
    assert row["goodness_values"] == 2 * 200 * 10 and row["multi_pass_agreement"] == 1.0
    assert "verify: PASS" in res.stderr
    res = run_cli("verify", float_path, out, "--data-dir", data, "--images", "60")
    assert re.search(r"\| onnxruntime \| [^|]+ \| 0 of 1,200 \| [^|]+ \| 0 of 600 \| 100\.00 % / 100\.00 % \|",
                     res.stdout), res.stdout
    # the float export is not the int8 model's: refused in one line, naming both
    res = run_cli("verify", int_path, out, "--data-dir", data, "--images", "5")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "is a float export with inputs of shape [196], but" in res.stderr and "is a int8 model" in res.stderr


def test_float_onnx_of_a_layered_model_without_class_goodness_is_refused_in_one_line(padded_bn, tmp_path):
    """An overlay-trained layered model scores one pass per label, which the graph does not spell out: the same
    trained file with its objective rewritten is refused, and nothing is written."""
    tensors, header = load_model(padded_bn[0])
    overlay = tmp_path / "overlay.safetensors"
    save_model(overlay, tensors, {**header, "architecture": {**header["architecture"], "objective": "overlay"}})
    res = run_cli("export", overlay, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "the float ONNX export of a layered model takes objective cwc" in res.stderr and "'overlay'" in res.stderr
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ the float ONNX graph

def _torch_outputs(float_path, images):
    """What torch computes for uint8 images: goodness (n_layers, N, C), scores over the eval layers, logits."""
    net, header = load_network(float_path)
    x = net.inputs(images)
    with torch.no_grad():
        goodness, logits = net.label_scores(x).numpy(), net.head_logits(x).numpy()
    eval_layers = [l - 1 for l in header["architecture"]["eval_layers"]]
    return {"goodness": goodness, "scores": goodness[eval_layers].sum(axis=0), "logits": logits}


@pytest.mark.parametrize(("name", "ops"), [
    ("padded", {"BatchNormalization", "Conv", "Relu", "MaxPool"}),   # padding 1 after BatchNorm
    ("strided", {"BatchNormalization", "Conv", "Relu", "MaxPool"}),  # stride 2, then a 5x5 kernel
    ("mixed", {"BatchNormalization", "Conv", "MaxPool", "MatMul"}),  # maxpool2d, flatten, a dense layer
    ("colour", {"BatchNormalization", "Conv", "MaxPool"})])           # three input planes, 32 x 32
def test_float_onnx_export_computes_what_torch_computes_in_onnxruntime(request, tmp_path, name, ops):
    """Class goodness, summed scores and head logits within FLOAT_RTOL of torch on test images, random ones and
    the range's ends; the same predictions; one image alone gives its row of the batch."""
    float_path, _, data, _ = request.getfixturevalue(name)
    out = tmp_path / "m.onnx"
    written = export_model(float_path, "onnx", out)
    assert written["what"].startswith("float ONNX of the layered model")
    assert ops <= {n.op_type for n in onnx.load(out).graph.node}
    images, labels = _images(data)
    got = run_onnx(out, images.astype(np.float32) / 255.0)
    ref = _torch_outputs(float_path, images)
    for key in ("goodness", "scores", "logits"):
        assert got[key].shape == ref[key].shape and got[key].dtype == np.float32, key
        assert max_relative_difference(got[key], ref[key]) <= FLOAT_RTOL, key
    assert np.array_equal(got["scores"].argmax(axis=1), ref["scores"].argmax(axis=1))
    assert np.array_equal(got["logits"].argmax(axis=1), ref["logits"].argmax(axis=1))
    one = run_onnx(out, images[7:8].astype(np.float32) / 255.0)
    assert max_relative_difference(one["goodness"], ref["goodness"][:, 7:8]) <= FLOAT_RTOL
    result = verify(float_path, out, images, labels)
    (row,) = result["rows"]
    assert row["policy"].startswith("float") and row["pass"] and result["verdict"] == "pass", row
    assert row["goodness_differing"] == 0 and row["logits_differing"] == 0
    assert row["multi_pass_agreement"] == 1.0 and row["one_pass_agreement"] == 1.0


def _folded_goodness(float_path, images) -> np.ndarray:
    """Class goodness with each block's BatchNorm folded into its filters and the conv padded with zeros: what
    a graph that folded BatchNorm would compute (its border reads 0, torch's reads BatchNorm's output of 0)."""
    net, _ = load_network(float_path)
    folded = folded_network(net, "zero-point")
    with torch.no_grad():
        return np.stack([folded.class_goodness(h).numpy() for h in folded.activities(net.inputs(images).double())])


def test_float_onnx_pads_batchnorms_output_as_torch_does(padded, tmp_path):
    """On these images the folded conv's zero border moves the goodness far beyond FLOAT_RTOL, while the export
    stays within it: the test would catch a graph that folded BatchNorm or padded its input."""
    float_path, _, data, _ = padded
    out = tmp_path / "m.onnx"
    export_model(float_path, "onnx", out)
    images = _images(data)[0]
    ref = _torch_outputs(float_path, images)["goodness"]
    assert max_relative_difference(run_onnx(out, images.astype(np.float32) / 255.0)["goodness"], ref) <= FLOAT_RTOL
    assert max_relative_difference(_folded_goodness(float_path, images), ref) > 100 * FLOAT_RTOL
