"""PNG plots of training (matplotlib, headless); every file is written atomically."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from edgeff.atomic_write import atomic_write_bytes  # noqa: E402


def save_figure(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_layer_accuracy(history: list, path, title: str):
    """Each layer's own multi-pass validation accuracy and the model's, per epoch (seed 001's view)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = [h["epoch"] for h in history]
    if history:
        for i in range(len(history[0]["val_per_layer"])):
            ax.plot(epochs, [h["val_per_layer"][i] for h in history], marker=".", label=f"layer {i + 1}")
        ax.plot(epochs, [h["val_model"] for h in history], marker="o", color="black", label="all layers")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (multi-pass)")
    ax.set_title(f"{title}: per-layer accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_gamma(history: list, path, title: str):
    """Collaboration strength gamma_l per layer over training (constant for F-CFF)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = [h["epoch"] for h in history]
    if history:
        for i in range(len(history[0]["gamma"])):
            ax.plot(epochs, [h["gamma"][i] for h in history], marker=".", label=f"gamma, layer {i + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("gamma")
    ax.set_title(f"{title}: collaboration strength")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
