"""The layered FF network: conv blocks, max pooling, flatten and dense layers from a model description, in PyTorch.

Each layer's module and forward pass come from its kind's op folder through the registry (conv2d: BatchNorm,
Conv, ReLU, max pooling; maxpool2d; flatten; dense: normalize, Linear, ReLU). Three objectives train it:

  cwc       channel-wise competitive FF (Papachristodoulou et al., AAAI 2024; Ortiz Torres et al. eqs. 2-3): a layer's
            output channels (a dense layer's units) split into one group per class, G_{n,j} = the mean
            square of group j's activities, and the loss is the softmax cross-entropy of G against the
            true class. No negative data: one forward pass gives every class's goodness.
  overlay   FF with a label in the input: the spatially extended label (edgeff.data.labels.
            spatial_label_patterns) added to the image, goodness = the mean square of the whole layer,
            Hinton's softplus loss on a positive and a negative (wrong-label) pass; every class costs a pass.
  backprop  the same layers trained end to end through the softmax head, the reference CNN.

Which layers a loss reaches is the trainer's schedule (edgeff.train.schedules): a layer's input is
detached at the start of its group, so no gradient crosses a group boundary.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeff.data.labels import spatial_label_patterns
from edgeff.errors import EdgeFFError
from edgeff.model_description import ModelDescription
from edgeff.op_registry import layer_facet
from edgeff.train.network import normalize

OBJECTIVES = ("cwc", "overlay", "backprop")


class ConvFFNetwork(nn.Module):
    def __init__(self, description: ModelDescription, n_classes: int = 10, objective: str = "cwc",
                 head_layers=None, label_value: float = 1.0):
        super().__init__()
        if objective not in OBJECTIVES:
            raise EdgeFFError(f"objective {objective!r} must be one of {', '.join(OBJECTIVES)}")
        self.description = description
        self.specs = description.layers
        self.sizes = description.sizes
        self.input_shape = description.input_shape
        self.n_classes = n_classes
        self.objective = objective
        self.label_value = float(label_value)
        self.layers = nn.ModuleList(f.build(spec, False) for f, spec in zip(self.facets, self.specs, strict=True))
        # a layer with parameters has a loss of its own; a parameterless one (flatten, maxpool2d) only passes
        # activities on: no loss, no optimizer state, no early exit, though it keeps its number and its goodness
        self.trained = [k for k, layer in enumerate(self.layers) if any(True for _ in layer.parameters())]
        if not self.trained:
            raise EdgeFFError(f"the layers ({', '.join(spec.kind for spec in self.specs)}) have no parameters, so "
                              "there is nothing to train; add a conv2d or dense layer")
        if objective == "cwc":
            for k, spec in enumerate(self.specs):
                width = spec.out_shape[0]
                if width % n_classes == 0:
                    continue
                if k in self.trained:
                    raise EdgeFFError(f"layer {k + 1} has {width} output channels, which do not split into "
                                      f"{n_classes} class groups (channel-wise competitive FF); give it a "
                                      f"multiple of {n_classes}")
                # every layer's class goodness is scored (label_scores), the parameterless ones' too
                raise EdgeFFError(f"layer {k + 1} ({spec.kind}) gives activities of shape {spec.out_shape}, whose "
                                  f"{width} channels do not split into {n_classes} class groups (channel-wise "
                                  "competitive FF scores every layer); put it after a layer with a multiple of "
                                  f"{n_classes} output channels")
        n = len(self.layers)
        self.head_layers = list(head_layers or [n])
        self.head = nn.Linear(sum(self.sizes[l] for l in self.head_layers), n_classes)
        if objective == "overlay":
            patterns = spatial_label_patterns(self.input_shape, n_classes, self.label_value)
            self.register_buffer("patterns", torch.from_numpy(patterns), persistent=False)

    @property
    def facets(self) -> list:
        return [layer_facet(spec, "torch_module") for spec in self.specs]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """uint8 images (N, pixels) -> float32 in [0, 1], shaped as the first layer takes them."""
        return torch.from_numpy(images.astype(np.float32) / 255.0).reshape(len(images), *self.input_shape)

    def with_labels(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images with each one's label pattern added (the overlay objective)."""
        return x + self.patterns[labels]

    def run(self, x: torch.Tensor, start: int, stop: int, cut: bool = True) -> list:
        """The outputs of layers start..stop-1 (0-based) for x, the input of layer `start`; with cut, x is
        detached first, so no gradient of these outputs reaches an earlier layer."""
        out = []
        h = x.detach() if cut else x
        for k in range(start, stop):
            h = self.facets[k].forward(self.layers[k], self.specs[k], h)
            out.append(h)
        return out

    def activities(self, x: torch.Tensor) -> list:
        """Every layer's output, each layer's input detached (inference, calibration)."""
        out, h = [], x
        for k in range(self.n_layers):
            h = self.run(h, k, k + 1)[0]
            out.append(h)
        return out

    def class_goodness(self, h: torch.Tensor) -> torch.Tensor:
        """(N, n_classes) G_{n,j}: the mean square of class group j's channels (Ortiz Torres et al. eq. 2). NCHW is
        channel-major, so the groups of a flattened activity are contiguous slices too."""
        return (h * h).reshape(len(h), self.n_classes, -1).mean(dim=2)

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """(N,) the mean square of a whole layer's activities (the overlay objective)."""
        return (h * h).flatten(1).mean(dim=1)

    def layer_loss(self, h: torch.Tensor, y: torch.Tensor, n_pos: int, theta: float) -> torch.Tensor:
        """One layer's FF loss: CwC's softmax cross-entropy of the class goodness (Ortiz Torres et al. eq. 3), or the
        overlay's softplus on the first n_pos (positive) rows against the rest (negative)."""
        if self.objective == "cwc":
            return F.cross_entropy(self.class_goodness(h), y)
        g = self.goodness(h)
        return 0.5 * (F.softplus(theta - g[:n_pos]).mean() + F.softplus(g[n_pos:] - theta).mean())

    @torch.no_grad()
    def label_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(n_layers, N, n_classes) goodness of every layer for every class: one pass for cwc (the class
        groups), one pass per class for the overlay."""
        if self.objective == "cwc":
            return torch.stack([self.class_goodness(h) for h in self.activities(x)])
        if self.objective == "backprop":
            raise EdgeFFError("a backprop-trained network has no goodness to score; evaluate its softmax "
                              "head (--mode one)")
        n, c = len(x), self.n_classes
        per_class = [torch.stack([self.goodness(h) for h in self.activities(self.with_labels(x, torch.full(
            (n,), j, dtype=torch.long)))]) for j in range(c)]
        return torch.stack(per_class, dim=2)

    def head_input(self, acts: list) -> torch.Tensor:
        return torch.cat([normalize(acts[l - 1].flatten(1)) for l in self.head_layers], dim=1)

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """The one-pass head's input from frozen FF layers (an overlay network sees no label: the mean of
        the patterns, which is the neutral label)."""
        if self.objective == "overlay":
            x = x + self.patterns.mean(dim=0)
        return self.head_input(self.activities(x)).detach()

    def head_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.objective == "backprop":   # end to end: the head's gradient reaches every layer
            return self.head(self.head_input(self.run(x, 0, self.n_layers, cut=False)))
        return self.head(self.head_features(x))
