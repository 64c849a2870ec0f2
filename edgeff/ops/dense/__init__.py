"""The FF dense layer: normalize the input, Linear, ReLU; its code for every backend, one module each."""
# every backend's facet (edgeff.op_registry.FACETS)
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "nir_writer", "cost",
          "board_image")
