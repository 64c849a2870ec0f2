"""The dense layer for quantization-aware training with Brevitas (`[model] qat = true`).

The layer trains through the integer runtime's number formats, as fake quantization: its normalized
input on a fixed int8 grid (scale sqrt(D)/128 for RMS normalization: the 1/128 of TFLite's
L2_NORMALIZATION on the unit vector), per-channel int8 weights (scale max|w|/127, as ptq.py),
an int32 bias on the input x weight scale, and a uint8 ReLU output (the runtime's int8 activation with
zero point -128) whose range is the running maximum of the batches' activities. That range is not
learned: Brevitas' default learned range shrinks to clip the large activities that FF's goodness is made
of, and cost about a point of accuracy on the board network (benchmarks/qat_accuracy.py).
"""
import math

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.core.stats import StatsOp
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat, Int32Bias, Uint8ActPerTensorFloat


class QuantFFLinear(qnn.QuantLinear):
    """Linear + ReLU of one FF layer with int8 input, int8 per-channel weights, int32 bias, uint8 output."""

    def __init__(self, d_in: int, d_out: int, normalization: str):
        unit = math.sqrt(d_in) if normalization == "rms" else 1.0   # the normalized input's length
        super().__init__(d_in, d_out, bias=True, weight_quant=Int8WeightPerChannelFloat, bias_quant=Int32Bias,
                         input_quant=Int8ActPerTensorFloat, input_scaling_impl_type=ScalingImplType.CONST,
                         input_scaling_init=unit, return_quant_tensor=False)
        self.act = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, scaling_impl_type=ScalingImplType.STATS,
                                 scaling_stats_op=StatsOp.MAX, return_quant_tensor=False)

    def forward(self, x):
        return self.act(super().forward(x))

    def output_scale(self) -> float:
        return float(self.act.act_quant.scale())

    def quantized_weight(self) -> torch.Tensor:
        """The weights as the forward pass uses them (dequantized int8)."""
        return self.quant_weight().value.detach()
