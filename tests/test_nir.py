"""The NIR export (edgeff/export/nir_graph.py, the dense layer's nir_writer facet) and EdgeFF's NIR simulator
(edgeff/export/nir_simulator.py): round trip through nir.write / nir.read, a hand-computed IF trace, the spiking
network agreeing with the ANN, and the CLI's refusals."""
import io
import json

import numpy as np
import pytest

from edgeff.data.datasets import load_dataset
from edgeff.export import nir_graph
from edgeff.export.nir_simulator import Simulator
from tests.conftest import TINY_CONFIG, run_cli, train_tiny

nir = pytest.importorskip("nir")


@pytest.fixture(scope="module")
def float_model(tmp_path_factory):
    """A tiny plain-FF float model whose one-pass head is trained long enough to predict most classes (the
    conftest's, 3 head epochs, guesses one class for 70 % of the images): (float path, data dir)."""
    return train_tiny(tmp_path_factory.mktemp("nir-model"),
                      TINY_CONFIG.format(mode="none", epochs=3, negatives="random", sizes=[784, 32, 16])
                      .replace("head_epochs = 3", "head_epochs = 30"))


@pytest.fixture(scope="module")
def exported(float_model, tmp_path_factory):
    """(float model, its .nir file, data dir): the tiny model exported by the CLI."""
    float_path, data = float_model
    out = tmp_path_factory.mktemp("nir") / "tiny.nir"
    res = run_cli("export", float_path, "--format", "nir", "--out", out, "--data-dir", data)
    assert res.returncode == 0, res.stderr
    return float_path, out, data


def _arrays(graph) -> dict:
    return {(name, field): np.asarray(getattr(node, field)) for name, node in graph.nodes.items()
            for field in ("weight", "bias", "r", "v_threshold", "v_reset") if hasattr(node, field)}


def test_round_trip_keeps_weights_and_thresholds_exactly(exported):
    float_path, path, data = exported
    model = nir_graph.FloatModel(float_path)
    train = load_dataset(data).train.images
    graph = nir_graph.convert(model, train[:2000])   # what the CLI calibrated on
    back = nir.read(str(path))
    assert back.edges == graph.edges and set(back.nodes) == set(graph.nodes)
    arrays, read = _arrays(graph), _arrays(back)
    assert set(arrays) == set(read) and len(arrays) == 12   # 3 Affine (weight, bias), 2 IF (r, threshold, reset)
    for key, value in arrays.items():
        assert read[key].dtype == value.dtype and np.array_equal(read[key], value), key
    settings = json.loads(nir_graph.metadata_text(back, nir_graph.CONVERSION_KEY))
    assert settings["percentile"] == 99.9 and settings["calibration_images"] == min(2000, len(train))
    layer2 = settings["layers"][1]
    # the second Affine: the ANN's weights times the folded normalization and the first population's threshold
    expected = (model.params[1][0] * (layer2["normalization_scale"] * settings["layers"][0]["threshold"]))
    assert np.array_equal(read[("layer2_affine", "weight")], expected.astype(np.float32))
    assert np.all(read[("layer2_if", "v_threshold")] == np.float32(layer2["threshold"]))


def _hand_graph():
    """Input (1) -> Affine 1 -> 2 IF neurons -> Affine -> Output, written and read back as a file."""
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1])}),
        "syn": nir.Affine(weight=np.array([[1.0], [1.0]], np.float32), bias=np.zeros(2, np.float32)),
        "if": nir.IF(r=np.array([1.0, 2.0], np.float32), v_threshold=np.ones(2, np.float32),
                     v_reset=np.array([0.0, -0.25], np.float32)),
        "out_syn": nir.Affine(weight=np.array([[2.0, 0.0]], np.float32), bias=np.array([0.5], np.float32)),
        "output": nir.Output(output_type={"output": np.array([1])})},
        edges=[("input", "syn"), ("syn", "if"), ("if", "out_syn"), ("out_syn", "output")])
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    buffer.seek(0)
    return nir.read(buffer)


def test_simulator_follows_the_if_rule_step_by_step():
    sim = Simulator(_hand_graph())
    steps = list(range(1, 12))
    # current 0.375 every step. Neuron 1 (r 1): v 0.375, 0.75, 1.125 > 1 fires at 3, 6, 9 under NIR's reset to 0;
    # by subtraction 1.125 -> 0.125, 0.5, 0.875, 1.25 fires at 6 -> 0.25, 0.625, 1.0 (not > 1), 1.375 at 9, then
    # 0.375, 0.75, 1.125 at 11. Neuron 2 (r 2, v_reset -0.25): 0.75, 1.5 fires at 2 -> -0.25, 0.5, 1.25 at 4 ...;
    # by subtraction (v_reset unused): 0.75, 1.5 at 2 -> 0.5, 1.25 at 3 -> 0.25, 1.0 (no), 1.75 at 5 -> 0.75 ...
    expected = {"nir": ([3, 6, 9], [2, 4, 6, 8, 10]), "subtract": ([3, 6, 9, 11], [2, 3, 5, 6, 7, 9, 10, 11])}
    for reset, (first, second) in expected.items():
        result = sim.run(np.array([[0.375]]), steps, reset, keep_counts=True)
        counts = np.array([result[t]["spike_counts"]["if"][0] for t in steps])
        assert list(np.flatnonzero(np.diff(counts[:, 0], prepend=0)) + 1) == first, reset
        assert list(np.flatnonzero(np.diff(counts[:, 1], prepend=0)) + 1) == second, reset
        for t in steps:   # the Output: (2 x spikes of neuron 1 + 0.5 every step) summed, over T
            assert result[t]["outputs"]["output"][0, 0] == pytest.approx((2 * counts[t - 1, 0] + 0.5 * t) / t)
            assert result[t]["synaptic_ops"][0] == counts[t - 1, 0]   # neuron 2 has no synapse (weight 0)


def test_numpy_ann_is_the_trainers(float_model):
    import torch

    from edgeff.train.evaluate import images_to_input
    from edgeff.train.model_io import load_network

    float_path, data = float_model
    images = load_dataset(data).test.images
    net, _ = load_network(float_path)
    with torch.no_grad():
        expected = net.head_logits(images_to_input(images, net.n_classes)).numpy()
    np.testing.assert_allclose(nir_graph.FloatModel(float_path).logits(images), expected, rtol=1e-4, atol=1e-4)


def test_spiking_network_agrees_with_the_ann_at_large_t(exported):
    float_path, path, data = exported
    model = nir_graph.FloatModel(float_path)
    test = load_dataset(data).test
    ann = model.logits(test.images).argmax(1)
    # agreement means something only when the ANN's predictions vary: a constant guess agrees on its class's share
    majority = np.bincount(ann).max() / len(ann)
    assert majority < 0.7
    sim = Simulator(nir_graph.read(path))
    currents = model.currents(test.images)
    rate = sim.rates(currents)["output"].argmax(1)
    assert (rate == ann).mean() >= 0.9   # the folded normalizations: the graph's ANN
    # reset by subtraction converges to the rate model (1.0 measured); NIR's reset to zero loses each spike's
    # overshoot, which the second layer's bursty input makes large here: 0.615 measured (docs/nir.md)
    for reset, bound in (("subtract", 0.95), ("nir", 0.5)):
        result = sim.run(currents, [1, 256], reset)
        agreement = {t: (r["outputs"]["output"].argmax(1) == ann).mean() for t, r in result.items()}
        assert agreement[256] >= bound, (reset, agreement)
        assert agreement[256] > agreement[1] + 0.2, (reset, agreement)   # counting spikes longer converges
        assert result[256]["synaptic_ops"].mean() > result[1]["synaptic_ops"].mean() > 0


def test_export_refuses_int8_and_convolutional_models_in_one_line(small_model, tmp_path):
    int8_path, data = small_model
    res = run_cli("export", int8_path, "--format", "nir", "--out", tmp_path / "m.nir", "--data-dir", data)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "an int8 model; the NIR export takes a float FF model" in res.stderr

    import torch

    from edgeff.model_description import ModelDescription
    from edgeff.train.conv_network import ConvFFNetwork
    from edgeff.train.model_io import save_network

    torch.manual_seed(0)
    description = ModelDescription.chain((1, 12, 12), [{"kind": "conv2d", "out_channels": 10, "kernel": 3},
                                                       {"kind": "flatten"}, {"kind": "dense", "out_features": 10}])
    conv = save_network(tmp_path / "conv.safetensors", ConvFFNetwork(description, 10, "cwc"), [3])
    res = run_cli("export", conv, "--format", "nir", "--out", tmp_path / "c.nir", "--data-dir", data)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert "layer 1 is conv2d, layer 2 is flatten; the NIR export supports float FF models of dense" in res.stderr
    assert not (tmp_path / "c.nir").exists()


def test_verify_prints_one_json_document_and_a_curve(exported, tmp_path):
    float_path, path, data = exported
    png = tmp_path / "curve.png"
    res = run_cli("verify", float_path, path, "--data-dir", data, "--timesteps", "1,64,256", "--json", "--plot", png,
                  "--multi-pass")
    result = json.loads(res.stdout)   # the whole of stdout is one document
    assert [r["timesteps"] for r in result["rows"]] == [1, 64, 256]
    assert res.returncode == (0 if result["verdict"] == "pass" else 1)
    row = result["rows"][-1]
    assert row["agreement_subtract"] >= 0.95 and row["neuron_updates"] == (32 + 16) * 256
    assert row["energy_uj"]["loihi"] == pytest.approx(1e-6 * (row["synaptic_ops_nir"] * 23.6 + 48 * 256 * 81.0))
    assert set(row["energy_uj"]) == {"loihi", "odin"} and result["mcu"]["board"] == "nrf52840"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result["plot"] == str(png)
    # multi-pass from spike rates (one run per label). Measured agreement with the ANN's multi-pass at T = 1, 64,
    # 256: 0.22, 0.665, 0.685 by subtraction, 0.22, 0.40, 0.42 under NIR's rule (on Fashion-MNIST the board
    # network's reaches the ANN's accuracy by subtraction, docs/nir.md)
    first, last = result["rows"][0], result["rows"][-1]
    assert last["multi_pass_agreement_subtract"] >= 0.6 and last["multi_pass_agreement_subtract"] > \
        first["multi_pass_agreement_subtract"] + 0.3
    assert last["multi_pass_agreement_nir"] > first["multi_pass_agreement_nir"]
    assert "verify:" in res.stderr   # the verdict line, for a person watching a --json run


@pytest.mark.parametrize(("args", "message"), [
    (["--timesteps", "0,8"], "--timesteps '0,8': give comma-separated whole numbers of steps from 1"),
    (["--timesteps", "eight"], "--timesteps 'eight': give comma-separated whole numbers"),
])
def test_verify_refuses_bad_timesteps_in_one_line(exported, args, message):
    float_path, path, data = exported
    res = run_cli("verify", float_path, path, "--data-dir", data, *args)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and message in res.stderr
    assert "Traceback" not in res.stderr


def test_verify_refuses_a_file_that_is_not_nir_and_another_models_export(exported, tmp_path):
    float_path, path, data = exported
    fake = tmp_path / "fake.nir"
    fake.write_bytes(b"not hdf5")
    res = run_cli("verify", float_path, fake, "--data-dir", data)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not a readable NIR file" in res.stderr
    other = tmp_path / "other.safetensors"
    other.write_bytes(float_path.read_bytes()[:-4] + b"    ")   # same architecture, other bytes: another model
    res = run_cli("verify", other, path, "--data-dir", data)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "was exported from another model" in res.stderr


def test_sinabs_reads_the_export_and_predicts_as_reset_by_subtraction(exported):
    pytest.importorskip("sinabs")
    from edgeff.export.nir_sinabs import sinabs_outputs

    float_path, path, data = exported
    model = nir_graph.FloatModel(float_path)
    currents = model.currents(load_dataset(data).test.images)
    graph = nir_graph.read(path)
    theirs = sinabs_outputs(graph, currents, 64)
    ours = Simulator(graph).run(currents, [64], "subtract")[64]["outputs"]["output"]
    # the same predictions; the values differ where sinabs fires twice in a step or clips a negative membrane
    assert (theirs.argmax(1) == ours.argmax(1)).mean() >= 0.97
    assert np.abs(theirs - ours).mean() <= 0.02 * np.abs(ours).mean()
