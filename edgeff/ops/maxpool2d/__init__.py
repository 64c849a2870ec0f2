"""Max pooling as a layer of its own, between conv blocks: {kind = "maxpool2d", size = 2}.

A parameterless layer, as flatten: it trains nothing and has no loss (edgeff.train.conv_network). A conv
block's own `pool` parameter stays (Ortiz Torres et al.'s blocks pool inside the block, so their FF loss sees the pooled
output; with this layer the block before it is scored on its unpooled output).

Its trainer, profiler, PTQ, integer-inference, int8 ONNX / TFLite writer and board-image (format 2) facets
exist; its NIR writer does not (the registry refuses it by name)."""
FACETS = ("spec", "torch_module", "ptq", "runtime", "onnx_writer", "tflite_writer", "cost", "board_image")
