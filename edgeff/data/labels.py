"""The Forward-Forward label overlay and the choice of negative labels (shared by every backend).

Hinton's FF writes the label into the image: the first `n_classes` pixels become a one-hot vector scaled
by `value`. Positive samples carry the true label; negative samples a wrong one; one-pass inference gives
every label pixel the same neutral value. The overlay is written here once: it only indexes, so the same
code writes NumPy arrays (float, or the int8 inputs of the runtime and the exporters) and torch tensors.
"""
import numpy as np


def overlay_labels(x, labels, n_classes: int, on, off=0):
    """In place (and returned): the first n_classes columns of x become `off`, row i's column labels[i]
    becomes `on`. x: (N, d) NumPy array or torch tensor; labels: N integers of the same library."""
    x[:, :n_classes] = off
    x[np.arange(len(labels)), labels] = on
    return x


def overlay_neutral(x, n_classes: int, value):
    """In place (and returned): every label pixel (the first n_classes columns of x) becomes `value`."""
    x[:, :n_classes] = value
    return x


def random_wrong_labels(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random label different from the true one, for every sample.

    Shuffling labels instead would hand ~1/n_classes of the "negatives" their true label.
    """
    offset = rng.integers(1, n_classes, size=len(labels))
    return (labels + offset) % n_classes


def hardest_wrong_labels(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The wrong label the model scores highest (scores: (N, n_classes) goodness per label).
    Integer scores stay integers (the board's hard negatives never touch a float)."""
    masked = np.array(scores, copy=True)
    lowest = np.iinfo(masked.dtype).min if masked.dtype.kind in "iu" else -np.inf
    masked[np.arange(len(labels)), labels] = lowest
    return masked.argmax(axis=1)


def spatial_label_patterns(shape, n_classes: int, amplitude: float) -> np.ndarray:
    """(n_classes, C, H, W) float32: the label overlay of a convolutional FF network, one 2D Fourier mode
    per label added to the whole image (Scodellaro's spatially extended label, Ortiz Torres et al. sec. II-B a), so
    every filter at every position sees the label. Label j is a cosine of amplitude `amplitude`, its wave
    turned by j * pi / n_classes and a wavelength of a quarter of the image's larger side: the labels
    differ in orientation only."""
    c, h, w = shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    wavelength = max(h, w) / 4
    out = np.empty((n_classes, c, h, w), np.float32)
    for j in range(n_classes):
        angle = np.pi * j / n_classes
        out[j] = amplitude * np.cos(2 * np.pi * (rows * np.cos(angle) + cols * np.sin(angle)) / wavelength)
    return out
