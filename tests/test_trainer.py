import json
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from edgeff.data.datasets import load_dataset
from edgeff.model_file import load_model
from edgeff.train import trainer
from edgeff.train.config import load_config
from tests.conftest import run_cli


def assert_png(path, min_side=200):
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side
    assert img.std() > 0  # something was drawn


def test_train_then_eval_end_to_end(tiny_data, tiny_config, tmp_path):
    out = tmp_path / "run"
    res = run_cli("train", tiny_config(mode="adaptive", epochs=4), "--data-dir", tiny_data, "--out", out, "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["val"]["multi_pass"] > 0.8 and metrics["epochs_run"] == 4
    assert (out / "metrics.json").is_file() and (out / "model.safetensors").is_file()
    for png in ("layer_accuracy.png", "gamma.png"):
        assert_png(out / png)
    res = run_cli("eval", out / "model.safetensors", "--data-dir", tiny_data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["split"] == "test" and result["n_samples"] == 200
    assert result["multi_pass"] > 0.8 and 0.0 <= result["one_pass"] <= 1.0
    assert len(result["per_layer"]) == 2
    res = run_cli("eval", out / "model.safetensors", "--data-dir", tiny_data, "--mode", "multi",
                  "--layers", "2")
    assert res.returncode == 0 and "goodness of layers [2]" in res.stdout


def test_cli_errors_are_one_clear_line(tiny_data, tmp_path):
    res = run_cli("train", "no-such-config", "--data-dir", tiny_data)
    assert res.returncode == 2 and "no config file 'no-such-config'" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("eval", tmp_path / "missing.safetensors", "--data-dir", tiny_data)
    assert res.returncode == 2 and "no such model file" in res.stderr
    res = run_cli("train", "ff-784-500-500-paper", "--data-dir", tmp_path / "none")
    assert res.returncode == 2 and "apt-get install dataset-fashion-mnist" in res.stderr


def _weights(path):
    tensors, _ = load_model(path)
    return tensors


def test_resume_after_interrupt_is_bit_identical(tiny_data, tiny_config, tmp_path, monkeypatch):
    cfg = load_config(tiny_config(mode="adaptive", epochs=4, negatives="hard"))
    data = load_dataset(tiny_data, val_size=cfg.train.val_size)
    trainer.train(cfg, data, tmp_path / "clean", quiet=True)

    real_save = trainer.save_checkpoint

    def save_then_die(path, net, opt, header):
        real_save(path, net, opt, header)
        if header["epoch"] == 2:
            raise KeyboardInterrupt  # Ctrl-C right after the epoch-2 checkpoint

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg, data, tmp_path / "interrupted", quiet=True)
    assert not (tmp_path / "interrupted" / "model.safetensors").exists()
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    metrics = trainer.train(cfg, data, tmp_path / "interrupted", quiet=True)
    assert metrics["epochs_run"] == 4
    clean, resumed = _weights(tmp_path / "clean/model.safetensors"), _weights(metrics["model_file"])
    for name in clean:
        assert np.array_equal(clean[name], resumed[name]), name


def test_resume_refuses_a_different_config(tiny_data, tiny_config, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", tiny_config(epochs=1), "--data-dir", tiny_data, "--out", out, "--quiet").returncode == 0
    res = run_cli("train", tiny_config(epochs=2), "--data-dir", tiny_data, "--out", out)
    assert res.returncode == 2 and "different config; pass --fresh" in res.stderr
    res = run_cli("train", tiny_config(epochs=2), "--data-dir", tiny_data, "--out", out, "--fresh", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["epochs_run"] == 2


@pytest.mark.parametrize("mode", ["none", "fixed", "adaptive"])
def test_gamma_moves_only_under_a_cff(tiny_data, tiny_config, tmp_path, mode):
    cfg = load_config(tiny_config(mode=mode, epochs=2))
    metrics = trainer.train(cfg, load_dataset(tiny_data, val_size=100), tmp_path, quiet=True)
    gammas = np.array([h["gamma"] for h in metrics["history"]])
    if mode == "adaptive":
        assert np.abs(gammas[-1] - 1.0).max() > 1e-3
    else:
        assert np.all(gammas == (1.0 if mode == "fixed" else 0.0))


def test_paper_protocol_trains_one_layer_at_a_time(tiny_data, tiny_config, tmp_path, monkeypatch):
    cfg = load_config(tiny_config(mode="fixed", epochs=2))
    cfg.train.protocol, cfg.train.batch_size, cfg.train.lr_schedule = "paper", 0, "constant"
    data = load_dataset(tiny_data, val_size=100)
    torch.manual_seed(cfg.train.seed)  # train() seeds the same way: these are its initial weights
    init = trainer.build_network(cfg, 10).state_dict()
    seen = {}
    real_save = trainer.save_checkpoint

    def record(path, net, opt, header):
        seen[header["epoch"]] = {k: v.clone() for k, v in net.state_dict().items()}
        real_save(path, net, opt, header)

    monkeypatch.setattr(trainer, "save_checkpoint", record)
    metrics = trainer.train(cfg, data, tmp_path, quiet=True)
    assert [h["trained_layers"] for h in metrics["history"]] == [[1], [1], [2], [2]]
    # full batch: one step per epoch; during layer 1's phase layer 2 keeps its initial weights
    assert not torch.equal(seen[2]["layers.0.weight"], init["layers.0.weight"])
    assert torch.equal(seen[2]["layers.1.weight"], init["layers.1.weight"])
    assert torch.equal(seen[4]["layers.0.weight"], seen[2]["layers.0.weight"])
    assert not torch.equal(seen[4]["layers.1.weight"], init["layers.1.weight"])


def test_pipeline_writes_a_report(tiny_data, tiny_config, tmp_path):
    out = tmp_path / "report"
    res = run_cli("pipeline", "--config", tiny_config(), "--data-dir", tiny_data, "--out", out,
                  "--board-samples", 40, "--val-fraction", 0.25)
    assert res.returncode == 0, res.stderr
    assert "== [1/6] training tiny" in res.stderr and "== [6/6] writing" in res.stderr   # where a long run is
    result = json.loads((out / "pipeline.json").read_text())
    report = (out / "report.md").read_text()
    assert result["data"]["n_val"] == 150   # --val-fraction 0.25 of the 600 training images, over the config's 100
    assert "| multi-pass" in report and "layer_accuracy.png" in report
    assert result["test"]["n_samples"] == 200 and result["test"]["multi_pass"] > 0.8
    assert abs(result["test_int8"]["multi_pass"] - result["test"]["multi_pass"]) < 0.05
    assert "## Integer runtime" in report and (out / "model-int8.safetensors").is_file()
    assert result["training_memory_bytes"]["sram"] > 32 * 784  # at least the first layer's weights
    assert_png(out / "layer_accuracy.png")
    assert "## Profile on nrf52840" in report and "profile-nrf52840-memory.png" in report
    assert_png(out / "profile-nrf52840-energy.png")
    assert result["profile"]["memory"]["ff_int8"]["peak_bytes"] == \
        result["training_memory_bytes"]["sram"] + result["training_memory_bytes"]["flash"]
    exports = result["exports"]
    assert "## Exports" in report and "| LiteRT reference kernels |" in report
    assert exports["int8 ONNX"]["verify"]["rows"][0]["goodness_differing"] == 0
    assert exports["float ONNX"]["verify"]["rows"][0]["goodness_max_rel_diff"] <= 1e-5
    assert (out / "model-int8.tflite").is_file() and (out / "model-int8.h").is_file()
    # every export passes in TFLM too, and the report names the model file each came from
    for name in ("int8 TFLite", "int8 C header (TFLite)"):
        rows = {r["runtime"]: r for r in exports[name]["verify"]["rows"]}
        assert rows["TensorFlow Lite Micro"]["goodness_differing"] == 0 and rows["TensorFlow Lite Micro"]["pass"]
        source = Path(exports[name]["model"]).name
        assert f"`{Path(exports[name]['file']).name}` (" in report and f"from `{source}`, whose test" in report
    assert all(e["verify"]["verdict"] == "pass" for e in exports.values())
    assert "| TensorFlow Lite Micro | 0 |" in report
    on_device = result["on_device"]
    board = ("the EdgeFF firmware on an emulated Cortex-M4" if shutil.which("qemu-system-arm") and
             shutil.which("arm-none-eabi-gcc") else "a virtual board with the nrf52840 profile")
    assert f"## On-device training ({board}" in report and on_device["runtime_identical"]
    assert on_device["samples"] == 40 and on_device["inference_agreeing"] == on_device["inference_checked"] == 20
    trained = load_model(out / "on-device/board-trained-int8.safetensors")[1]
    assert trained["int_training"]["step"] == 40 and trained["architecture"]["sizes"] == [784, 64, 32]


def test_a_flat_accuracy_curve_has_no_correlation_with_the_model():
    # 0.1058 twenty times: its std comes out 2.8e-17, not 0, and corrcoef would then correlate rounding noise
    model = np.linspace(0.2, 0.5, 20)
    history = [{"val_model": float(m), "val_per_layer": [0.1058, float(2 * m)]} for m in model]
    flat, rising = trainer.layer_model_correlation(history)
    assert flat is None and rising == pytest.approx(1.0)
    flat_model = [{"val_model": 0.1058, "val_per_layer": [0.1 * k, 0.2]} for k in range(20)]
    assert trainer.layer_model_correlation(flat_model) == [None, None]
