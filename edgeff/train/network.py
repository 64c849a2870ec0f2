"""The Forward-Forward MLP and its Collaborative variants (Beigzad 2025), in PyTorch.

The network is a model description (edgeff.model_description) walked through the op registry: each layer's
torch module and forward pass come from its kind's op folder (edgeff/ops/dense/torch_module.py for the
FF dense layer: normalize the input's length, Linear, ReLU). "rms" normalization (the default) scales to unit
mean square, i.e. unit length times sqrt(width), so entries sit near 1 and Adam's steps have the same
effect at every width; "length" is Hinton's unit length, which the paper protocol's lr 0.03 assumes. A
layer's input is the previous layer's output *detached*: no gradient ever crosses a layer boundary, so every
weight update is local.

Goodness G_l = mean (or sum) of the squared activities of layer l. Collaborative FF (Beigzad 2025 eq. 5):
    G_l^collab = G_l + gamma_l * sum_{k != l} alpha_lk * G_k
with the other layers' goodness detached, so the coupling reweights layer l's own update without
sending gradient into layer k. F-CFF keeps gamma fixed; A-CFF learns it (eq. 7).
"""
import numpy as np
import torch
from torch import nn

from edgeff.data.labels import overlay_labels, overlay_neutral
from edgeff.model_description import ModelDescription
from edgeff.op_registry import layer_facet

EPS = 1e-8


def images_to_input(images: np.ndarray, n_classes: int) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] with the label pixels zeroed (the x0 of FFNetwork)."""
    return overlay_neutral(torch.from_numpy(images.astype(np.float32) / 255.0), n_classes, 0.0)


def normalize(x: torch.Tensor, kind: str = "rms") -> torch.Tensor:
    """Scale each row to unit mean square ("rms") or to unit length ("length")."""
    sq = (x * x).mean(dim=1, keepdim=True) if kind == "rms" else (x * x).sum(dim=1, keepdim=True)
    return x * torch.rsqrt(sq + EPS)


class FFNetwork(nn.Module):
    def __init__(self, layers, n_classes=10, label_value=1.0, goodness="mean", collab_mode="none",
                 gamma_init=1.0, head_layers=None, normalization="rms", qat=False):
        """layers: a ModelDescription, or the widths of an FF MLP (input, then each layer) with one
        `normalization`."""
        super().__init__()
        self.description = layers if isinstance(layers, ModelDescription) else ModelDescription.dense(
            list(layers), normalization)
        self.specs = self.description.layers
        self.normalization = self.description.normalization
        self.qat = qat
        self.sizes = self.description.sizes
        self.n_classes = n_classes
        self.label_value = float(label_value)
        self.goodness_kind = goodness
        self.collab_mode = collab_mode
        self.layers = nn.ModuleList(f.build(spec, qat) for f, spec in zip(self.facets, self.specs, strict=True))
        n = len(self.layers)
        self.head_layers = list(head_layers or (range(2, n + 1) if n > 1 else [1]))
        gamma = torch.full((n,), float(gamma_init) if collab_mode != "none" else 0.0)
        self.gamma = nn.Parameter(gamma, requires_grad=collab_mode == "adaptive")
        # alpha_lk: equal weight on every other layer (Beigzad 2025 leaves alpha open; this keeps
        # G^collab on the scale of one layer's goodness whatever the depth).
        alpha = (torch.ones(n, n) - torch.eye(n)) / max(n - 1, 1)
        self.register_buffer("alpha", alpha)
        self.head = nn.Linear(sum(self.sizes[l] for l in self.head_layers), n_classes)

    @property
    def facets(self) -> list:
        """Each layer's torch facet (the code of its kind, from the op registry)."""
        return [layer_facet(spec, "torch_module") for spec in self.specs]

    @property
    def n_layers(self):
        return len(self.layers)

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """The network's input x0 for uint8 images (label pixels zeroed)."""
        return images_to_input(images, self.n_classes)

    def activities(self, x: torch.Tensor) -> list:
        """ReLU outputs of every layer for inputs x (label already embedded)."""
        out = []
        for facet, spec, layer in zip(self.facets, self.specs, self.layers, strict=True):
            x = facet.forward(layer, spec, x.detach())
            out.append(x)
        return out

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        sq = h * h
        return sq.mean(dim=-1) if self.goodness_kind == "mean" else sq.sum(dim=-1)

    def layer_goodness(self, x: torch.Tensor) -> torch.Tensor:
        """(n_layers, N) goodness of every layer."""
        return torch.stack([self.goodness(h) for h in self.activities(x)])

    def collaborative(self, g: torch.Tensor) -> torch.Tensor:
        """Beigzad 2025 eq. 5 on an (n_layers, N) goodness tensor; the identity for plain FF."""
        if self.collab_mode == "none":
            return g
        return g + self.gamma[:, None] * (self.alpha @ g.detach())

    @torch.no_grad()
    def label_scores(self, x0: torch.Tensor) -> torch.Tensor:
        """(n_layers, N, n_classes) goodness of every layer for every candidate label.

        x0 holds images in [0, 1] with the label pixels zeroed. The first layer's op computes every label's
        activities at once (a one-hot overlay of constant value leaves every copy the same length); later
        layers run on all N * n_classes activities. Quantization-aware layers quantize the labelled input
        itself, so they run every labelled copy.
        """
        n = x0.shape[0]
        c = self.n_classes
        if self.qat:
            copies = overlay_labels(x0.repeat(c, 1), torch.arange(c).repeat_interleave(n), c, self.label_value)
            return self.layer_goodness(copies).reshape(self.n_layers, c, n).transpose(1, 2)
        h = self.facets[0].every_label_activities(self.layers[0], self.specs[0], x0, c, self.label_value)
        goods = [self.goodness(h)]
        for facet, spec, layer in zip(self.facets[1:], self.specs[1:], self.layers[1:], strict=True):
            h = facet.forward(layer, spec, h)
            goods.append(self.goodness(h))
        return torch.stack(goods).reshape(self.n_layers, n, c)

    def neutral_input(self, x0: torch.Tensor) -> torch.Tensor:
        """Images with every label pixel at label_value / n_classes: the one-pass input (no label guessed)."""
        return overlay_neutral(x0.clone(), self.n_classes, self.label_value / self.n_classes)

    def head_features(self, x0: torch.Tensor) -> torch.Tensor:
        """Concatenated normalized activities of the head layers, for the one-pass softmax head."""
        acts = self.activities(self.neutral_input(x0))
        return torch.cat([normalize(acts[l - 1], self.normalization) for l in self.head_layers], dim=1).detach()

    def head_logits(self, x0: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_features(x0))
