"""The conv training-memory model against torch: the analytic saved-activation bytes of every layer equal
what autograd's saved-tensor hooks record (edgeff.train.saved_tensors), tensor for tensor, for FF (CwC, each
layer on its detached input) and backprop (end to end through the head); the analytic peaks come close to
the VmHWM peaks torch training measures (edgeff.train.torch_memory)."""
import pytest

from edgeff.model_description import ModelDescription
from edgeff.profiler.memory_model import layer_memory, peak_bytes, saved_tensors
from edgeff.train.saved_tensors import saved_bytes
from edgeff.train.torch_memory import measure_torch

# a pooled block, an unpooled one whose ReLU output is the next block's input, a pooled one, flatten, dense;
# then the same with a maxpool2d layer after an unpooled block (its saved input is that block's ReLU output)
LAYERS = [{"kind": "conv2d", "out_channels": 10, "kernel": 3, "padding": 1, "pool": 2},
          {"kind": "conv2d", "out_channels": 20, "kernel": 3, "padding": 1},
          {"kind": "conv2d", "out_channels": 10, "kernel": 3, "padding": 1, "pool": 2},
          {"kind": "flatten"},
          {"kind": "dense", "out_features": 20}]
POOLED = [LAYERS[1], {"kind": "maxpool2d", "size": 2}, *LAYERS[2:]]


@pytest.mark.parametrize("method", ["ff", "backprop"])
@pytest.mark.parametrize("batch", [2, 5])
@pytest.mark.parametrize("layers", [LAYERS, POOLED], ids=["blocks", "maxpool2d"])
def test_analytic_saved_activations_equal_the_tensors_autograd_saves(method, batch, layers):
    description = ModelDescription.chain([1, 8, 8], layers)
    recorded = saved_bytes(method, description, batch)
    hooks = recorded["layers"] + ([recorded["head"]] if method == "backprop" else [])
    rows = layer_memory(method, "float32", description, batch, 10)
    assert [r.activations for r in rows] == hooks
    assert [sum(saved.values()) for saved, _ in saved_tensors(method, description, batch)] == hooks
    flatten = [s.kind for s in description.layers].index("flatten")
    assert hooks[flatten] == 0 and hooks[-1] > 0


@pytest.mark.slow    # two fresh torch processes each: about 15 s on two shared cores
def test_the_analytic_peaks_come_close_to_the_measured_ones():
    """At batch 64 the saved tensors and gradient maps are most of the peak (at batch 1 torch's own
    allocations are not modelled)."""
    description = ModelDescription.chain([1, 16, 16], LAYERS[:3])
    for method in ("ff", "backprop"):
        measured = measure_torch(method, description, 64)["peak_bytes"]
        analytic = peak_bytes(method, "float32", layer_memory(method, "float32", description, 64, 10))
        assert analytic == pytest.approx(measured, rel=0.1), method
