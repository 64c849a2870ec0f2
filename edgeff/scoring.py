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


def early_exit(scores: np.ndarray, labels: np.ndarray, layer_macs, threshold: float, exits, final_layers) -> dict:
    """Early-exit inference (LightFF, Ortiz Torres et al. sec. II-B d) from every layer's goodness.

    A sample stops at the first layer of `exits` (1-based, increasing) whose confidence, the largest
    softmax probability of its class goodness, reaches `threshold`, and takes that layer's argmax; a
    sample no layer is sure of runs to the end and takes the argmax of `final_layers`' summed goodness.
    layer_macs[l - 1]: MACs of layer l for one image. Returns the accuracy, the mean MACs per image (the
    layers run up to the exit) and the share of samples that left at each exit layer."""
    cumulative = np.cumsum(layer_macs)
    n = len(labels)
    pred = scores[[l - 1 for l in final_layers]].sum(axis=0).argmax(axis=1)
    exit_layer = np.full(n, max(max(final_layers), max(exits)))
    undecided = np.ones(n, bool)
    for l in exits:
        g = scores[l - 1] - scores[l - 1].max(axis=1, keepdims=True)
        p = np.exp(g) / np.exp(g).sum(axis=1, keepdims=True)
        leave = undecided & (p.max(axis=1) >= threshold)
        pred[leave] = g[leave].argmax(axis=1)
        exit_layer[leave] = l
        undecided &= ~leave
    return {"threshold": float(threshold), "accuracy": float((pred == labels).mean()),
            "macs_per_image": float(cumulative[exit_layer - 1].mean()),
            "exit_share": {int(l): float((exit_layer == l).mean()) for l in sorted(set(exit_layer.tolist()))}}
