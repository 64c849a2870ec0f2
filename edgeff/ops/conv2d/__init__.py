"""The FF convolutional block (Ortiz Torres et al. sec. III): BatchNorm, Conv2d, ReLU, optional max pooling.

Its trainer, profiler, PTQ, integer runtime (inference and the CwC update rule, NumPy) and TFLite-writer facets
exist; its ONNX writer, board image and C training kernels do not yet, so the registry refuses those backends
by name."""
FACETS = ("spec", "torch_module", "ptq", "runtime", "tflite_writer", "cost")
