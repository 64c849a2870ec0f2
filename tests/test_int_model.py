import json

import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.model_file import load_model, save_model
from edgeff.runtime.goodness import goodness
from edgeff.runtime.int_model import IntFFModel
from tests.conftest import run_cli


def test_int8_accuracy_tracks_float(int_model):
    float_path, int_path, data = int_model
    f = json.loads(run_cli("eval", float_path, "--data-dir", data, "--json").stdout)
    q = json.loads(run_cli("eval", int_path, "--data-dir", data, "--json").stdout)
    assert q["arithmetic"].startswith("int8") and f["arithmetic"].startswith("float32")
    assert q["multi_pass"] > 0.8 and abs(q["multi_pass"] - f["multi_pass"]) <= 0.05
    assert abs(q["one_pass"] - f["one_pass"]) <= 0.1


def test_label_scores_shortcut_equals_one_pass_per_label(int_model):
    """The shared first-layer accumulation gives each label's separate pass, bit for bit; in one chunk or in
    many run on parallel threads (c_kernels.map_chunks)."""
    _, int_path, _ = int_model
    model = IntFFModel.from_file(int_path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 784), dtype=np.uint8)
    fast = model.label_scores(images)
    assert np.array_equal(model.label_scores(images, chunk=3), fast)
    for c in range(10):
        acts = model.activities(model.quantize_images(images, np.full(50, c)))
        for i, a in enumerate(acts):
            slow = model.scaled_goodness(i, goodness(a, model.layers[i].out_zero_point))
            assert np.array_equal(fast[i, :, c], slow)


def test_tensors_are_integers_with_valid_requantization(int_model):
    _, int_path, _ = int_model
    tensors, header = load_model(int_path)
    wide = header["quantization"]["layers"][0]["norm_bits"] == 15
    assert tensors["layers.0.weight"].dtype == np.int8
    assert tensors["layers.0.bias"].dtype == (np.int64 if wide else np.int32)
    assert np.all(tensors["layers.0.multiplier"] >= 1 << 30)
    assert header["architecture"]["kind"] == "ff-mlp-int8"
    assert header["quantization"]["label_q"] == 127


@pytest.mark.parametrize("name, value, message", [
    ("layers.1.weight", np.zeros((16, 31), np.int8), r"'layers.1.weight' is int8\[16, 31\], expected int8\[16, 32\]"),
    ("layers.0.bias", np.zeros(32, np.float32), r"'layers.0.bias' is float32\[32\], expected int(32|64)\[32\]"),
    ("layers.0.multiplier", np.full(32, 5, np.int32), "'layers.0.multiplier' holds an invalid quantized"),
    ("head.shift", np.full(10, 40, np.int32), "'head.multiplier' holds an invalid"),
])
def test_inconsistent_int_model_refused(int_model, tmp_path, name, value, message):
    _, int_path, _ = int_model
    tensors, header = load_model(int_path)
    bad = save_model(tmp_path / "bad.safetensors", {**tensors, name: value}, header)
    with pytest.raises(EdgeFFError, match=message):
        IntFFModel.from_file(bad)


def test_incomplete_int_header_refused(int_model, tmp_path):
    _, int_path, _ = int_model
    tensors, header = load_model(int_path)
    del header["quantization"]["layers"]
    bad = save_model(tmp_path / "bad.safetensors", tensors, header)
    with pytest.raises(EdgeFFError, match="int8 model header is incomplete .*'layers'"):
        IntFFModel.from_file(bad)


def test_float_model_is_not_an_int_model(int_model):
    float_path, _, _ = int_model
    with pytest.raises(EdgeFFError, match="not an int8 FF model.*edgeff quantize"):
        IntFFModel.from_file(float_path)


@pytest.mark.parametrize("images, message", [
    (np.zeros((3, 783), np.uint8), r"must be uint8 of shape \(N, 784\); got uint8 \[3, 783\]"),
    (np.zeros((3, 784), np.float32), r"got float32 \[3, 784\]"),
])
def test_bad_input_data_refused(int_model, images, message):
    model = IntFFModel.from_file(int_model[1])
    with pytest.raises(EdgeFFError, match=message):
        model.label_scores(images)


def test_runtime_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys; import edgeff.runtime.int_model, edgeff.runtime.fully_connected; "
            "assert 'torch' not in sys.modules, 'the runtime imported torch'")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_finetune_and_memory_plan_commands(int_model, tmp_path):
    float_path, int_path, data = int_model
    out = tmp_path / "tuned.safetensors"
    res = run_cli("finetune", int_path, "--out", out, "--data-dir", data, "--samples", "100", "--lr-shift", "16",
                  "--json")
    assert res.returncode == 0, res.stderr
    history = json.loads(res.stdout)["history"]
    assert history[0]["samples"] == 100 and 0 <= history[0]["val_multi_pass"] <= 1
    tensors, header = load_model(out)
    assert tensors["layers.0.weight_master"].dtype == np.int16 and header["int_training"]["step"] == 100
    res = run_cli("finetune", out, "--out", tmp_path / "again.safetensors", "--data-dir", data, "--samples", "10")
    assert res.returncode == 0, res.stderr
    res = run_cli("finetune", float_path, "--out", tmp_path / "x.safetensors", "--data-dir", data)
    assert res.returncode == 2 and "make one with `edgeff quantize" in res.stderr
    plan = json.loads(run_cli("memory-plan", out, "--json").stdout)
    sizes = {b["name"]: b["bytes"] for b in plan["buffers"]}
    assert sizes["layer 1 weights int8"] == 32 * 784 and sizes["layer 1 master weights int16"] == 2 * 32 * 784
    assert plan["sram_bytes"] == sum(b["bytes"] for b in plan["buffers"] if b["region"] == "sram")


def test_from_scratch_keeps_formats_and_replaces_weights(int_model, tmp_path):
    float_path, int_path, data = int_model
    scratch = tmp_path / "scratch.safetensors"
    bits = load_model(int_path)[1]["quantization"]["layers"][0]["norm_bits"]
    res = run_cli("quantize", float_path, "--out", scratch, "--data-dir", data, "--from-scratch", "1",
                  "--calibration-samples", "300", "--norm-bits", bits)
    assert res.returncode == 0, res.stderr
    a, ha = load_model(int_path)
    b, hb = load_model(scratch)
    assert np.array_equal(a["layers.0.multiplier"], b["layers.0.multiplier"])
    assert ha["quantization"]["layers"] == hb["quantization"]["layers"]
    assert not np.array_equal(a["layers.0.weight"], b["layers.0.weight"])
    assert not b["layers.0.bias"].any() and hb["quantization"]["weights"].startswith("fresh random init")


def test_length_normalized_model_quantizes_consistently(float_model, tmp_path):
    """Unit-length normalization with weights W * sqrt(D) is the same function as RMS normalization
    with W: quantizing either must give the same int8 model (the fold is sqrt(D) for one, 1 for the other)."""
    import math

    import torch

    from edgeff.model_description import ModelDescription
    from edgeff.train.model_io import load_network, save_network
    from edgeff.train.network import FFNetwork
    float_path, data_dir = float_model
    rms, header = load_network(float_path)
    net = FFNetwork(ModelDescription.dense(rms.sizes, "length"), rms.n_classes, rms.label_value, rms.goodness_kind,
                    rms.collab_mode, head_layers=rms.head_layers)
    net.load_state_dict(rms.state_dict())
    with torch.no_grad():
        for i, layer in enumerate(net.layers):
            layer.weight *= math.sqrt(net.sizes[i])
        col = 0
        for l in net.head_layers:
            net.head.weight[:, col:col + net.sizes[l]] *= math.sqrt(net.sizes[l])
            col += net.sizes[l]
    length_path = save_network(tmp_path / "length.safetensors", net, [1, 2], data=header["data"])
    paths = {}
    for name, src in (("rms", float_path), ("length", length_path)):
        paths[name] = tmp_path / f"{name}-int8.safetensors"
        assert run_cli("quantize", src, "--out", paths[name], "--data-dir", data_dir).returncode == 0
    a, b = load_model(paths["rms"])[0], load_model(paths["length"])[0]
    for name in ("layers.0.weight", "layers.1.weight", "head.weight"):
        diff = np.abs(a[name].astype(int) - b[name].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.001, name   # float rounding of the fold only
    for i in range(2):  # per-channel weights hide a wrong fold; the rescale multipliers do not
        real = [t[f"layers.{i}.multiplier"] * 2.0 ** t[f"layers.{i}.shift"].astype(float) for t in (a, b)]
        assert np.allclose(real[0], real[1], rtol=1e-5)


def test_calibration_percentile_narrows_the_activation_range(float_model, tmp_path):
    float_path, data = float_model
    scales = {}
    for p in ("100", "99"):
        out = tmp_path / f"p{p}.safetensors"
        res = run_cli("quantize", float_path, "--out", out, "--data-dir", data, "--calibration-percentile", p, "--json")
        assert res.returncode == 0, res.stderr
        scales[p] = [layer["out_scale"] for layer in json.loads(res.stdout)["layers"]]
    assert all(a < b for a, b in zip(scales["99"], scales["100"], strict=True))
    res = run_cli("quantize", float_path, "--out", tmp_path / "x.safetensors", "--data-dir", data,
                  "--calibration-percentile", "10")
    assert res.returncode == 2 and "between 50 and 100" in res.stderr
