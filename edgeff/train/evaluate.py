"""Accuracy of a trained FF network: multi-pass (goodness per label) and one-pass (softmax head)."""
import numpy as np
import torch

from edgeff.scoring import evaluate_split
from edgeff.train.network import FFNetwork, images_to_input

CHUNK = 1000
__all__ = ["images_to_input", "label_scores", "one_pass_predictions", "evaluate"]


@torch.no_grad()
def label_scores(net: FFNetwork, images: np.ndarray) -> np.ndarray:
    """(n_layers, N, n_classes) goodness of every layer for every candidate label (an FFNetwork or a
    layered edgeff.train.conv_network.ConvFFNetwork)."""
    parts = [net.label_scores(net.inputs(images[i:i + CHUNK]))
             for i in range(0, len(images), CHUNK)]
    return torch.cat(parts, dim=1).numpy()


@torch.no_grad()
def one_pass_predictions(net: FFNetwork, images: np.ndarray) -> np.ndarray:
    preds = [net.head_logits(net.inputs(images[i:i + CHUNK])).argmax(dim=1)
             for i in range(0, len(images), CHUNK)]
    return torch.cat(preds).numpy()


def evaluate(net: FFNetwork, images: np.ndarray, labels: np.ndarray, layers, mode="both") -> dict:
    """Accuracies on one split: multi-pass over `layers`, each layer alone, and the one-pass head."""
    return evaluate_split(lambda: label_scores(net, images), lambda: one_pass_predictions(net, images),
                          labels, layers, mode)

