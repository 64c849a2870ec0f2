"""The conv block in the trainer: BatchNorm2d -> Conv2d -> ReLU -> MaxPool2d (pool > 1), on NCHW activities.

The module holds `norm` and `conv`, so its parameters keep the model file's names layers.<i>.norm.* and
layers.<i>.conv.* (Conv2dSpec.float_tensors); pooling has no parameters and is applied by `forward`.
"""
import torch
import torch.nn.functional as F
from torch import nn

from edgeff.errors import EdgeFFError


class ConvBlock(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.norm = nn.BatchNorm2d(spec.in_channels)
        self.conv = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.padding)


def build(spec, qat: bool) -> nn.Module:
    if qat:
        raise EdgeFFError("quantization-aware training of conv2d layers is not supported yet; set "
                          "[model] qat = false")
    return ConvBlock(spec)


def forward(module: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(module.conv(module.norm(x)))
    return F.max_pool2d(h, spec.pool) if spec.pool > 1 else h
