"""The layered network: conv2d and flatten layer kinds, the model description and file of a conv model,
channel-wise competitive FF and the label overlay for conv layers, the local update schedules (a chunk never
backpropagates beyond its own layers), backprop through the same layers, and the registry's refusals."""
import json

import numpy as np
import pytest
import torch

from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.model_file import load_model, save_model
from edgeff.op_registry import facet, spec_class
from edgeff.train.config import config_from_dict
from edgeff.train.conv_network import ConvFFNetwork
from edgeff.train.conv_trainer import train_step
from edgeff.train.model_io import load_network, save_network
from edgeff.train.schedules import groups
from edgeff.train.torch_memory import measure_torch
from tests.conftest import run_cli, train_tiny, write_dataset

Conv2d, Flatten = spec_class("conv2d"), spec_class("flatten")
LAYERS = [{"kind": "conv2d", "out_channels": 10, "kernel": 3, "padding": 1},
          {"kind": "conv2d", "out_channels": 20, "kernel": 3, "padding": 1, "pool": 2},
          {"kind": "conv2d", "out_channels": 10, "kernel": 3, "pool": 2},
          {"kind": "flatten"},
          {"kind": "dense", "out_features": 20}]


def tiny_description(side=12):
    return ModelDescription.chain((1, side, side), LAYERS)


def tiny_config(**train):
    return config_from_dict({"name": "tinyconv", "model": {"input_shape": [1, 12, 12], "layers": LAYERS},
                             "train": {"batch_size": 8, "lr": 0.01, **train}})


def test_conv_spec_shapes_and_checks():
    spec = Conv2d(1, 28, 28, 50, 3, padding=1, pool=2)
    assert spec.conv_shape == (50, 28, 28) and spec.out_shape == (50, 14, 14)
    assert spec.n_inputs == 784 and spec.n_outputs == 50 * 14 * 14
    assert Conv2d(3, 9, 9, 4, 4, stride=2).out_shape == (4, 3, 3)
    with pytest.raises(EdgeFFError, match="'padding' must be an integer from 0 to kernel - 1"):
        Conv2d(1, 8, 8, 4, 3, padding=3)
    with pytest.raises(EdgeFFError, match="does not fit a 2x2 input"):
        Conv2d(1, 2, 2, 4, 3)
    with pytest.raises(EdgeFFError, match="'out_channels' must be a positive integer"):
        Conv2d(1, 8, 8, 0, 3)
    assert Flatten(2, 3, 4).n_outputs == 24 and Flatten.after((2, 3, 4)).in_shape == (2, 3, 4)


def test_description_chains_shapes_and_refuses_a_layout_mismatch():
    d = tiny_description()
    assert [s.kind for s in d.layers] == ["conv2d", "conv2d", "conv2d", "flatten", "dense"]
    assert d.layers[2].in_shape == (20, 6, 6) and d.layers[4].in_features == 10 * 2 * 2
    assert d.normalization == "rms" and d.input_shape == (1, 12, 12)
    # 8 x 14 x 14 and 32 x 7 x 7 hold the same number of values: only the shapes tell them apart
    with pytest.raises(EdgeFFError, match=r"takes activities of shape \(32, 7, 7\), but layer 0 gives \(8, 14, 14\)"):
        ModelDescription((Conv2d(1, 28, 28, 8, 3, padding=1, pool=2), Conv2d(32, 7, 7, 8, 3)))
    with pytest.raises(EdgeFFError, match="layer 2 .conv2d.: .*unexpected keyword argument 'channels'"):
        ModelDescription.chain((1, 12, 12), [LAYERS[0], {"kind": "conv2d", "channels": 3, "kernel": 3}])
    with pytest.raises(EdgeFFError, match="layer 1 must be a table with a 'kind' of dense, conv2d, flatten"):
        ModelDescription.chain((1, 12, 12), [{"kind": "pool"}])
    assert ModelDescription.from_header(d.to_header()) == d


def test_conv_model_file_round_trips_and_its_tensors_are_checked(tmp_path):
    torch.manual_seed(0)
    net = ConvFFNetwork(tiny_description(), 10, "cwc").eval()
    x = torch.rand(4, 1, 12, 12)
    path = save_network(tmp_path / "m.safetensors", net, [4, 5])
    loaded, header = load_network(path)
    assert header["architecture"]["objective"] == "cwc"
    assert torch.equal(loaded.label_scores(x), net.label_scores(x))
    tensors, _ = load_model(path)
    assert set(tensors) == {f"layers.{i}.{s}" for i, spec in enumerate(net.specs) for s in spec.float_tensors()} \
        | {"head.weight", "head.bias"}
    tensors["layers.1.conv.weight"] = tensors["layers.1.conv.weight"][:, :, :2]
    bad = save_model(tmp_path / "bad.safetensors", tensors, header)
    with pytest.raises(EdgeFFError, match=r"tensor 'layers.1.conv.weight' has shape \(20, 10, 2, 3\)"):
        load_model(bad)


def test_cost_facet_counts_torch_parameters_and_macs():
    spec = Conv2d(3, 10, 10, 8, 3, padding=1, pool=2)
    module = facet("conv2d", "torch_module").build(spec, False)
    cost = facet("conv2d", "cost")
    trained = sum(p.numel() for p in module.parameters())
    assert cost.float32_memory(spec, "ff", 1)["gradients"] == 4 * trained
    assert cost.macs(spec) == 8 * 3 * 9 * 10 * 10 + 3 * 100
    (one, _), (batch, output_saved) = (cost.float32_saved(spec, b, False, False) for b in (1, 64))
    assert batch["relu output"] == 64 * one["relu output"] == 64 * 4 * 8 * 10 * 10
    assert not output_saved   # pooled: the block's output is saved by whatever uses it next (tests/test_conv_memory.py)
    assert cost.operation_counts(spec, "inference_multi_pass", True, 10, "int8")["macs"] == 10 * cost.macs(spec)


def test_cwc_goodness_is_the_mean_square_of_each_class_group():
    net = ConvFFNetwork(tiny_description(), 10, "cwc")
    h = torch.rand(3, 20, 6, 6)
    g = net.class_goodness(h)
    assert g.shape == (3, 10)
    assert torch.allclose(g[:, 4], (h[:, 8:10] ** 2).mean(dim=(1, 2, 3)))
    y = torch.tensor([1, 4, 9])
    expected = -torch.log_softmax(g, dim=1)[torch.arange(3), y].mean()   # Ortiz Torres et al. eq. 3
    assert torch.allclose(net.layer_loss(h, y, 3, 2.0), expected)
    with pytest.raises(EdgeFFError, match="layer 1 has 10 output channels, which do not split into 4 class groups"):
        ConvFFNetwork(ModelDescription.chain((1, 8, 8), [LAYERS[0]]), 4, "cwc")


def test_schedules_group_the_layers():
    assert groups("greedy", 3) == [(0, 1, (0,)), (1, 2, (1,)), (2, 3, (2,))]
    assert groups("chunked", 5, 2, step=0) == [(0, 2, (0, 1)), (2, 4, (2, 3)), (4, 5, (4,))]
    assert groups("chunked", 5, 2, step=1) == [(0, 1, (0,)), (1, 3, (1, 2)), (3, 5, (3, 4))]
    assert groups("chunked", 5, 2, step=1, alternate=False) == groups("chunked", 5, 2, step=0)
    assert groups("overlapping", 4, 2) == [(0, 2, (0, 1)), (1, 3, (2,)), (2, 4, (3,))]
    assert groups("backprop", 4) == [(0, 4, ())]
    for schedule in ("greedy", "chunked", "overlapping"):   # every layer's own loss counts exactly once
        for step in range(3):
            owned = [k for _, _, own in groups(schedule, 7, 3, step) for k in own]
            assert sorted(owned) == list(range(7))


def _reached(schedule, objective="cwc", step=0, chunk=2, description=None):
    """The layers whose parameters one update's gradient reaches, per layer whose loss alone is kept."""
    torch.manual_seed(0)
    net = ConvFFNetwork(description or tiny_description(), 10, objective)
    x, y = torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    reached = {}
    for owner in net.trained:
        inputs, loss = {0: x}, None
        for start, stop, owned in groups(schedule, net.n_layers, chunk, step):
            for k, h in enumerate(net.run(inputs[start], start, stop), start):
                inputs.setdefault(k + 1, h)
                if k == owner and k in owned:
                    loss = net.layer_loss(h, y, 8, 2.0)
        net.zero_grad(set_to_none=True)
        loss.backward()
        reached[owner] = [k for k, layer in enumerate(net.layers)
                          if any(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())]
    return reached


@pytest.mark.parametrize("objective", ["cwc", "overlay"])
def test_greedy_losses_reach_their_own_layer_only(objective):
    assert _reached("greedy", objective) == {0: [0], 1: [1], 2: [2], 4: [4]}


def test_a_chunk_never_backpropagates_beyond_its_own_layers():
    # chunks (0,1) (2,3) (4) at step 0; (0) (1,2) (3,4) at step 1, the boundaries alternate
    assert _reached("chunked", step=0) == {0: [0], 1: [0, 1], 2: [2], 4: [4]}
    assert _reached("chunked", step=1) == {0: [0], 1: [1], 2: [1, 2], 4: [4]}   # 4's chunk (3,4): flatten, dense
    assert _reached("overlapping") == {0: [0], 1: [0, 1], 2: [1, 2], 4: [4]}
    assert _reached("chunked", chunk=5) == {0: [0], 1: [0, 1], 2: [0, 1, 2], 4: [0, 1, 2, 4]}


@pytest.mark.parametrize(("objective", "schedule"), [("cwc", "greedy"), ("cwc", "chunked"), ("cwc", "overlapping"),
                                                      ("overlay", "greedy"), ("backprop", "greedy")])
def test_a_training_step_lowers_the_loss(objective, schedule):
    cfg = tiny_config(schedule=schedule, negatives="random")
    cfg.model.objective = objective
    torch.manual_seed(0)
    net = ConvFFNetwork(tiny_description(), 10, objective)
    opt = torch.optim.Adam(list(net.parameters()), lr=0.01)
    x, y = torch.rand(16, 1, 12, 12), torch.randint(0, 10, (16,))
    rng = np.random.default_rng(0)
    first = train_step(net, opt, x, y, cfg, 0, rng)
    for step in range(1, 15):
        last = train_step(net, opt, x, y, cfg, step, np.random.default_rng(0))
    assert last.sum() < first.sum()


def test_layered_config_is_checked():
    base = {"model": {"input_shape": [1, 12, 12], "layers": LAYERS}}
    assert config_from_dict(base).n_layers == 5 and config_from_dict(base).eval.head_layers == [5]
    assert config_from_dict(base).model.objective == "cwc"
    with pytest.raises(EdgeFFError, match="give 'sizes' .* or 'layers'"):
        config_from_dict({"model": {**base["model"], "sizes": [144, 10]}})
    with pytest.raises(EdgeFFError, match="needs 'input_shape'"):
        config_from_dict({"model": {"layers": LAYERS}})
    with pytest.raises(EdgeFFError, match="'objective' = 'hebb' is not one of cwc, overlay, backprop"):
        config_from_dict({"model": {**base["model"], "objective": "hebb"}})
    with pytest.raises(EdgeFFError, match="'milestones' must list epochs"):
        config_from_dict({**base, "train": {"milestones": [5, 2]}})
    with pytest.raises(EdgeFFError, match="'schedule' = 'random' is not one of greedy, chunked, overlapping"):
        config_from_dict({**base, "train": {"schedule": "random"}})
    with pytest.raises(EdgeFFError, match="'input_shape' is for a layered network"):
        config_from_dict({"model": {"sizes": [784, 10], "input_shape": [1, 28, 28]}})


def test_mlp_config_dictionary_keeps_its_keys():
    """An MLP config writes the dictionary it wrote before layered networks existed (its model files'
    bytes do not move)."""
    d = config_from_dict({"model": {"sizes": [784, 10]}}).to_dict()
    assert not {"layers", "input_shape", "objective"} & set(d["model"])
    assert not {"schedule", "chunk", "alternate", "milestones", "lr_factor"} & set(d["train"])
    d = config_from_dict({"model": {"sizes": [784, 10]}, "train": {"lr_schedule": "multistep",
                                                                  "milestones": [2]}}).to_dict()
    assert d["train"]["milestones"] == [2] and d["train"]["lr_factor"] == 0.1


CLI_CONFIG = """
name = "tinyconv"
[model]
input_shape = [1, 14, 14]
objective = "{objective}"
layers = [{{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1, pool = 2}},
          {{kind = "conv2d", out_channels = 20, kernel = 3, padding = 1, pool = 2}}]
[train]
epochs = 4
batch_size = 10
lr = 0.01
val_size = 100
eval_samples = 100
negatives = "random"
schedule = "chunked"
lr_schedule = "multistep"
milestones = [3]
[eval]
layers = [1, 2]
head_epochs = 2
"""


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv")
    _, data = train_tiny(root, CLI_CONFIG.format(objective="cwc"), n_train=300, n_test=100, side=14)
    return root, data


def test_train_eval_a_conv_model_and_refuse_what_has_no_backend(conv_run):
    root, data = conv_run
    model = root / "run/model.safetensors"
    res = run_cli("eval", model, "--data-dir", data, "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["multi_pass"] > 0.3 and result["multi_pass_layers"] == [1, 2]
    # the float ONNX export works (tests/test_export_conv.py); the NIR export has no conv writer
    res = run_cli("export", model, "--format", "nir", "--out", root / "m.nir", "--data-dir", data)
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.strip().startswith(f"edgeff: error: {model}: layer 1 is conv2d")
    assert "the NIR export supports float FF models of dense layers (no convolutional ones yet)" in res.stderr
    assert not (root / "m.nir").exists()


def test_profile_a_conv_model(conv_run):
    root, _ = conv_run
    res = run_cli("profile", root / "run/model.safetensors", "--board", "nrf52840", "--out", root / "prof", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    layers = result["memory"]["ff_float32"]["layers"]
    assert len(layers) == 2 and all(r["activations"] > 0 for r in layers)
    assert "largest_hidden_width" not in result["fit"]["train_ff_int8"]   # an MLP's notion
    specs = load_network(root / "run/model.safetensors")[0].specs
    head = 10 * 20 * 3 * 3   # the one-pass head over the last block's output
    assert result["energy"]["inference_one_pass"]["int8"]["total_macs"] == sum(
        facet("conv2d", "cost").macs(s) for s in specs) + head


def test_profile_measures_conv_training_in_torch(conv_run):
    """--measure trains the conv blocks in torch, FF layer by layer (CwC) and backprop end to end: both
    peaks and every layer's update are measured."""
    root, _ = conv_run
    res = run_cli("profile", root / "run/model.safetensors", "--board", "nrf52840", "--out", root / "prof",
                  "--measure", "--batch", 64, "--json")
    assert res.returncode == 0, res.stderr
    measured = json.loads(res.stdout)["measured"]
    ff, bp = measured["ff_float32_torch"], measured["backprop_float32_torch"]
    assert ff["measured_bytes"] > 0 and bp["measured_bytes"] > 0, measured
    layers = [measured[f"ff_float32_torch_layer_{i}_update"] for i in (1, 2)]
    assert all(m["measured_bytes"] > 0 and m["analytic_bytes"] > 0 for m in layers), layers


def test_layer_local_ff_keeps_less_alive_than_backprop_in_torch():
    """Four unpooled-until-last blocks whose later maps are as large as the first: backprop keeps every
    block's saved tensors at once, FF one block's (the fixture's two-block net is too close to call: its
    first block is most of both peaks)."""
    blocks = [{"kind": "conv2d", "out_channels": c, "kernel": 3, "padding": 1, "pool": pool}
              for c, pool in ((10, 1), (40, 1), (40, 1), (40, 2))]
    description = ModelDescription.chain([1, 14, 14], blocks)
    ff, bp = (measure_torch(method, description, 64)["peak_bytes"] for method in ("ff", "backprop"))
    assert 0 < ff < bp, (ff, bp)


def test_backprop_objective_trains_the_same_layers_end_to_end(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=300, n_test=100, side=14)
    cfg = tmp_path / "bp.toml"
    cfg.write_text(CLI_CONFIG.format(objective="backprop"))
    res = run_cli("train", cfg, "--data-dir", data, "--out", tmp_path / "run", "--quiet", "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert metrics["objective"] == "backprop" and "multi_pass" not in metrics["val"]
    assert metrics["val"]["one_pass"] > 0.3


def test_early_exit_stops_at_the_first_confident_layer():
    from edgeff.scoring import early_exit

    # 3 samples, 2 layers, 2 classes; layer 1 is sure of sample 0 only (wrongly), layer 2 of all
    scores = np.array([[[5.0, 0.0], [0.1, 0.0], [0.0, 0.1]],
                       [[0.0, 5.0], [5.0, 0.0], [0.0, 5.0]]])
    labels = np.array([1, 0, 1])
    full = early_exit(scores, labels, [100, 10], 1.0, [1, 2], [2])
    assert full == {"threshold": 1.0, "accuracy": 1.0, "macs_per_image": 110.0, "exit_share": {2: 1.0}}
    eager = early_exit(scores, labels, [100, 10], 0.9, [1, 2], [2])
    assert eager["accuracy"] == pytest.approx(2 / 3) and eager["macs_per_image"] == pytest.approx((100 + 220) / 3)
    assert eager["exit_share"] == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3)}


def test_eval_reports_early_exit(conv_run):
    root, data = conv_run
    res = run_cli("eval", root / "run/model.safetensors", "--data-dir", data, "--early-exit", "0.5,0.99", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["early_exit"]
    assert [r["threshold"] for r in rows] == [0.5, 0.99]
    assert rows[0]["macs_per_image"] <= rows[1]["macs_per_image"]
    res = run_cli("eval", root / "run/model.safetensors", "--data-dir", data, "--early-exit", "1.5")
    assert res.returncode == 2 and "between 0 and 1" in res.stderr


def test_shipped_conv_configs_chain():
    from edgeff.package_data import MODELS_DIR
    from edgeff.train.config import description_of, load_config

    for path in sorted(MODELS_DIR.glob("ff-conv-*.toml")):
        cfg = load_config(path)
        d = description_of(cfg)
        assert d.input_shape == (1, 28, 28) and cfg.eval.layers == [cfg.n_layers - 1, cfg.n_layers], path
        assert all(s.out_channels % 10 == 0 for s in d.layers), path   # one channel group per class


def test_the_mlp_trainer_refuses_a_layered_config(tmp_path):
    from edgeff.data.datasets import load_dataset
    from edgeff.train.trainer import train

    data = load_dataset(write_dataset(tmp_path / "data", n_train=60, n_test=20, side=12), val_size=10)
    with pytest.raises(EdgeFFError, match=r"a layered network \(\[model\] layers\) trains with `edgeff train`"):
        train(tiny_config(), data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
