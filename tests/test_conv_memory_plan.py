"""The memory plan of integer training of a layered int8 conv model (edgeff.runtime.memory_plan.layered_training_plan):
its buffers are the arrays the integer trainer allocates, FF against backprop of the same blocks, and the command
line (`edgeff memory-plan --last-k --board`, `edgeff profile`), on the tiny two-block model of
tests/test_conv_training.py, quantized with each padding."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

import edgeff
from edgeff.data.datasets import load_dataset
from edgeff.op_registry import facet
from edgeff.runtime.cwc_loss import loss_derivative
from edgeff.runtime.int_layered_training import load_layered_trainer
from edgeff.runtime.int_training import IntTrainingConfig
from edgeff.runtime.memory_plan import layered_training_plan, plan_summary
from tests.conftest import run_cli, train_tiny
from tests.test_conv_ptq import CONFIG, PADDED
from tests.test_conv_training import gradients

RUNTIME = facet("conv2d", "runtime")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The two padded pooled blocks quantized with batchnorm padding (explicitly padded inputs) and with the zero
    point's (the kernel pads): (batchnorm int8 path, zero-point int8 path, float path, data dir)."""
    root = tmp_path_factory.mktemp("convplan")
    layers, eval_layers = PADDED
    float_path, data = train_tiny(root, CONFIG.format(layers=layers, eval_layers=eval_layers), n_train=300,
                                  n_test=50, side=14)
    paths = []
    for padding in ("batchnorm", "zero-point"):
        path = root / f"int8-{padding}.safetensors"
        res = run_cli("quantize", float_path, "--out", path, "--data-dir", data, "--conv-padding", padding)
        assert res.returncode == 0, res.stderr
        paths.append(path)
    return *paths, float_path, data


def _trainer(path, last_k):
    return load_layered_trainer(path, IntTrainingConfig(lr_shift=8), last_k)


def _by_name(plan):
    return {b.name: b for b in plan}


def _activities(trainer, image):
    """Every layer's forward, kept as a trained block keeps it: {layer: Kept} (0-based)."""
    model, q, zp, out = trainer.model, trainer.model.quantize_images(image), -128, {}
    for i, layer in enumerate(model.layers):
        out[i] = RUNTIME.forward_kept(layer, q, zp, model.rounding)
        q, zp = out[i].out, layer.out_zero_point
    return out


def _user_bytes(label: str, every: dict, n: int) -> int:
    """Bytes the runtime's arrays take for one of a buffer's users ("layer 2 input", "layer 2 output")."""
    m = int(re.fullmatch(r"layer (\d+) (input|output)", label).group(1)) - 1
    return (every[m].input if label.endswith("input") else every[m].out)[0].nbytes


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("last_k", [1, 2])
def test_the_ff_plan_is_the_arrays_the_trainer_allocates(tiny, padding, last_k):
    trainer = _trainer(tiny[padding], last_k)
    model = trainer.model
    images = load_dataset(tiny[3], val_size=100).train.images[:1]
    plan = layered_training_plan(model, trainer.trained, "ff")
    named = _by_name(plan)
    kept, goodness = trainer.forward(images)
    every = _activities(trainer, images)
    for i, layer in enumerate(model.layers):
        p = f"layer {i + 1} "
        tensors = RUNTIME.tensors(layer, i)
        region = "sram" if i in trainer.trained else "flash"
        for name, array in ((p + "filters int8", layer.weight), (p + "bias int32", layer.bias),
                            (p + "pad values", layer.pad_value)):
            assert (named[name].dtype, named[name].shape, named[name].region) == \
                (str(array.dtype), array.shape, region if "pad" not in name else "flash"), name
        mult = tensors[f"layers.{i}.multiplier"].nbytes + tensors[f"layers.{i}.shift"].nbytes
        assert named[p + "multiplier + shift"].bytes == mult
        if i in trainer.trained:
            weight_master, bias_master = trainer.masters[i]
            for name, array in ((p + "filter masters int16", weight_master), (p + "bias masters int64", bias_master)):
                assert (named[name].dtype, named[name].shape, named[name].region) == \
                    (str(array.dtype), array.shape, "sram"), name
            scales = trainer.scales[i]
            assert named[p + "step multipliers (filter, bias)"].bytes == \
                scales.weight_multiplier.nbytes + scales.bias_multiplier.nbytes
        else:
            assert p + "filter masters int16" not in named and p + "bias masters int64" not in named
    # activations: each buffer holds the largest of the arrays that take turns in it, each trained block's named
    n = len(model.layers)
    users = {}
    for b in plan:
        match = re.fullmatch(r"(activations (?:ping|pong)|pre-pool output of one block) \((.*)\)", b.name)
        if match:
            labels = match.group(2).split(", ")
            arrays = [every[int(lab.split()[1]) - 1].conv[0].nbytes if match.group(1).startswith("pre-pool")
                      else _user_bytes(lab, every, n) for lab in labels]
            assert b.bytes == max(arrays), b.name
            users.update(dict.fromkeys(f"{match.group(1).split()[0]} {lab}" for lab in labels))
    # the image, quantized in place, is the first input unless the first block pads it explicitly
    padded_image = every[0].input.shape[1:3] != (14, 14)
    assert ("activations layer 1 input" in users) == padded_image
    assert named["input image"].shape == (14, 14, 1)
    for i in trainer.trained:
        assert f"pre-pool layer {i + 1}" in users
        assert f"activations layer {i + 1} input" in users or (i == 0 and not padded_image)
        assert kept[i].input.nbytes == _user_bytes(f"layer {i + 1} input", every, n)
    assert f"activations layer {n} output" in users
    labels = np.zeros(1, np.int64)
    for i in trainer.trained:
        assert named["class goodness"].shape == goodness[i].shape[1:]
        assert named["dL/dG Q15"].shape == loss_derivative(goodness[i], labels, trainer.frac_bits).shape[1:]
    grads, _ = gradients(trainer, images, labels)
    assert named["filter row gradient sums"].shape == (max(g.shape[1] for g, _ in grads.values()),)
    assert named["convolution scratch (Cortex-M DSP path)"].bytes == max(
        RUNTIME.dsp_scratch_bytes(spec) for spec in model.description.layers)


def test_the_dsp_scratch_is_the_kernels_formula():
    """ef_conv2d_s8_scratch_bytes (edgeff/csrc/kernels/conv2d.c, part_sizes) by hand: the board model's blocks."""
    spec = facet("conv2d", "spec").SPEC
    block1 = spec(1, 28, 28, 20, 3, padding=1, pool=2)     # row4 4 > 3: the widened filter is in the scratch
    assert RUNTIME.dsp_scratch_bytes(block1) == 20 * 32 + 4 * 12 * 2 + 4 * 20 * 4 + 96 + 20 * 12 * 2
    block3 = spec(40, 7, 7, 40, 3, padding=1, pool=2)      # row4 120 = 3 * 40: the filter is read in place
    assert RUNTIME.dsp_scratch_bytes(block3) == 40 * 32 + 4 * 360 * 2 + 4 * 40 * 4 + 1080


def test_backprop_keeps_every_trained_blocks_tensors_and_ff_one_blocks(tiny):
    trainer = _trainer(tiny[0], 2)
    images = load_dataset(tiny[3], val_size=100).train.images[:1]
    every = _activities(trainer, images)
    ff = _by_name(layered_training_plan(trainer.model, trainer.trained, "ff"))
    bp = _by_name(layered_training_plan(trainer.model, trainer.trained, "backprop"))
    for i in trainer.trained:
        assert bp[f"layer {i + 1} input (kept)"].bytes == every[i].input[0].nbytes
        assert bp[f"layer {i + 1} pre-pool output (kept)"].shape == every[i].conv.shape[1:]
    assert bp["layer 2 output (kept)"].shape == every[1].out.shape[1:]
    # the error maps: dL/d of every trained block's output, and of its input above the first trained block
    errors = {n: b for n, b in bp.items() if n.startswith("error map")}
    assert sum(b.bytes for b in errors.values()) == 4 * (every[1].out[0].size + every[0].out[0].size)
    d = every[1].out[0].size
    assert bp["classifier master weights int16"].shape == (10, d)
    assert "class goodness" not in bp and "classifier logits" not in ff
    # the parameters are the same on both sides: only what each keeps for its update differs
    same = [n for n in ff if n.startswith("layer") and "(kept)" not in n]
    assert all(bp[n] == ff[n] for n in same)
    ff_sum, bp_sum = (plan_summary(list(p.values())) for p in (ff, bp))
    kept = sum(b.bytes for n, b in bp.items() if "(kept)" in n or n.startswith(("error map", "classifier")))
    assert bp_sum["sram_bytes"] > ff_sum["sram_bytes"]
    assert bp_sum["sram_bytes"] - kept < ff_sum["sram_bytes"]


def test_memory_plan_and_profile_from_the_command_line(tiny, tmp_path):
    path = tiny[0]
    res = run_cli("memory-plan", path, "--last-k", "1", "--board", "nrf52840", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    trainer = _trainer(path, 1)
    assert doc["trained_layers"] == [2]
    for method in ("ff", "backprop"):
        plan = plan_summary(layered_training_plan(trainer.model, trainer.trained, method))
        assert doc[method]["sram_bytes"] == plan["sram_bytes"] == sum(
            b["bytes"] for b in doc[method]["buffers"] if b["region"] == "sram")
        assert doc[method]["fit"]["fits"] is True
    text = run_cli("memory-plan", path, "--last-k", "1").stdout
    assert f"SRAM {doc['ff']['sram_bytes']} bytes" in text and "backprop / FF: SRAM" in text
    assert "layer 2 filter masters int16" in text and "layer 1 filter masters" not in text
    prof = run_cli("profile", path, "--board", "nrf52840", "--no-emulate", "--out", tmp_path / "p", "--json")
    assert prof.returncode == 0, prof.stderr
    rows = json.loads(prof.stdout)["fit"]["last_k"]
    assert [r["k"] for r in rows] == [1, 2]
    assert (rows[0]["ff"]["sram_bytes"], rows[0]["backprop"]["sram_bytes"]) == \
        (doc["ff"]["sram_bytes"], doc["backprop"]["sram_bytes"])


def test_a_model_too_large_for_a_board_is_reported_as_not_fitting(tiny, tmp_path):
    text = (Path(edgeff.__file__).parent / "hw_profiles" / "nrf52840.toml").read_text()
    small = tmp_path / "small.toml"
    # 16 KiB of SRAM, 8 KiB of it the firmware's: the tiny model's plan needs more
    small.write_text(re.sub(r"(\[sram_bytes\]\nvalue = )[\d_]+", r"\g<1>16_384",
                            re.sub(r"(\[sram_reserved_bytes\]\nvalue = )[\d_]+", r"\g<1>8_192", text)))
    res = run_cli("memory-plan", tiny[0], "--board", small, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ff"]["fit"]["sram_budget_bytes"] == 8192
    assert doc["ff"]["sram_bytes"] > 8192 and doc["ff"]["fit"]["fits"] is False
    text = run_cli("memory-plan", tiny[0], "--board", small).stdout
    assert "DOES NOT FIT" in text
    prof = run_cli("profile", tiny[0], "--board", small, "--no-emulate", "--out", tmp_path / "p")
    assert prof.returncode == 0, prof.stderr
    assert re.search(r"last 2, FF .* DOES NOT FIT", prof.stdout)


def _refused(res, message):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr, res.stderr


def test_bad_input_is_refused_in_one_line(tiny, int_model):
    _refused(run_cli("memory-plan", tiny[0], "--last-k", "3"), "--last-k 3 must be from 1 to 2")
    _refused(run_cli("memory-plan", tiny[2]), "quantize it first")
    _refused(run_cli("memory-plan", int_model[1], "--last-k", "1"), "an MLP trains every layer")
    _refused(run_cli("memory-plan", tiny[0], "--board", "no-such-board"), "no-such-board")
