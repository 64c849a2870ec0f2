"""The op registry: which layer kinds this EdgeFF knows, and where each kind's code lives per backend.

One folder per layer kind, edgeff/ops/<kind>/, holds everything about that kind, one module per backend
(a "facet"): its spec (the model description's entry, core), its torch module (trainer), its post-training
quantization, its integer runtime layer with the integer update rule, its ONNX and TFLite writers, its
profiler cost model and its board-image encoding. Every backend walks a model description's layers and
asks the registry for the facet of each layer's kind, like TensorFlow Lite Micro's op resolver: the
backends never name a layer kind, so a new kind is a new folder, not an edit of every backend.

Facets are imported on first use by name, so this module, the model description and the torch-free
backends never load the trainer's or the exporters' dependencies (torch, Brevitas, onnx) to find a
layer's runtime code. Which facet may import what is checked by the import-linter contracts in
pyproject.toml ("op specs are core", "torch-free facets").
"""
import importlib

from edgeff.errors import EdgeFFError

KINDS = ("dense",)
# the modules every op folder has (tests/test_op_registry.py checks each kind has each, with its functions)
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "cost", "board_image")


def facet(kind: str, name: str):
    """The module edgeff.ops.<kind>.<name>: one layer kind's code for one backend."""
    if kind not in KINDS:
        raise EdgeFFError(f"unknown layer kind {kind!r}; this EdgeFF knows {', '.join(KINDS)} "
                          "(a newer EdgeFF may have written the model: upgrade to read it)")
    if name not in FACETS:
        raise ValueError(f"unknown facet {name!r}; the facets are {', '.join(FACETS)}")
    return importlib.import_module(f"edgeff.ops.{kind}.{name}")


def spec_class(kind: str):
    """The frozen dataclass that describes one layer of this kind in a model description."""
    return facet(kind, "spec").SPEC


def layer_facet(layer, name: str):
    """The facet for a layer spec (an instance of a spec class)."""
    return facet(layer.kind, name)
