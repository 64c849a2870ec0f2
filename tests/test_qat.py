"""Quantization-aware training with Brevitas: the int8 model file holds exactly the integers the QAT
layers trained with, the integer runtime agrees with Brevitas' forward, and Brevitas' QCDQ ONNX export
runs in onnxruntime with Brevitas' values."""
import numpy as np
import pytest
import torch

from edgeff.data.datasets import load_dataset
from edgeff.export.verify import verify
from edgeff.export.write import export_model
from edgeff.runtime.int_model import IntFFModel, evaluate_int
from edgeff.train.evaluate import evaluate
from edgeff.train.model_io import load_network
from tests.conftest import TINY_CONFIG, run_cli, train_tiny


@pytest.fixture(scope="module")
def qat_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    float_path, data = train_tiny(root, TINY_CONFIG.format(mode="none", epochs=3, negatives="random",
                                                           sizes=[784, 32, 16])
                                  .replace("[model]\n", "[model]\nqat = true\n"))
    int_path = root / "int8.safetensors"
    res = run_cli("quantize", float_path, "--out", int_path, "--data-dir", data)
    assert res.returncode == 0, res.stderr
    return float_path, int_path, data


def test_int8_model_holds_the_qat_integers(qat_model):
    qat_path, int_path, _ = qat_model
    net, header = load_network(qat_path)
    assert header["architecture"]["qat"] and net.qat
    model = IntFFModel.from_file(int_path)
    for layer, q in zip(net.layers, model.layers, strict=True):
        weight = layer.quant_weight()
        assert np.array_equal(q.weight, weight.int().numpy().astype(np.int8))
        input_scale = layer.input_quant.scale().item()      # sqrt(D)/128: the runtime's 1/128 on unit vectors
        want_bias = torch.round(layer.bias / (input_scale * weight.scale.flatten())).detach().numpy()
        assert np.array_equal(q.bias, want_bias.astype(np.int32))      # Brevitas' Int32Bias
    scales = [layer["out_scale"] for layer in model.quant["layers"]]
    assert scales == pytest.approx([layer.output_scale() for layer in net.layers], rel=1e-7)


def test_runtime_agrees_with_brevitas(qat_model):
    qat_path, int_path, data_dir = qat_model
    data = load_dataset(data_dir, val_size=100)
    net, header = load_network(qat_path)
    layers = header["architecture"]["eval_layers"]
    brevitas = evaluate(net, data.test.images, data.test.labels, layers, "multi")
    runtime = evaluate_int(IntFFModel.from_file(int_path), data.test.images, data.test.labels, layers, "multi")
    assert brevitas["multi_pass"] > 0.5
    assert abs(runtime["multi_pass"] - brevitas["multi_pass"]) <= 0.03


def test_qcdq_export_runs_brevitas_arithmetic_in_onnxruntime(qat_model, tmp_path):
    qat_path, _, data_dir = qat_model
    out = tmp_path / "qcdq.onnx"
    written = export_model(qat_path, "onnx", out)
    assert "QCDQ" in written["what"]
    import onnx

    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and onnx.load(out).ir_version <= 13
    test = load_dataset(data_dir, val_size=100).test
    rows = {r["runtime"]: r for r in verify(qat_path, out, test.images, test.labels)["rows"]}
    basic = rows["onnxruntime, basic optimizations (no QDQ fusion)"]
    assert basic["goodness_max_rel_diff"] <= 1e-5 and basic["logits_max_rel_diff"] <= 1e-5
    assert basic["multi_pass_agreement"] == 1.0 and basic["one_pass_agreement"] == 1.0


def test_qat_must_be_a_boolean(tmp_path, tiny_data):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(TINY_CONFIG.format(mode="none", epochs=1, negatives="random", sizes=[784, 8])
                   .replace("[model]\n", "[model]\nqat = 1\n"))
    res = run_cli("train", cfg, "--data-dir", tiny_data, "--out", tmp_path / "run", "--json")
    assert res.returncode == 2 and "'qat' must be bool" in res.stderr, res.stderr
    assert not (tmp_path / "run/model.safetensors").exists()
