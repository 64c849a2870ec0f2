"""The dense layer in the trainer: normalize (edgeff.train.network.normalize), Linear, ReLU.

The module is a plain nn.Linear (or, for quantization-aware training, Brevitas' QuantFFLinear of
qat_module.py), so its parameters keep the model file's names layers.<i>.weight / layers.<i>.bias; the
normalization and the activation are applied by `forward` around it.
"""
import torch
from torch import nn

from edgeff.train.network import EPS, normalize


def build(spec, qat: bool) -> nn.Module:
    if qat:   # Brevitas is imported only for quantization-aware models
        from edgeff.ops.dense.qat_module import QuantFFLinear

        return QuantFFLinear(spec.in_features, spec.out_features, spec.normalization)
    return nn.Linear(spec.in_features, spec.out_features)


def forward(module: nn.Module, spec, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(module(normalize(x, spec.normalization)))


def every_label_activities(module: nn.Module, spec, x0: torch.Tensor, n_classes: int, label_value: float):
    """(N * n_classes, out) activities of the first layer for every one-hot label of value label_value.

    x0 holds images with the label pixels zeroed. Every labelled copy has the same length, so this is one
    shared matmul plus a rank-1 correction per label (label_value * column c of W, scaled by the shared
    normalizer), not n_classes matmuls.
    """
    n, d = x0.shape
    c = n_classes
    w, b = module.weight, module.bias
    divisor = d if spec.normalization == "rms" else 1
    scale = torch.rsqrt(((x0 * x0).sum(dim=1, keepdim=True) + label_value ** 2) / divisor + EPS)
    shared = (x0 @ w.T) * scale + b                                   # (N, out)
    label_cols = label_value * w[:, :c].T                             # (C, out)
    h = torch.relu(shared[:, None, :] + scale[:, :, None] * label_cols[None])  # (N, C, out)
    return h.reshape(n * c, -1)
