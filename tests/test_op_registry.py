"""The op registry: every layer kind declares its facets and has each one's functions, the facets a gateway
runs load without torch, and an unknown kind, an unknown facet or a facet a kind lacks is refused by name."""
import subprocess
import sys

import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.op_registry import FACETS, KINDS, facet, facets_of, spec_class, trains_cwc_in_integers, trains_in_integers

# what each facet must define for the backends that walk the model description through it
REQUIRED = {
    "spec": ("SPEC",),
    "torch_module": ("build", "forward"),
    "ptq": ("quantize", "fold"),
    "onnx_writer": ("check_int8_exportable", "int8_forward"),
    "tflite_writer": ("check_exportable", "constants", "forward"),
    "nir_writer": ("parameters", "forward", "nodes"),
    "cost": ("float32_memory", "float32_saved", "float32_backward", "gradient_elements", "int8_backprop_memory",
             "int8_parameters", "inference_memory", "operation_counts"),
    "board_image": ("RECORD", "pack_record", "unpack_record", "check_record", "array_specs"),
    "runtime": ("load", "tensors", "forward"),
}
TORCH_FREE = ("spec", "runtime", "cost", "board_image")
# which facets each kind has: dense every backend's; conv2d, flatten and maxpool2d train, profile, quantize, run
# int8 inference and export to int8 ONNX and TFLite, conv2d and maxpool2d have a board image (format 2); a kind's
# declaration (edgeff/ops/<kind>/__init__.py) must say the same
INFERENCE = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "cost")
DECLARED = {"dense": FACETS, "conv2d": (*INFERENCE, "board_image"), "flatten": INFERENCE,
            "maxpool2d": (*INFERENCE, "board_image")}
# what only some kinds need: the MLP's first layer scores every label from one matmul (FFNetwork.label_scores);
# a kind that trains in integers has the update rule, its master state and a fresh start; the profiler
# estimates int8 training from the cost facet where the runtime's memory plan does not lay it out; the float
# ONNX graph (edgeff/export/onnx_float.py) walks every kind, the MLP's first layer scoring every label at once
EXTRA = {("dense", "torch_module"): ("every_label_activities",), ("dense", "ptq"): ("fresh_weights",),
         ("dense", "onnx_writer"): ("float_parameters", "float_forward", "float_every_label_activities"),
         **{(kind, "onnx_writer"): ("float_parameters", "float_forward")
            for kind in ("conv2d", "maxpool2d", "flatten")},
         ("dense", "runtime"): ("every_label_outputs", "initial_masters", "load_masters", "master_tensors", "update"),
         # the MLP's memory plan walks the dense record's training buffers; the layered kinds' are in their runtime
         # facet, beside flatten's, which has no board image
         ("dense", "board_image"): ("training_buffers",),
         # a format-2 image's trained block carries its step factors
         ("conv2d", "board_image"): ("STEP_MULTIPLIERS", "step_factors"),
         # the layered CwC rule (edgeff.runtime.int_layered_training), not in the FF layer dispatch, so not
         # trains_in_integers
         ("conv2d", "runtime"): ("forward_kept", "update_scales", "cwc_update", "initial_masters",
                                 "load_masters", "master_tensors", "training_shapes", "training_buffers"),
         # a layered model's memory plan (edgeff.runtime.memory_plan.layered_training_plan) walks every layer
         **{(kind, "runtime"): ("training_shapes", "training_buffers") for kind in ("maxpool2d", "flatten")},
         # the int8 layered model in real numbers (edgeff.quant.layered.dequantized_network), the float twin of its
         # integer training; a dense layer has none yet and is refused there
         **{(kind, "ptq"): ("dequantize",) for kind in ("conv2d", "maxpool2d", "flatten")},
         **{(kind, "cost"): ("int8_ff_memory",) for kind in KINDS}}
DECLARED_PAIRS = [(kind, name) for kind in KINDS for name in DECLARED[kind]]
MISSING_PAIRS = [(kind, name) for kind in KINDS for name in FACETS if name not in DECLARED[kind]]


def test_every_facet_has_its_contract():
    assert set(REQUIRED) == set(FACETS)


def test_every_kind_declares_its_facets():
    assert set(DECLARED) == set(KINDS)
    for kind in KINDS:
        assert facets_of(kind) == DECLARED[kind], kind


@pytest.mark.parametrize(("kind", "name"), DECLARED_PAIRS)
def test_every_declared_facet_has_its_functions(kind, name):
    module = facet(kind, name)
    missing = [attr for attr in (*REQUIRED[name], *EXTRA.get((kind, name), ())) if not hasattr(module, attr)]
    assert not missing, f"edgeff.ops.{kind}.{name} lacks {missing}"
    assert spec_class(kind).kind == kind


DOING = {"ptq": "quantizing {} layers", "runtime": "running {} layers in the integer runtime",
         "onnx_writer": "exporting {} layers to ONNX", "tflite_writer": "exporting {} layers to TFLite",
         "nir_writer": "exporting {} layers to NIR", "board_image": "writing {} layers into a board image"}


@pytest.mark.parametrize(("kind", "name"), MISSING_PAIRS)
def test_a_missing_facet_is_refused_naming_the_kind_and_the_backend(kind, name):
    with pytest.raises(EdgeFFError, match=rf"^{DOING[name].format(kind)} is not supported yet: edgeff/ops/{kind}/ "
                                          rf"has no {name} facet"):
        facet(kind, name)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_free_facets_load_without_torch(kind):
    names = [n for n in TORCH_FREE if n in DECLARED[kind]]
    code = ("import sys; sys.modules['torch'] = None; sys.modules['brevitas'] = None\n"   # import torch -> error
            "from edgeff.op_registry import facet\n"
            f"for name in {names!r}: facet({kind!r}, name)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_unknown_kind_and_facet_are_refused_by_name():
    with pytest.raises(EdgeFFError, match="unknown layer kind 'conv9d'.*knows dense, conv2d, flatten"):
        facet("conv9d", "spec")
    with pytest.raises(ValueError, match="unknown facet 'jit'"):
        facet("dense", "jit")


SPEC_API = ("kind", "n_inputs", "n_outputs", "to_header", "float_tensors", "int8_tensors")


@pytest.mark.parametrize("kind", KINDS)
def test_every_spec_has_the_description_api(kind):
    missing = [attr for attr in SPEC_API if not hasattr(spec_class(kind), attr)]
    assert not missing, f"{spec_class(kind).__name__} lacks {missing}"


@pytest.mark.parametrize("norm_bits", [7, 15])
def test_dense_int8_tensors_of_the_spec_are_what_the_runtime_loads_and_writes(norm_bits):
    """The model file checks a layer's tensors from its spec; the runtime facet loads and saves them:
    the two agree, name for name, dtype for dtype and shape for shape."""
    spec = spec_class("dense")(in_features=6, out_features=4)
    layout = spec.int8_tensors(norm_bits)
    tensors = {f"layers.2.{suffix}": np.full(shape, 1 << 30 if suffix.endswith("multiplier") else 0, dtype)
               for suffix, (dtype, shape) in layout.items()}
    runtime = facet("dense", "runtime")
    layer = runtime.load(spec, 2, tensors, {"out_zero_point": -128, "norm_bits": norm_bits}, "test")
    written = runtime.tensors(layer, 2)
    assert {name: (t.dtype, t.shape) for name, t in written.items()} == \
        {name: (t.dtype, t.shape) for name, t in tensors.items()}
    wrong = dict(tensors, **{"layers.2.bias": tensors["layers.2.bias"].astype(np.int16)})
    with pytest.raises(EdgeFFError, match="layers.2.bias"):
        runtime.load(spec, 2, wrong, {"out_zero_point": -128, "norm_bits": norm_bits}, "test")


def test_only_the_kinds_with_an_update_rule_train_in_integers():
    """The MLP's integer trainer, the memory plan and the board's ef_layer_kind take these kinds; conv2d has the
    layered CwC rule (NumPy only, no C kernels yet)."""
    assert [kind for kind in KINDS if trains_in_integers(kind)] == ["dense"]
    assert [kind for kind in KINDS if trains_cwc_in_integers(kind)] == ["conv2d"]
    assert all("runtime" in facets_of(kind) for kind in KINDS)


def test_conv2d_int8_tensors_of_the_spec_are_what_the_runtime_loads_and_writes():
    spec = spec_class("conv2d")(in_channels=3, in_height=6, in_width=6, out_channels=4, kernel=3, padding=1)
    layout = spec.int8_tensors(7)
    tensors = {f"layers.1.{suffix}": np.full(shape, 1 << 30 if suffix == "multiplier" else 0, dtype)
               for suffix, (dtype, shape) in layout.items()}
    runtime = facet("conv2d", "runtime")
    layer = runtime.load(spec, 1, tensors, {"out_zero_point": -128}, "test")
    assert {name: (t.dtype, t.shape) for name, t in runtime.tensors(layer, 1).items()} == \
        {name: (t.dtype, t.shape) for name, t in tensors.items()}
    assert tensors["layers.1.weight"].shape == (4, 3, 3, 3)   # OHWI
    wrong = dict(tensors, **{"layers.1.weight": np.zeros((4, 3, 3, 3), np.int16)})
    with pytest.raises(EdgeFFError, match="layers.1.weight"):
        runtime.load(spec, 1, wrong, {"out_zero_point": -128}, "test")
