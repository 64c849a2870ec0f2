"""The FF convolutional block (seed 002 sec. III): BatchNorm, Conv2d, ReLU, optional max pooling.

Its trainer and profiler facets exist; its integer backends (PTQ, runtime, ONNX / TFLite writers, board
image) do not yet, so the registry refuses them by name (issue 19 builds them)."""
FACETS = ("spec", "torch_module", "cost")
