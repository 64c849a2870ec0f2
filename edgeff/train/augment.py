"""Training-time augmentation of images for layered (convolutional) networks: random translations.

Each training image moves by its own offset (dy, dx), drawn uniformly from [-shift, shift] at every step, the
vacated border filled with 0 (a Fashion-MNIST background pixel). A small CNN sees each digit or garment at
positions it never saw whole, which is what lets it generalize past the training set's fixed centering.
"""
import numpy as np
import torch
import torch.nn.functional as F


def random_shifts(x: torch.Tensor, shift: int, rng: np.random.Generator) -> torch.Tensor:
    """x (N, C, H, W) with image i moved down by dy_i and right by dx_i (negative: up, left), zero-filled."""
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    # padded[..., shift - dy + r, shift - dx + c] is pixel (r - dy, c - dx) of the image: it lands at (r, c)
    offsets = rng.integers(-shift, shift + 1, size=(n, 2))
    out = torch.empty_like(x)
    for dy, dx in np.unique(offsets, axis=0):
        rows = torch.from_numpy(np.flatnonzero((offsets[:, 0] == dy) & (offsets[:, 1] == dx)))
        top, left = shift - dy, shift - dx
        out[rows] = padded[rows, :, top:top + h, left:left + w]
    return out
