"""Accuracy of a trained FF network: multi-pass (goodness per label) and one-pass (softmax head)."""
import numpy as np
import torch

from edgeff.data.labels import overlay_neutral
from edgeff.scoring import evaluate_split
from edgeff.train.network import FFNetwork

CHUNK = 1000


def images_to_input(images: np.ndarray, n_classes: int) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] with the label pixels zeroed (the x0 of FFNetwork)."""
    return overlay_neutral(torch.from_numpy(images.astype(np.float32) / 255.0), n_classes, 0.0)


@torch.no_grad()
def label_scores(net: FFNetwork, images: np.ndarray) -> np.ndarray:
    """(n_layers, N, n_classes) goodness of every layer for every candidate label."""
    parts = [net.label_scores(images_to_input(images[i:i + CHUNK], net.n_classes))
             for i in range(0, len(images), CHUNK)]
    return torch.cat(parts, dim=1).numpy()


@torch.no_grad()
def one_pass_predictions(net: FFNetwork, images: np.ndarray) -> np.ndarray:
    preds = [net.head_logits(images_to_input(images[i:i + CHUNK], net.n_classes)).argmax(dim=1)
             for i in range(0, len(images), CHUNK)]
    return torch.cat(preds).numpy()


def evaluate(net: FFNetwork, images: np.ndarray, labels: np.ndarray, layers, mode="both") -> dict:
    """Accuracies on one split: multi-pass over `layers`, each layer alone, and the one-pass head."""
    return evaluate_split(lambda: label_scores(net, images), lambda: one_pass_predictions(net, images),
                          labels, layers, mode)
