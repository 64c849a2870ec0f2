"""What the parameterless layer kinds (maxpool2d, flatten) share in the integer backends: nothing to fold or
quantize, an int8 output at its input's scale and zero point (TFLite's MAX_POOL_2D and RESHAPE keep them), no
tensors, and nothing to train. Each kind's ptq and runtime facets take these and add only their forward."""
from edgeff.errors import EdgeFFError
from edgeff.runtime import memory_plan


def fold(module, spec, padding: str = "batchnorm"):
    return module   # no parameters


def dequantize(module, spec, index: int, tensors: dict, entry: dict):
    return module   # no parameters, no range of its own


def quantize(spec, module, index: int, activities, input_quant: dict, qat: bool, percentile: float, norm_bits: int,
             rounding: str):
    """No tensors; the header entry repeats the input's scale and zero point."""
    return {}, {"out_scale": input_quant["scale"], "out_zero_point": input_quant["zero_point"]}


def check_passthrough(spec, index: int, quant: dict, where):
    """Refuse a header entry whose output quantization is not its input's."""
    if quant["in_zero_point"] != quant["out_zero_point"] or quant["in_scale"] != quant["out_scale"]:
        raise EdgeFFError(f"{where}: layer {index + 1} ({spec.kind}) must keep its input's scale and zero point; "
                          "the file is corrupt")


def tensors(layer, index: int) -> dict:
    return {}


def training_shapes(spec, layer, in_zero_point: int) -> dict:
    """What a training step's plan (edgeff.runtime.memory_plan) needs of the layer: its input and output."""
    return memory_plan.parameterless_shapes(spec)


def training_buffers(spec, index: int, trained: bool) -> list:
    return []   # no parameters, no constants
