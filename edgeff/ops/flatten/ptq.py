"""The flatten layer's post-training quantization: nothing to quantize. Its int8 output has its input's scale and
zero point (a RESHAPE keeps them), so its header entry repeats the input's; no tensors."""


def fold(module, spec, padding: str = "batchnorm"):
    return module   # no parameters


def quantize(spec, module, index: int, activities, input_quant: dict, qat: bool, percentile: float, norm_bits: int,
             rounding: str):
    return {}, {"out_scale": input_quant["scale"], "out_zero_point": input_quant["zero_point"]}
