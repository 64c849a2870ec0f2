"""Post-training quantization and int8 inference of layered (conv) FF models: the BatchNorm fold (exact without
padding, different only at padded borders), the reference and C kernel sets giving the same integers, the int8
class goodness equal to an independent int64 reimplementation of what the model file's tensors and header say
and to the float64 mean square of the dequantized network, int8 predictions close to the float model's, the
int32 overflow guards, and the command line (quantize, eval, and the refusals of what conv models lack)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.model_file import load_model
from edgeff.op_registry import facet
from edgeff.quant.layered import (
    class_goodness_multipliers,
    dequantized_network,
    folded_network,
    folded_outputs,
    group_counts,
)
from edgeff.quant.ptq import quantize
from edgeff.runtime import backend
from edgeff.runtime.class_goodness import MAX_GROUP_VALUES
from edgeff.runtime.fully_connected import accumulate_ref
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_model import IntFFModel
from edgeff.runtime.l2_normalization import l2_normalization
from edgeff.runtime.requantize import multiply_by_quantized_multiplier
from edgeff.scoring import multi_pass_accuracy
from edgeff.train.conv_network import ConvFFNetwork
from edgeff.train.evaluate import label_scores
from edgeff.train.model_io import load_network, save_network
from tests.conftest import run_cli, train_tiny
from tests.test_c_kernels import _c_builds

needs_c = pytest.mark.skipif(not _c_builds(), reason="no C compiler: the C kernels cannot build")

CONFIG = """
name = "tinyconv"
[model]
input_shape = [1, 14, 14]
objective = "cwc"
layers = {layers}
[train]
epochs = 4
batch_size = 10
lr = 0.01
val_size = 100
eval_samples = 100
schedule = "chunked"
[eval]
layers = {eval_layers}
head_epochs = 2
"""
# board-like: two padded blocks that pool (14 -> 7 -> 3)
PADDED = ('[{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1, pool = 2}, '
          '{kind = "conv2d", out_channels = 20, kernel = 3, padding = 1, pool = 2}]', [1, 2])
# on colour images: the first block reads three channels, padded (the image's planes go to NHWC)
COLOUR = ('[{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1, pool = 2}, '
          '{kind = "conv2d", out_channels = 20, kernel = 3, padding = 1, pool = 4}]', [1, 2])
# every kind, no padding (the fold is exact): 14 -> conv 12 -> maxpool 6 -> conv 4 -> pool 2 -> 80 -> dense 20
MIXED = ('[{kind = "conv2d", out_channels = 10, kernel = 3}, {kind = "maxpool2d", size = 2}, '
         '{kind = "conv2d", out_channels = 20, kernel = 3, pool = 2}, {kind = "flatten"}, '
         '{kind = "dense", out_features = 20}]', [3, 5])


def _quantized(tmp_path_factory, name, layers_and_eval, *options, colour=False):
    """A tiny trained model quantized: on 14x14 grey images, or with `colour` on 32x32 images of three colour
    planes (a CIFAR-10 binary directory)."""
    root = tmp_path_factory.mktemp(name)
    layers, eval_layers = layers_and_eval
    config = CONFIG.format(layers=layers, eval_layers=eval_layers)
    if colour:
        float_path, data = train_tiny(root, config.replace("[1, 14, 14]", "[3, 32, 32]"), cifar=True)
    else:
        float_path, data = train_tiny(root, config, n_train=300, n_test=200, side=14)
    int_path = root / "int8.safetensors"
    res = run_cli("quantize", float_path, "--out", int_path, "--data-dir", data, "--json", *options)
    assert res.returncode == 0, res.stderr
    return float_path, int_path, data, json.loads(res.stdout)


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    return _quantized(tmp_path_factory, "padded", PADDED, "--conv-padding", "zero-point")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _quantized(tmp_path_factory, "mixed", MIXED)


@pytest.fixture(scope="module")
def padded_bn(padded):
    """The padded model quantized with its inputs padded with BatchNorm's zero (torch's border semantics, the
    default: no option given)."""
    float_path, int_path, data, _ = padded
    bn_path = int_path.with_name("int8-bn.safetensors")
    res = run_cli("quantize", float_path, "--out", bn_path, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    return float_path, bn_path, data, json.loads(res.stdout)


@pytest.fixture(params=["padded", "padded_bn", "mixed"])
def any_model(request):
    return request.getfixturevalue(request.param)


def _random_images(n, seed=0, pixels=196):
    return np.random.default_rng(seed).integers(0, 256, (n, pixels), dtype=np.uint8)


# ------------------------------------------------------------------ the fold

def _random_block(padding):
    spec = facet("conv2d", "spec").SPEC(3, 9, 9, 4, 3, padding=padding)
    block = facet("conv2d", "torch_module").build(spec, False).eval()
    g = torch.Generator().manual_seed(padding)
    with torch.no_grad():   # BatchNorm statistics far from identity, so a wrong fold shows
        block.norm.weight.copy_(torch.rand(3, generator=g) + 0.5)
        block.norm.bias.copy_(torch.randn(3, generator=g))
        block.norm.running_mean.copy_(torch.randn(3, generator=g))
        block.norm.running_var.copy_(torch.rand(3, generator=g) + 0.3)
    return spec, block


def test_the_batchnorm_fold_is_exact_without_padding():
    spec, block = _random_block(padding=0)
    x = torch.rand(8, 3, 9, 9, dtype=torch.float64)
    torch_out = F.conv2d(block.double().norm(x), block.conv.weight, block.conv.bias)
    folded = facet("conv2d", "ptq").fold(block, spec)
    assert isinstance(folded.norm, torch.nn.Identity)
    assert torch.allclose(folded.conv(x), torch_out, atol=1e-10)


def test_with_padding_the_fold_differs_only_at_the_borders_by_the_padded_taps():
    spec, block = _random_block(padding=1)
    block = block.double()
    x = torch.rand(8, 3, 9, 9, dtype=torch.float64)
    torch_out = block.conv(block.norm(x))                        # pads BatchNorm's output with 0
    folded = facet("conv2d", "ptq").fold(block, spec, "zero-point").conv(x)   # pads the raw input with 0
    diff = (folded - torch_out).abs().amax(dim=(0, 1))
    assert diff[1:-1, 1:-1].max() < 1e-10                         # inside: exact
    border = torch.ones(9, 9, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert diff[border].min() > 1e-3                              # every border position differs
    # by exactly the padded taps' W * t: torch's output with BatchNorm's shift t padded in place of 0
    a = block.norm.weight / torch.sqrt(block.norm.running_var + block.norm.eps)
    t = block.norm.bias - block.norm.running_mean * a
    padded_with_t = F.pad(block.norm(x) - t[None, :, None, None], (1, 1, 1, 1)) + t[None, :, None, None]
    assert torch.allclose(F.conv2d(padded_with_t, block.conv.weight, block.conv.bias), folded, atol=1e-10)


def test_padded_with_batchnorms_zero_the_fold_is_torchs_block():
    spec, block = _random_block(padding=1)
    block = block.double()
    x = torch.rand(8, 3, 9, 9, dtype=torch.float64)
    folded = facet("conv2d", "ptq").fold(block, spec, "batchnorm")
    assert torch.allclose(facet("conv2d", "torch_module").forward(folded, spec, x),
                          facet("conv2d", "torch_module").forward(block, spec, x), atol=1e-10)
    with pytest.raises(EdgeFFError, match="conv padding 'edge' must be one of zero-point, batchnorm"):
        facet("conv2d", "ptq").fold(block, spec, "edge")


# ------------------------------------------------------------------ kernel sets

@needs_c
def test_reference_and_c_kernels_give_the_same_integers(any_model):
    _, int_path, data, _ = any_model
    model = IntLayeredModel.from_file(int_path)
    images = np.concatenate([_random_images(300), load_dataset(data, val_size=100).test.images])
    results = {}
    for name in ("reference", "c"):
        with backend.using(name):
            assert backend.active() == name
            results[name] = (model.raw_class_goodness(images), model.label_scores(images), model.head_logits(images),
                             model.activities(images[:50]))
    ref, c = results["reference"], results["c"]
    for a, b in zip(ref[:3], c[:3], strict=True):
        assert np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(ref[3], c[3], strict=True))
    assert ref[0].min() >= 0 and ref[0].max() > 0


# ------------------------------------------------------------------ what the header says

def _conv_int64(q, zp_in, w, bias, mult, shift, zp_out, stride, pad, pad_value, rounding):
    """int8 CONV_2D written out in int64 from NHWC / OHWI arrays, independent of the runtime's im2col; the
    input padded with pad_value per channel."""
    n, h, wd, _ = q.shape
    o, k = w.shape[0], w.shape[1]
    x = np.pad(q.astype(np.int64) - pad_value, ((0, 0), (pad, pad), (pad, pad), (0, 0))) + pad_value - zp_in
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    acc = np.zeros((n, oh, ow, o), np.int64)
    for ky in range(k):
        for kx in range(k):
            window = x[:, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride]
            acc += np.einsum("nyxc,oc->nyxo", window, w[:, ky, kx].astype(np.int64))
    y = multiply_by_quantized_multiplier(acc + bias, mult, shift, rounding) + zp_out
    return np.clip(y, max(-128, zp_out), 127)


def _int64_model(int_path, images):
    """Every layer's int8 output in NCHW (or rows) and class goodness from the file alone, in int64."""
    tensors, header = load_model(int_path)
    arch, quant = header["architecture"], header["quantization"]
    rounding, n_classes = quant["rounding"], arch["n_classes"]
    specs = ModelDescription.from_header(arch["layers"]).layers
    x = (images.astype(np.int64) - 128).reshape(len(images), *specs[0].in_shape).transpose(0, 2, 3, 1)
    outs, goodness = [], []
    for i, (spec, entry) in enumerate(zip(specs, quant["layers"], strict=True)):
        t = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"layers.{i}.")}
        zp_in, zp = entry["in_zero_point"], entry["out_zero_point"]
        if spec.kind == "conv2d":
            x = _conv_int64(x, zp_in, t["weight"], t["bias"], t["multiplier"], t["shift"], zp, spec.stride,
                            spec.padding, t["pad_value"].astype(np.int64), rounding)
            if spec.pool > 1:
                n, h, w, c = x.shape
                p = spec.pool
                x = x[:, :h // p * p, :w // p * p].reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))
        elif spec.kind == "maxpool2d":
            n, h, w, c = x.shape
            p = spec.size
            x = x[:, :h // p * p, :w // p * p].reshape(n, h // p, p, w // p, p, c).max(axis=(2, 4))
        elif spec.kind == "flatten":
            x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        else:   # dense: TFLite's L2_NORMALIZATION (the reference kernel, tested elsewhere), then FC in int64
            normed = l2_normalization(x.astype(np.int8), zp_in, 7, -128, 127, rounding).astype(np.int64)
            acc = accumulate_ref(normed, t["weight"], 0) + t["bias"]
            x = np.clip(multiply_by_quantized_multiplier(acc, t["multiplier"], t["shift"], rounding) + zp, zp, 127)
        nchw = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
        centered = nchw.astype(np.int64) - zp
        per_channel = (centered * centered).reshape(len(x), nchw.shape[1], -1).sum(axis=2)
        # class j: channels j*C/n .. (j+1)*C/n - 1 in torch's order
        goodness.append(per_channel.reshape(len(x), n_classes, -1).sum(axis=2))
        outs.append(nchw)
    return outs, np.stack(goodness), tensors, quant


def test_int8_goodness_is_what_the_model_file_says(any_model):
    _, int_path, data, _ = any_model
    images = np.concatenate([_random_images(100, seed=1), load_dataset(data, val_size=100).test.images[:100]])
    outs, g64, tensors, quant = _int64_model(int_path, images)
    model = IntLayeredModel.from_file(int_path)
    acts = model.activities(images)
    for ours, theirs in zip(acts, outs, strict=True):
        assert np.array_equal(ours.transpose(0, 3, 1, 2) if ours.ndim == 4 else ours, theirs)
    raw = model.raw_class_goodness(images)
    assert np.array_equal(raw, g64)
    # the common fixed point: real mean square (float64 of the dequantized outputs) * 2^12, to rounding
    scores = model.label_scores(images)
    for i, (nchw, entry) in enumerate(zip(outs, quant["layers"], strict=True)):
        real = (nchw - entry["out_zero_point"]) * entry["out_scale"]
        mean_square = (real * real).reshape(len(real), model.n_classes, -1).mean(axis=2)
        assert np.abs(scores[i] - mean_square * 2 ** quant["goodness_frac_bits"]).max() <= 1.0 + 1e-6 * scores[i].max()
    assert np.array_equal(model.multi_pass_scores(images), scores[np.array(model.eval_layers) - 1].sum(axis=0))


# ------------------------------------------------------------------ against the float model

def _predictions(scores, layers):
    return scores[[l - 1 for l in layers]].sum(axis=0).argmax(axis=1)


def test_int8_predicts_as_the_float_model_where_the_fold_is_exact(mixed):
    float_path, int_path, data, _ = mixed
    test = load_dataset(data, val_size=100).test
    net = load_network(float_path)[0]
    model = IntLayeredModel.from_file(int_path)
    layers = model.eval_layers
    float_pred = _predictions(label_scores(net, test.images), layers)
    int_pred = _predictions(model.label_scores(test.images), layers)
    assert (float_pred == int_pred).mean() >= 0.9
    assert multi_pass_accuracy(model.label_scores(test.images), test.labels, layers) > 0.5


def test_padded_with_batchnorms_zero_int8_predicts_as_the_float_model(padded_bn):
    float_path, int_path, data, written = padded_bn
    assert written["conv_padding"] == "batchnorm" and written["layers"][0]["fold"]["padding_value"] == "batchnorm"
    test = load_dataset(data, val_size=100).test
    model = IntLayeredModel.from_file(int_path)
    pad = load_model(int_path)[0]["layers.1.pad_value"]
    assert (pad != written["layers"][1]["in_zero_point"]).any()   # not TFLite's zero-point padding
    float_pred = _predictions(label_scores(load_network(float_path)[0], test.images), model.eval_layers)
    assert (float_pred == _predictions(model.label_scores(test.images), model.eval_layers)).mean() >= 0.9


def test_int8_predicts_as_the_folded_float_model_with_padded_borders(padded):
    float_path, int_path, data, _ = padded
    test = load_dataset(data, val_size=100).test
    net = load_network(float_path)[0]
    acts, _ = folded_outputs(folded_network(net, "zero-point"), net, test.images)   # the file's padding
    folded_scores = np.stack([net.class_goodness(torch.from_numpy(a)).numpy() for a in acts])
    model = IntLayeredModel.from_file(int_path)
    agree = (_predictions(folded_scores, model.eval_layers) == _predictions(model.label_scores(test.images),
                                                                            model.eval_layers)).mean()
    assert agree >= 0.9


# ------------------------------------------------------------------ the int8 model in real numbers

@pytest.mark.parametrize("name", ["padded", "padded_bn"])
def test_the_dequantized_network_is_the_int8_model_but_for_its_roundings(request, name):
    """Each layer of dequantized_network, fed the int8 model's dequantized input, lands within one output step of
    the int8 layer's output (its requantization's double rounding), saturated outputs included."""
    float_path, int_path, data, _ = request.getfixturevalue(name)
    images = np.concatenate([_random_images(100, seed=3), load_dataset(data, val_size=100).test.images[:100]])
    images[:50] = np.where(images[:50] > 127, 255, 0)   # hard edges: outputs beyond the calibrated range
    net = load_network(float_path)[0]
    twin = dequantized_network(net, int_path)
    entries = load_model(int_path)[1]["quantization"]["layers"]
    real_in, saturated = net.inputs(images).double(), 0
    for k, (q, entry) in enumerate(zip(IntLayeredModel.from_file(int_path).activities(images), entries, strict=True)):
        q = q.transpose(0, 3, 1, 2).astype(np.float64)
        with torch.no_grad():
            ours = twin.run(real_in, k, k + 1)[0].numpy() / entry["out_scale"] + entry["out_zero_point"]
        assert np.abs(ours - q).max() <= 1.0 + 1e-6
        saturated += int((q == 127).sum())
        real_in = torch.from_numpy((q - entry["out_zero_point"]) * entry["out_scale"])
    assert saturated > 0   # the saturation was exercised: without it those outputs run past code 127


def test_the_dequantized_network_refuses_a_dense_layer_and_another_models_file(mixed, padded):
    float_path, int_path, _, _ = mixed
    with pytest.raises(EdgeFFError, match="not an int8 layered model"):
        dequantized_network(load_network(float_path)[0], float_path)
    with pytest.raises(EdgeFFError, match=r"layer 5 \(dense\) has no real-number form of its int8 tensors"):
        dequantized_network(load_network(float_path)[0], int_path)
    with pytest.raises(EdgeFFError, match="its layers are not the float model's"):
        dequantized_network(load_network(padded[0])[0], int_path)


# ------------------------------------------------------------------ overflow guards

def test_a_layer_whose_class_goodness_could_overflow_int32_is_refused(tmp_path):
    # 10 channels of 190 x 190: one channel per class, 36,100 values a group > 33,025
    d = ModelDescription.chain((1, 190, 190), [{"kind": "conv2d", "out_channels": 10, "kernel": 1}])
    assert d.layers[0].n_outputs // 10 > MAX_GROUP_VALUES
    with pytest.raises(EdgeFFError, match=r"layer 1's class groups hold 36100 values each.*could overflow int32"):
        group_counts("m", d.layers, 10)
    torch.manual_seed(0)
    path = save_network(tmp_path / "m.safetensors", ConvFFNetwork(d, 10, "cwc"), [1])
    images = np.zeros((2, d.layers[0].n_inputs), np.uint8)
    with pytest.raises(EdgeFFError, match="could overflow int32"):
        quantize(path, tmp_path / "q.safetensors", images, np.zeros(2, np.int64), {})
    assert not (tmp_path / "q.safetensors").exists()
    # at the bound itself: 33,025 values * 255^2 is the largest sum int32 holds
    assert group_counts("m", ModelDescription.chain((1, 1, MAX_GROUP_VALUES), [
        {"kind": "conv2d", "out_channels": 10, "kernel": 1}]).layers, 10) == [MAX_GROUP_VALUES]


def test_scales_whose_summed_goodness_could_overflow_int32_are_refused():
    # a scale of 2.1 maps the largest mean square (255 * 2.1)^2 to 2^12 * 286,765 = 1.17e9: one layer fits
    # int32, two summed do not; a scale of 3 (2.4e9) does not fit alone
    for rounding in ("double", "single"):
        class_goodness_multipliers("m", [100], [2.1], rounding)
        with pytest.raises(EdgeFFError, match="beyond int32"):
            class_goodness_multipliers("m", [100, 100], [2.1, 2.1], rounding)
        with pytest.raises(EdgeFFError, match="beyond int32"):
            class_goodness_multipliers("m", [100], [3.0], rounding)


# ------------------------------------------------------------------ the command line

def test_quantize_and_eval_from_the_command_line(padded):
    float_path, int_path, data, written = padded
    assert written["scheme"] == "int8-cwc-tflite" and written["model"] == str(int_path)
    first, second = written["layers"]
    assert (first["in_scale"], first["in_zero_point"]) == (1 / 255, -128)
    assert (second["in_scale"], second["in_zero_point"]) == (first["out_scale"], first["out_zero_point"])
    assert first["fold"]["padding"] == 1 and "border" in first["fold"]
    res = run_cli("eval", int_path, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)   # one JSON document
    assert result["arithmetic"] == "int8 (integer runtime)" and result["multi_pass_layers"] == [1, 2]
    assert len(result["per_layer"]) == 2 and 0 <= result["one_pass"] <= 1
    model = IntLayeredModel.from_file(int_path)
    test = load_dataset(data, val_size=100).test
    assert result["multi_pass"] == multi_pass_accuracy(model.label_scores(test.images), test.labels, [1, 2])
    res = run_cli("eval", int_path, "--data-dir", data)
    assert res.returncode == 0 and "multi-pass accuracy" in res.stdout and "layer 2 alone" in res.stdout


def _refused(res, message):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr, res.stderr


def test_what_conv_int8_models_lack_is_refused_in_one_line(padded, tmp_path):
    float_path, int_path, data, _ = padded
    with pytest.raises(EdgeFFError, match="an int8 layered model .*, not an FF MLP: `edgeff board train` loads"):
        IntFFModel.from_file(int_path)   # the FF MLP's integer model, and what there is for a layered one instead
    _refused(run_cli("memory-plan", float_path), "a conv model's memory plan follows its int8 model file")
    _refused(run_cli("quantize", float_path, "--out", tmp_path / "s.safetensors", "--data-dir", data,
                     "--from-scratch", "1"), "--from-scratch prepares integer training")
    assert not (tmp_path / "s.safetensors").exists()
