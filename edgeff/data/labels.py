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
