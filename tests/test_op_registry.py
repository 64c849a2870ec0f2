"""The op registry: every layer kind has every backend's facet, the facets a gateway runs load without torch,
and an unknown kind or facet is refused by name."""
import subprocess
import sys

import numpy as np
import pytest

from edgeff.errors import EdgeFFError
from edgeff.op_registry import FACETS, KINDS, facet, spec_class

# what each facet must define for the backends that walk the model description through it
REQUIRED = {
    "spec": ("SPEC",),
    "torch_module": ("build", "forward", "every_label_activities"),
    "ptq": ("quantize", "fresh_weights"),
    "onnx_writer": ("float_parameters", "float_forward", "float_every_label_activities", "check_int8_exportable",
                    "int8_forward"),
    "tflite_writer": ("check_exportable", "constants", "forward"),
    "cost": ("float32_memory", "gradient_elements", "int8_backprop_memory", "int8_parameters", "inference_memory",
             "operation_counts"),
    "board_image": ("RECORD", "pack_record", "unpack_record", "check_record", "array_specs"),
    "runtime": ("load", "tensors", "every_label_outputs", "initial_masters", "load_masters", "master_tensors",
                "update"),
}
TORCH_FREE = ("spec", "runtime", "cost", "board_image")


def test_every_facet_has_its_contract():
    assert set(REQUIRED) == set(FACETS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", FACETS)
def test_every_kind_has_every_facet(kind, name):
    module = facet(kind, name)
    missing = [attr for attr in REQUIRED[name] if not hasattr(module, attr)]
    assert not missing, f"edgeff.ops.{kind}.{name} lacks {missing}"
    assert spec_class(kind).kind == kind


@pytest.mark.parametrize("kind", KINDS)
def test_torch_free_facets_load_without_torch(kind):
    names = [n for n in TORCH_FREE if n in FACETS]
    code = ("import sys; sys.modules['torch'] = None; sys.modules['brevitas'] = None\n"   # import torch -> error
            "from edgeff.op_registry import facet\n"
            f"for name in {names!r}: facet({kind!r}, name)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_unknown_kind_and_facet_are_refused_by_name():
    with pytest.raises(EdgeFFError, match="unknown layer kind 'conv9d'.*knows dense"):
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
