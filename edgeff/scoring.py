"""Accuracy from goodness scores (NumPy only; shared by the float trainer and the integer runtime).

scores: (n_layers, N, n_classes) goodness of every layer for every candidate label. Layers are numbered
from 1 wherever a user names them.
"""
from itertools import combinations

import numpy as np


def multi_pass_accuracy(scores: np.ndarray, labels: np.ndarray, layers) -> float:
    """Accuracy of argmax over labels of goodness summed over `layers`."""
    summed = scores[[l - 1 for l in layers]].sum(axis=0)
    return float((summed.argmax(axis=1) == labels).mean())


def per_layer_accuracy(scores: np.ndarray, labels: np.ndarray) -> list:
    return [multi_pass_accuracy(scores, labels, [l]) for l in range(1, scores.shape[0] + 1)]


def best_layer_subset(scores: np.ndarray, labels: np.ndarray) -> list:
    """The non-empty set of layers whose summed goodness classifies `labels` best (ties: more layers)."""
    n = scores.shape[0]
    subsets = [list(c) for k in range(n, 0, -1) for c in combinations(range(1, n + 1), k)]
    return max(subsets, key=lambda s: multi_pass_accuracy(scores, labels, s))
