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


def evaluate_split(scores_fn, one_pass_predict_fn, labels: np.ndarray, layers, mode="both") -> dict:
    """Accuracies on one split: multi-pass over `layers`, each layer alone, and the one-pass head.
    scores_fn() gives the (n_layers, N, n_classes) goodness; one_pass_predict_fn() the head's labels."""
    out = {"n_samples": len(labels)}
    if mode in ("multi", "both"):
        scores = scores_fn()
        out["multi_pass"] = multi_pass_accuracy(scores, labels, layers)
        out["multi_pass_layers"] = list(layers)
        out["per_layer"] = per_layer_accuracy(scores, labels)
    if mode in ("one", "both"):
        out["one_pass"] = float((np.asarray(one_pass_predict_fn()) == labels).mean())
    return out
