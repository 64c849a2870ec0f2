"""Integer training of layered (conv) CwC models: the fixed-point softmax within its bound, the integer gradient of
a block against the float64 derivative of the same CwC loss on the dequantized block, locality (no gradient
crosses a block), stochastic rounding unbiased over seeds, one epoch lowering the loss, and `edgeff finetune
--last-k` (frozen blocks' bytes unchanged, one JSON document, bad K refused in one line)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model
from edgeff.op_registry import facet
from edgeff.runtime import conv2d_training
from edgeff.runtime.class_goodness import group_values
from edgeff.runtime.cwc_loss import PROBABILITY_ERROR_BOUND, Q15, loss_derivative, softmax_q15
from edgeff.runtime.int_layered import IntLayeredModel
from edgeff.runtime.int_layered_training import IntLayeredTrainer, load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig
from tests.conftest import run_cli, train_tiny
from tests.test_conv_ptq import CONFIG, MIXED, PADDED, _quantized

RUNTIME = facet("conv2d", "runtime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two padded pooled blocks (as the board model), quantized with the default batchnorm padding."""
    root = tmp_path_factory.mktemp("convtrain")
    layers, eval_layers = PADDED
    float_path, data = train_tiny(root, CONFIG.format(layers=layers, eval_layers=eval_layers), n_train=300,
                                  n_test=200, side=14)
    int_path = root / "int8.safetensors"
    res = run_cli("quantize", float_path, "--out", int_path, "--data-dir", data)
    assert res.returncode == 0, res.stderr
    return int_path, data


def gradients(trainer, images, labels) -> tuple[dict, dict]:
    """({trained layer: (filter gradient g, bias gradient h)}, the forward's class goodness): the exact integer sums
    a step rounds into each block's update (conv2d_training.gradient, the rule's specification)."""
    kept, goodness = trainer.forward(images)
    return {i: conv2d_training.gradient(trainer.model.layers[i], kept[i],
                                        loss_derivative(goodness[i], labels, trainer.frac_bits))
            for i in trainer.trained}, goodness


def _trainer(path, last_k=None, lr_shift=8, rounding="stochastic", seed=0):
    return load_layered_trainer(path, IntTrainingConfig(lr_shift=lr_shift, rounding=rounding, seed=seed), last_k)


def test_the_fixed_point_softmax_is_within_its_bound_of_float64():
    rng = np.random.default_rng(0)
    worst = 0.0
    for spread in (0.01, 0.3, 3.0, 30.0):   # nearly equal classes to one class far ahead
        g = np.round((rng.normal(0, spread, (5000, 10)) + rng.uniform(0, 50)) * 4096).astype(np.int64)
        real = g / 4096.0
        p = np.exp(real - real.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        worst = max(worst, np.abs(softmax_q15(g, 12) / Q15 - p).max())
    assert worst < PROBABILITY_ERROR_BOUND, worst
    labels = rng.integers(0, 10, 5000)
    d = loss_derivative(g, labels, 12)
    assert (np.abs(d.sum(axis=1)) <= 10).all()   # p sums to one (to the rounding of ten classes), less the label
    rows = np.arange(5000)
    assert (d[rows, labels] <= 0).all()
    d[rows, labels] = 0
    assert (d >= 0).all()


def _float64_gradient(trainer, i, kept, labels):
    """dL/dW', dL/db' (OHWI, float64) of the CwC loss on block i dequantized: the int8 filters and bias at their
    real scales, the block's kept int8 input at its scale, torch's conv, ReLU, max pooling and cross-entropy."""
    layer, entry = trainer.model.layers[i], trainer.model.quant["layers"][i]
    s_in, s_out = entry["in_scale"], entry["out_scale"]
    s_w = layer.multiplier * 2.0 ** (layer.shift - 31.0) * s_out / s_in
    x = torch.tensor((kept.input.astype(np.float64) - kept.zero_point) * s_in).permute(0, 3, 1, 2)
    w = torch.tensor(layer.weight * s_w[:, None, None, None]).permute(0, 3, 1, 2).requires_grad_()
    b = torch.tensor(layer.bias * s_in * s_w).requires_grad_()
    a = F.relu(F.conv2d(x, w, b, stride=layer.stride, padding=kept.pad))
    if layer.pool > 1:
        a = F.max_pool2d(a, layer.pool)
    g = (a * a).reshape(len(a), trainer.model.n_classes, -1).mean(dim=2)
    F.cross_entropy(g, torch.from_numpy(labels.astype(np.int64)), reduction="sum").backward()
    return w.grad.permute(0, 2, 3, 1).reshape(len(s_w), -1).numpy(), b.grad.numpy(), s_in, s_out


def test_the_integer_gradient_is_the_float64_derivative_of_the_cwc_loss(tiny):
    int_path, data = tiny
    trainer = _trainer(int_path)                       # both blocks
    train = load_dataset(data, val_size=100).train
    cosines, errors = [], []
    for s in range(150):
        images, labels = train.images[s:s + 1], train.labels[s:s + 1]
        kept, _ = trainer.forward(images)
        grads, _ = gradients(trainer, images, labels)
        for i, (g, h) in grads.items():
            dw, db, s_in, s_out = _float64_gradient(trainer, i, kept[i], labels)
            count = group_values(trainer.model.description.layers[i].out_shape, trainer.model.n_classes)
            unit = 2 * s_out / (count * Q15)           # the rule's scale (edgeff/ops/conv2d/runtime.py)
            iw, ib = unit * s_in * g, unit * h
            # a confidently right sample (p_y near 1) has derivatives within the softmax's error bound of 0
            dg = loss_derivative(trainer._goodness(i, kept[i].out), labels, trainer.frac_bits)
            if np.abs(dg).max() < 2 * PROBABILITY_ERROR_BOUND * Q15:
                continue
            cosines.append((dw * iw).sum() / (np.linalg.norm(dw) * np.linalg.norm(iw)))
            errors.append(max(np.linalg.norm(iw - dw) / np.linalg.norm(dw),
                              np.linalg.norm(ib - db) / np.linalg.norm(db)))
    assert len(cosines) > 100
    assert min(cosines) > 0.99, min(cosines)
    assert np.median(errors) < 0.03 and np.percentile(errors, 95) < 0.15, (np.median(errors), max(errors))


def test_no_gradient_crosses_a_block_boundary(tiny):
    """FF is local: block 1's update does not depend on block 2, and block 2's is made from block 1's int8
    output alone."""
    int_path, data = tiny
    train = load_dataset(data, val_size=100).train
    images, labels = train.images[:8], train.labels[:8]
    trainer = _trainer(int_path)
    grads, _ = gradients(trainer, images, labels)
    other = _trainer(int_path)
    rng = np.random.default_rng(1)
    other.model.layers[1].weight[...] = rng.integers(-127, 128, other.model.layers[1].weight.shape)
    other.model.layers[1].bias[...] = rng.integers(-5000, 5000, other.model.layers[1].bias.shape)
    changed, _ = gradients(other, images, labels)
    assert not np.array_equal(changed[1][0], grads[1][0])          # block 2 did change
    for a, b in zip(changed[0], grads[0], strict=True):
        np.testing.assert_array_equal(a, b)                         # block 1's gradient did not
    model = trainer.model
    first = RUNTIME.forward(model.layers[0], model.quantize_images(images), -128, model.rounding)
    kept = RUNTIME.forward_kept(model.layers[1], first, model.layers[0].out_zero_point, model.rounding)
    alone = conv2d_training.gradient(model.layers[1], kept, loss_derivative(trainer._goodness(1, kept.out), labels, 12))
    for a, b in zip(alone, grads[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_stochastic_rounding_is_unbiased_over_seeds(tiny):
    int_path, _ = tiny
    base = IntLayeredModel.from_file(int_path)
    layer = base.layers[1]
    trainer = IntLayeredTrainer(base, IntTrainingConfig(lr_shift=12), 1)
    scales = trainer.scales[1]
    g = np.random.default_rng(2).integers(-(1 << 26), 1 << 26, (layer.weight.shape[0], layer.weight[0].size))
    h = np.random.default_rng(3).integers(-(1 << 20), 1 << 20, layer.bias.shape)
    exact = -g * scales.weight_multiplier[:, None] / 2.0 ** (12 + scales.weight_shift)
    assert 0.05 < np.abs(exact).mean() < 4, np.abs(exact).mean()   # steps of a few master units: rounding matters
    steps = []
    for seed in range(300):
        m0, b0 = RUNTIME.initial_masters(layer)
        m = m0.copy()
        conv2d_training.update(layer, m, b0.copy(), scales, g, h, 12, True, seed, 0)
        steps.append((m.astype(np.int64) - m0).reshape(len(m), -1))
    mean = np.mean(steps, axis=0)
    assert np.abs(mean - exact).max() < 4 * 0.5 / np.sqrt(300), np.abs(mean - exact).max()   # 4 sigma of U(0, 1)
    assert np.abs(np.round(exact) - exact).mean() > 0.1              # nearest rounding would be biased here


def _loss(model, images, labels, layers):
    """The float CwC cross-entropy of the int8 model's class goodness (real mean squares), summed over layers."""
    scores = model.label_scores(images) / 2.0 ** model.quant["goodness_frac_bits"]
    total = 0.0
    for l in layers:
        g = scores[l - 1]
        z = g - g.max(axis=1, keepdims=True)
        total += float((np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]).mean())
    return total


def test_one_integer_epoch_lowers_the_loss(tiny):
    int_path, data = tiny
    train = load_dataset(data, val_size=100).train
    trainer = _trainer(int_path, lr_shift=6)
    before = _loss(trainer.model, train.images, train.labels, [1, 2])
    for s in np.random.default_rng(0).permutation(len(train)):
        trainer.step(train.images[s:s + 1], train.labels[s:s + 1])
    after = _loss(trainer.model, train.images, train.labels, [1, 2])
    assert after < before, (before, after)


def test_finetune_last_k_from_the_command_line(tiny, tmp_path):
    int_path, data = tiny
    out = tmp_path / "ft.safetensors"
    res = run_cli("finetune", int_path, "--last-k", "1", "--epochs", "1", "--lr-shift", "6", "--out", out,
                  "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)   # one JSON document
    assert result["model"] == str(out) and result["history"][0]["trained_layers"] == [2]
    before, _ = load_model(int_path)
    after, header = load_model(out)
    for name in ("weight", "bias", "multiplier", "shift", "pad_value"):   # the frozen block: same bytes
        assert before[f"layers.0.{name}"].tobytes() == after[f"layers.0.{name}"].tobytes()
    assert "layers.0.weight_master" not in after and "layers.1.weight_master" in after
    assert not np.array_equal(before["layers.1.weight"], after["layers.1.weight"])
    assert header["int_training"]["config"]["last_k"] == 1
    res = run_cli("eval", out, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["arithmetic"] == "int8 (integer runtime)"
    # continuing from the written masters
    res = run_cli("finetune", out, "--last-k", "1", "--lr-shift", "6", "--out", tmp_path / "again.safetensors",
                  "--data-dir", data, "--samples", "20")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("k", ["0", "3", "-1"])
def test_a_bad_last_k_is_refused_in_one_line(tiny, tmp_path, k):
    int_path, data = tiny
    res = run_cli("finetune", int_path, "--last-k", k, "--lr-shift", "6", "--out", tmp_path / "x.safetensors",
                  "--data-dir", data)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert f"--last-k {k} must be from 1 to 2" in res.stderr
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """conv, maxpool2d, conv, flatten, dense: the dense layer is the last trainable one."""
    return _quantized(tmp_path_factory, "mixed", MIXED)


def test_a_dense_layer_among_the_last_k_is_refused(mixed, tmp_path):
    _, int_path, data, _ = mixed
    res = run_cli("finetune", int_path, "--last-k", "1", "--lr-shift", "6", "--out", tmp_path / "x.safetensors",
                  "--data-dir", data)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "layer 5 (dense) has no integer CwC update rule yet" in res.stderr


def test_last_k_on_an_mlp_is_refused(int_model, tmp_path):
    _, int_path, data = int_model
    res = run_cli("finetune", int_path, "--last-k", "1", "--out", tmp_path / "x.safetensors", "--data-dir", data)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--last-k takes a layered (conv) int8 model" in res.stderr


def test_resuming_with_more_blocks_keeps_the_trained_blocks_masters_and_the_step(tiny, tmp_path):
    """A file fine-tuned with --last-k 1, continued with --last-k 2: block 2 keeps its masters (their fractional
    bits), block 1 starts from its filters, and the step count goes on (fresh rounding noise)."""
    int_path, data = tiny
    out = tmp_path / "ft1.safetensors"
    res = run_cli("finetune", int_path, "--last-k", "1", "--lr-shift", "6", "--out", out, "--data-dir", data,
                  "--samples", "40")
    assert res.returncode == 0, res.stderr
    tensors, header = load_model(out)
    both = _trainer(out, last_k=2, lr_shift=6)
    assert both.step_count == header["int_training"]["step"] > 0
    assert np.array_equal(both.masters[1][0], tensors["layers.1.weight_master"])
    assert (both.masters[1][0] % 256 != 0).any()                      # fractional bits kept, not rebuilt
    assert (both.masters[0][0] % 256 == 0).all()                      # block 1: from its int8 filters


@pytest.mark.parametrize("field, value, message", [
    ("goodness_frac_bits", 4, "goodness_frac_bits 4 is not this runtime's 12"),
    ("rounding", "foo", "rounding 'foo' must be double or single"),
    ("eval_layers", [0], "eval_layers [0] must list layers from 1 to 2"),
    ("eval_layers", [9], "eval_layers [9] must list layers from 1 to 2"),
    ("eval_layers", [1, 1], "eval_layers [1, 1] must list layers from 1 to 2 in ascending order, each once"),
    ("head_layers", [2, 1], "head_layers [2, 1] must list layers from 1 to 2 in ascending order, each once"),
    ("n_classes", 3, "do not split into 3 class groups"),
])
def test_a_corrupted_decision_field_is_refused_by_name(tiny, field, value, message):
    tensors, header = load_model(tiny[0])
    section = header["quantization"] if field in ("goodness_frac_bits", "rounding") else header["architecture"]
    section[field] = value
    with pytest.raises(EdgeFFError, match=message.replace("[", "\\[").replace("]", "\\]")):
        IntLayeredModel.from_tensors(tensors, header, where="m")


@pytest.mark.parametrize("name, value", [("layers.0.weight", -128), ("layers.1.bias", np.iinfo(np.int32).min)])
def test_values_the_rules_masters_cannot_round_back_to_are_refused(tiny, name, value):
    """A filter value of -128 or a bias of -2^31 (never written by edgeff quantize) would not be the rounding of
    its own master, so a first step would move it without a gradient: refused at load, by name."""
    tensors, header = load_model(tiny[0])
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = value
    with pytest.raises(EdgeFFError, match="holds an int8 filter value of -128 or an int32 bias of -2\\^31"):
        IntLayeredModel.from_tensors(tensors, header, where="m")
