"""The FF convolutional block (Ortiz Torres et al. sec. III): BatchNorm, Conv2d, ReLU, optional max pooling.

Its trainer, profiler, PTQ, integer runtime (inference and the CwC update rule, on the active kernel set: the
NumPy specification or its C twin, cwc_train.c), int8 ONNX / TFLite writer and board-image (format 2) facets
exist; its NIR writer does not yet, so the registry refuses that backend by name."""
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "cost", "board_image")
