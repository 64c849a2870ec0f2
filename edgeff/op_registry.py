"""The op registry: which layer kinds this EdgeFF knows, and where each kind's code lives per backend.

One folder per layer kind, edgeff/ops/<kind>/, holds everything about that kind, one module per backend
(a "facet"): its spec (the model description's entry, core), its torch module (trainer), its post-training
quantization, its integer runtime layer with the integer update rule, its ONNX, TFLite and NIR writers, its
profiler cost model and its board-image encoding. Every backend walks a model description's layers and
asks the registry for the facet of each layer's kind, like TensorFlow Lite Micro's op resolver: the
backends never name a layer kind, so a new kind is a new folder, not an edit of every backend.

A kind declares the facets it has (FACETS in its package, edgeff/ops/<kind>/__init__.py): a kind that is
built for some backends only (conv2d trains, profiles, quantizes, runs int8 inference and exports to int8
ONNX and TFLite, writes a board image, but has no NIR writer yet) is refused by the others with a message
naming the kind and what is missing, never half-run.

Facets are imported on first use by name, so this module, the model description and the torch-free
backends never load the trainer's or the exporters' dependencies (torch, Brevitas, onnx) to find a
layer's runtime code. Which facet may import what is checked by the import-linter contracts in
pyproject.toml ("op specs are core", "torch-free facets").
"""
import importlib

from edgeff.errors import EdgeFFError

KINDS = ("dense", "conv2d", "flatten", "maxpool2d")
# the modules an op folder may have (tests/test_op_registry.py checks each declared one has its functions)
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "nir_writer", "cost",
          "board_image")
# what a user was doing when a kind lacks the facet: "quantizing conv2d layers is not supported yet"
DOING = {"spec": "describing {} layers", "torch_module": "training {} layers", "ptq": "quantizing {} layers",
         "runtime": "running {} layers in the integer runtime", "onnx_writer": "exporting {} layers to ONNX",
         "tflite_writer": "exporting {} layers to TFLite", "nir_writer": "exporting {} layers to NIR",
         "cost": "profiling {} layers",
         "board_image": "writing {} layers into a board image"}


def _check_kind(kind: str):
    if kind not in KINDS:
        raise EdgeFFError(f"unknown layer kind {kind!r}; this EdgeFF knows {', '.join(KINDS)} "
                          "(a newer EdgeFF may have written the model: upgrade to read it)")


def facets_of(kind: str) -> tuple:
    """The facets a kind declares (edgeff/ops/<kind>/__init__.py's FACETS)."""
    _check_kind(kind)
    return importlib.import_module(f"edgeff.ops.{kind}").FACETS


def facet(kind: str, name: str):
    """The module edgeff.ops.<kind>.<name>: one layer kind's code for one backend."""
    _check_kind(kind)
    if name not in FACETS:
        raise ValueError(f"unknown facet {name!r}; the facets are {', '.join(FACETS)}")
    if name not in facets_of(kind):
        raise EdgeFFError(f"{DOING[name].format(kind)} is not supported yet: edgeff/ops/{kind}/ has no {name} "
                          f"facet (it has {', '.join(facets_of(kind))}); keep this model in float "
                          "(`edgeff train`, `edgeff eval`, `edgeff profile`)")
    return importlib.import_module(f"edgeff.ops.{kind}.{name}")


def spec_class(kind: str):
    """The frozen dataclass that describes one layer of this kind in a model description."""
    return facet(kind, "spec").SPEC


def layer_facet(layer, name: str):
    """The facet for a layer spec (an instance of a spec class)."""
    return facet(layer.kind, name)


def trains_in_integers(kind: str) -> bool:
    """Whether the kind's runtime facet has the integer update rule (`update`): the kinds the integer trainer,
    the runtime's memory plan and the board's C layer kernels (ef_layer_kind) take."""
    return "runtime" in facets_of(kind) and hasattr(facet(kind, "runtime"), "update")


def trains_cwc_in_integers(kind: str) -> bool:
    """Whether the kind's runtime facet has the integer rule of a layered channel-wise competitive model
    (`cwc_update`, edgeff.runtime.int_layered_training; C kernels in cwc_train.c and cwc_model.c, a board image of
    format 2, but no case in the FF layer dispatch), so the kinds of trains_in_integers (the MLP's trainer, the
    MLP's memory plan, ef_layer_kind) stay dense alone (a layered model's memory plan is
    edgeff.runtime.memory_plan.layered_training_plan)."""
    return "runtime" in facets_of(kind) and hasattr(facet(kind, "runtime"), "cwc_update")
