"""Flatten: a (channels, height, width) activity as one vector, between the conv blocks and a dense layer.

Its trainer, profiler, PTQ, integer-inference and int8 ONNX / TFLite writer facets exist; its other integer
backends do not yet (the registry refuses them by name)."""
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "cost")
