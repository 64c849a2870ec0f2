"""Max pooling in the trainer: F.max_pool2d(x, size) on NCHW activities (kernel = stride = size), the
pooling a conv block with `pool` applies (edgeff/ops/conv2d/torch_module.py). No parameters."""
import torch
import torch.nn.functional as F
from torch import nn

from edgeff.errors import EdgeFFError


def build(spec, qat: bool) -> nn.Module:
    if qat:
        raise EdgeFFError("quantization-aware training of maxpool2d layers is not supported yet; set "
                          "[model] qat = false")
    return nn.Identity()   # a module, so layer i of the model file stays layers.<i> for every kind


def forward(module: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, spec.size)
