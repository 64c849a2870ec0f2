"""Accuracy of a trained FF network: multi-pass (goodness per label) and one-pass (softmax head)."""
import numpy as np
import torch

from edgeff.errors import EdgeFFError
from edgeff.scoring import early_exit, evaluate_split
from edgeff.train.network import FFNetwork, images_to_input

CHUNK = 1000
__all__ = ["images_to_input", "label_scores", "one_pass_predictions", "evaluate", "early_exit_table"]


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


def early_exit_table(net, images, labels, thresholds, final_layers, layer_macs) -> list:
    """Early-exit accuracy and MACs per image at each threshold (edgeff.scoring.early_exit) of a layered FF
    network (edgeff.train.conv_network): any trained layer may exit; layer_macs are each layer's MACs per image
    (edgeff.profiler.energy_model.inference_macs)."""
    if getattr(net, "objective", None) not in ("cwc", "overlay"):
        raise EdgeFFError("--early-exit needs a layered FF network (conv blocks, objective cwc or overlay) whose "
                          "layers each predict; this model is not one")
    scores = label_scores(net, images)
    return [early_exit(scores, labels, layer_macs, t, [k + 1 for k in net.trained], final_layers)
            for t in thresholds]
