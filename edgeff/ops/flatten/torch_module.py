"""Flatten in the trainer: (N, C, H, W) -> (N, C*H*W), torch's order. No parameters."""
import torch
from torch import nn

from edgeff.errors import EdgeFFError


def build(spec, qat: bool) -> nn.Module:
    if qat:
        raise EdgeFFError("quantization-aware training of flatten layers is not supported yet; set "
                          "[model] qat = false")
    return nn.Identity()   # a module, so layer i of the model file stays layers.<i> for every kind


def forward(module: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)
