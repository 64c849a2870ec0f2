"""Max pooling as a layer kind (maxpool2d): its spec's shapes and refusals, the same outputs as a conv block's own
pooling, training with every objective and schedule and the model file's round trip, the locality of the chunks
across it, `edgeff profile` and `edgeff eval` on a model with it, and the integer backends' refusal by name."""
import json

import numpy as np
import pytest
import torch

from edgeff.data.datasets import load_dataset
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription, parse_layer
from edgeff.op_registry import facet, spec_class
from edgeff.quant.ptq import quantize
from edgeff.train.config import config_from_dict
from edgeff.train.conv_network import ConvFFNetwork
from edgeff.train.conv_trainer import build_network, train
from edgeff.train.evaluate import evaluate, label_scores
from edgeff.train.model_io import load_network, save_network
from tests.conftest import run_cli, train_tiny, write_dataset
from tests.test_conv import _reached

MaxPool2d = spec_class("maxpool2d")
# 1x12x12 -> conv 10x12x12 -> pool 10x6x6 -> conv 20x6x6 -> flatten 720 -> dense 20
LAYERS = [{"kind": "conv2d", "out_channels": 10, "kernel": 3, "padding": 1},
          {"kind": "maxpool2d", "size": 2},
          {"kind": "conv2d", "out_channels": 20, "kernel": 3, "padding": 1},
          {"kind": "flatten"},
          {"kind": "dense", "out_features": 20}]
KINDS = ["conv2d", "maxpool2d", "conv2d", "flatten", "dense"]
TRAINED = [0, 2, 4]   # 0-based: the layers with parameters; the maxpool2d (1) and the flatten (3) have none


def description():
    return ModelDescription.chain((1, 12, 12), LAYERS)


def test_spec_shapes_chain_and_refusals():
    spec = MaxPool2d(4, 7, 9, 2)
    assert spec.out_shape == (4, 3, 4) == tuple(torch.nn.functional.max_pool2d(torch.zeros(1, 4, 7, 9), 2).shape[1:])
    assert spec.n_inputs == 4 * 7 * 9 and spec.n_outputs == 4 * 3 * 4 and spec.float_tensors() == {}
    assert MaxPool2d.after((4, 7, 9), size=3).out_shape == (4, 2, 3)
    d = description()
    assert [s.kind for s in d.layers] == KINDS
    assert d.layers[1].in_shape == (10, 12, 12) and d.layers[2].in_shape == (10, 6, 6)
    assert d.layers[4].in_features == 20 * 6 * 6
    assert d.to_header()[1] == {"kind": "maxpool2d", "in_channels": 10, "in_height": 12, "in_width": 12, "size": 2}
    assert ModelDescription.from_header(d.to_header()) == d
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(EdgeFFError, match=rf"^maxpool2d layer: 'size' must be a positive integer, got {bad!r}$"):
            MaxPool2d(4, 8, 8, bad)
    with pytest.raises(EdgeFFError, match="size 5 is larger than its 8x4 input; use a size of at most 4"):
        MaxPool2d(4, 8, 4, 5)
    with pytest.raises(EdgeFFError, match=r"layer 5: a maxpool2d layer needs an image-shaped input .*got \(720,\)"):
        ModelDescription.chain((1, 12, 12), [*LAYERS[:4], {"kind": "maxpool2d", "size": 2}])
    with pytest.raises(EdgeFFError, match=r"layer 2 \(maxpool2d\): .*unexpected keyword argument 'kernel'"):
        ModelDescription.chain((1, 12, 12), [LAYERS[0], {"kind": "maxpool2d", "kernel": 2}])
    with pytest.raises(EdgeFFError, match=r"layer 2 \(maxpool2d\): .*missing 1 required positional argument: 'size'"):
        ModelDescription.chain((1, 12, 12), [LAYERS[0], {"kind": "maxpool2d"}])
    with pytest.raises(EdgeFFError, match=r"layer 1: a maxpool2d layer takes in_channels, in_height, in_width, size; "
                                          r"unknown \['stride'\]"):
        parse_layer({**d.to_header()[1], "stride": 2}, "layer 1")
    with pytest.raises(EdgeFFError, match=r"cfg \[model\] layers: layer 2: maxpool2d layer: size 20 is larger than "
                                          "its 12x12 input"):
        config_from_dict({"model": {"input_shape": [1, 12, 12], "layers": [LAYERS[0], {"kind": "maxpool2d",
                                                                                        "size": 20}]}}, "cfg")


def test_a_network_refuses_what_it_cannot_score_or_train():
    pool_first = ModelDescription.chain((1, 12, 12), [{"kind": "maxpool2d", "size": 2}, *LAYERS[2:]])
    with pytest.raises(EdgeFFError, match=r"layer 1 \(maxpool2d\) gives activities of shape \(1, 6, 6\), whose 1 "
                                          "channels do not split into 10 class groups"):
        ConvFFNetwork(pool_first, 10, "cwc")
    assert ConvFFNetwork(pool_first, 10, "overlay").trained == [1, 3]   # the overlay scores the whole layer
    parameterless = ModelDescription.chain((10, 4, 4), [{"kind": "maxpool2d", "size": 2}, {"kind": "flatten"}])
    with pytest.raises(EdgeFFError, match=r"the layers \(maxpool2d, flatten\) have no parameters"):
        ConvFFNetwork(parameterless, 10, "cwc")


def test_a_pooled_block_and_a_block_then_maxpool2d_give_the_same_outputs():
    pooled = ModelDescription.chain((1, 12, 12), [{**LAYERS[0], "pool": 2}, *LAYERS[2:]])
    torch.manual_seed(0)
    a, b = ConvFFNetwork(pooled, 10, "cwc"), ConvFFNetwork(description(), 10, "cwc")
    for i, j in ((0, 0), (1, 2), (3, 4)):    # the same weights: b has the maxpool2d as its layer 1
        b.layers[j].load_state_dict(a.layers[i].state_dict())
    b.head.load_state_dict(a.head.state_dict())
    x = torch.rand(6, 1, 12, 12)
    for mode in ("train", "eval"):   # batch statistics and running statistics
        a.train(mode == "train")
        b.train(mode == "train")
        with torch.no_grad():
            acts_a, acts_b = a.activities(x), b.activities(x)
            assert torch.equal(acts_a[0], acts_b[1]) and acts_b[0].shape == (6, 10, 12, 12)
            assert all(torch.equal(p, q) for p, q in zip(acts_a[1:], acts_b[2:], strict=True))
            assert torch.equal(a.head_logits(x), b.head_logits(x))
    scores_a, scores_b = a.label_scores(x), b.label_scores(x)
    assert torch.equal(scores_a[0], scores_b[1]) and torch.equal(scores_a[1:], scores_b[2:])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset(write_dataset(tmp_path_factory.mktemp("pool") / "data", n_train=80, n_test=20, side=12),
                        val_size=20)


@pytest.mark.parametrize(("objective", "schedule"), [("cwc", "greedy"), ("cwc", "chunked"), ("cwc", "overlapping"),
                                                      ("overlay", "chunked"), ("backprop", "greedy")])
def test_a_model_with_maxpool2d_trains_and_its_model_file_round_trips(data, tmp_path, objective, schedule):
    cfg = config_from_dict({
        "name": "pool", "model": {"input_shape": [1, 12, 12], "layers": LAYERS, "objective": objective},
        "train": {"epochs": 1, "batch_size": 20, "schedule": schedule, "chunk": 3, "negatives": "random",
                  "val_size": 20, "eval_samples": 20},
        "eval": {"head_epochs": 1}})
    torch.manual_seed(cfg.train.seed)
    start = build_network(cfg, 10)     # the weights train() starts from
    metrics = train(cfg, data, tmp_path / "run", quiet=True)
    net, header = load_network(metrics["model_file"])
    assert [s.kind for s in net.specs] == KINDS and net.trained == TRAINED
    moved = [k for k in range(5) if any(not torch.equal(p, q) for p, q in
                                        zip(net.layers[k].parameters(), start.layers[k].parameters(), strict=True))]
    assert moved == TRAINED    # every trained layer learned, whichever group the pooling fell in
    if objective != "backprop":   # the parameterless layers have no loss of their own
        loss = metrics["history"][0]["loss"]
        assert loss[1] == loss[3] == 0 and all(loss[k] > 0 for k in TRAINED), loss
    arch = header["architecture"]
    mode = "one" if objective == "backprop" else "both"
    assert evaluate(net, data.val.images, data.val.labels, arch["eval_layers"], mode) == metrics["val"]
    again = save_network(tmp_path / "again.safetensors", net, arch["eval_layers"])
    reloaded = load_network(again)[0]
    x = net.inputs(data.val.images)
    assert torch.equal(reloaded.head_logits(x), net.head_logits(x))
    if objective != "backprop":
        assert np.array_equal(label_scores(reloaded, data.val.images), label_scores(net, data.val.images))


def test_a_chunk_never_backpropagates_beyond_its_own_layers_across_a_maxpool2d():
    d = description()
    assert _reached("greedy", description=d) == {0: [0], 2: [2], 4: [4]}
    assert _reached("greedy", "overlay", description=d) == {0: [0], 2: [2], 4: [4]}
    # chunks count every layer, the parameterless ones too: with 2, no chunk holds two trained layers
    assert _reached("chunked", description=d) == {0: [0], 2: [2], 4: [4]}
    assert _reached("chunked", step=1, description=d) == {0: [0], 2: [2], 4: [4]}
    # chunks of 3: (0,1,2) (3,4) at step 0, the second block's loss reaching through the pooling into the first;
    # (0) (1,2,3) (4) at step 1 and (0,1) (2,3,4) at step 2, where the pooling starts a chunk or ends one
    assert _reached("chunked", chunk=3, description=d) == {0: [0], 2: [0, 2], 4: [4]}
    assert _reached("chunked", chunk=3, step=1, description=d) == {0: [0], 2: [2], 4: [4]}
    assert _reached("chunked", chunk=3, step=2, description=d) == {0: [0], 2: [2], 4: [2, 4]}
    assert _reached("overlapping", chunk=3, description=d) == {0: [0], 2: [0, 2], 4: [2, 4]}


def test_the_ff_update_of_a_maxpool2d_layer_holds_its_output_and_indices_in_torch():
    """Layer-local FF runs a maxpool2d layer without a graph, yet torch's CPU max_pool2d makes its int64 indices:
    the measured step of the layer is its output and indices (the cost facet's figure), not its output alone."""
    from edgeff.profiler.memory_model import layer_memory, layer_update_bytes
    from edgeff.train.torch_memory import measure_torch

    d = ModelDescription.chain((1, 28, 28), [{"kind": "conv2d", "out_channels": 20, "kernel": 3, "padding": 1},
                                             {"kind": "maxpool2d", "size": 2}, {"kind": "flatten"},
                                             {"kind": "dense", "out_features": 10}])
    measured = measure_torch("ff", d, 64)["layer_bytes"][1]
    analytic = layer_update_bytes(layer_memory("ff", "float32", d, 64))[1]
    assert analytic == 64 * (4 + 8) * 20 * 14 * 14
    assert 0.8 * analytic < measured < 1.2 * analytic, (measured, analytic)


CLI_CONFIG = """
name = "tinypool"
[model]
input_shape = [1, 12, 12]
layers = [{kind = "conv2d", out_channels = 10, kernel = 3, padding = 1},
          {kind = "maxpool2d", size = 2},
          {kind = "conv2d", out_channels = 20, kernel = 3, padding = 1, pool = 2}]
[train]
epochs = 1
batch_size = 10
lr = 0.01
val_size = 50
eval_samples = 50
schedule = "chunked"
chunk = 3
[eval]
head_epochs = 1
"""


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("poolcli")
    model, data = train_tiny(root, CLI_CONFIG, n_train=150, n_test=50, side=12)
    return root, model, data


def test_profile_prints_a_maxpool2d_row(pool_run):
    root, model, _ = pool_run
    res = run_cli("profile", model, "--board", "nrf52840", "--batch", 4, "--out", root / "prof", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["layer_kinds"] == ["conv2d", "maxpool2d", "conv2d"]
    pool = MaxPool2d(10, 12, 12, 2)
    ff, bp = ({r["name"]: r for r in result["memory"][key]["layers"]}["layer 2"]
              for key in ("ff_float32", "backprop_float32"))
    assert ff["weights"] == ff["update_state"] == ff["gradients"] == 0
    # FF: no graph, but torch's CPU max_pool2d makes its float32 output and int64 indices all the same;
    # backprop saves the indices (its input is the ReLU output the conv block saved, its output the next
    # block's BatchNorm input, counted there: tests/test_conv_memory.py)
    assert ff["activations"] == 0 and ff["backward"] == 4 * (4 + 8) * pool.n_outputs
    assert bp["activations"] == 4 * 8 * pool.n_outputs
    for workload, per_precision in result["energy"].items():
        row = per_precision["int8"]["layers"][1]
        assert row["name"] == "layer 2" and row["macs"] == row["updates"] == 0 and row["sram_bytes"] > 0, workload
    specs = load_network(model)[0].specs
    assert result["energy"]["inference_one_pass"]["int8"]["total_macs"] == sum(
        facet("conv2d", "cost").macs(s) for s in (specs[0], specs[2])) + 10 * 20 * 3 * 3   # + the head
    res = run_cli("profile", model, "--board", "nrf52840", "--out", root / "prof")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("layer ") and line[6].isdigit()]
    assert [row[:3] for row in rows[:3]] == [["layer", "1", "conv2d"], ["layer", "2", "maxpool2d"],
                                             ["layer", "3", "conv2d"]]


def test_eval_numbers_every_layer_and_exits_at_trained_ones(pool_run):
    root, model, data = pool_run
    res = run_cli("eval", model, "--data-dir", data, "--early-exit", "0.3,1.0", "--json")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert len(result["per_layer"]) == 3
    assert all(set(row["exit_share"]) <= {"1", "3"} for row in result["early_exit"]), result["early_exit"]
    assert result["early_exit"][1]["exit_share"] == {"3": 1.0}   # nobody is sure enough: all run to the end
    res = run_cli("eval", model, "--data-dir", data, "--layers", "2,3")
    assert res.returncode == 0, res.stderr
    assert "goodness of layers [2, 3]" in res.stdout and "layer 2 alone" in res.stdout
    assert [line.split()[-1] for line in res.stdout.splitlines() if " alone " in line] == \
        ["(conv2d)", "(maxpool2d)", "(conv2d)"]


def test_the_backends_without_maxpool2d_refuse_it_by_name(tmp_path):
    d = ModelDescription.chain((10, 4, 4), [{"kind": "maxpool2d", "size": 2}, {"kind": "flatten"},
                                            {"kind": "dense", "out_features": 10}])
    torch.manual_seed(0)
    path = save_network(tmp_path / "m.safetensors", ConvFFNetwork(d, 10, "cwc"), [3])
    images = np.zeros((4, d.layers[0].n_inputs), np.uint8)
    quantize(path, tmp_path / "q.safetensors", images, np.zeros(4, np.int64), {})   # int8 inference: test_conv_ptq
    # the board image's trainer has no integer CwC rule for its one trainable layer (format 2 trains conv blocks)
    res = run_cli("export", tmp_path / "q.safetensors", "--format", "board-header", "--out", tmp_path / "b.h")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "layer 3 (dense) has no integer CwC update rule yet" in res.stderr, res.stderr
    assert "it trains for every --last-k" in res.stderr
    assert not (tmp_path / "b.h").exists()
