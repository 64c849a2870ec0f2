"""PNG plots of training (matplotlib, headless); every file is written atomically."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from edgeff.atomic_write import atomic_write_bytes


def save_figure(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def line_plot(series: dict, path, title: str, xlabel: str, ylabel: str, marker=".", log2_x=False):
    """One line per entry of series: label -> (xs, ys); log2_x spaces the x axis by powers of two."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if log2_x:
        ax.set_xscale("log", base=2)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker=marker, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend()
    return save_figure(fig, path)


def plot_layer_accuracy(history: list, path, title: str):
    """Each layer's own multi-pass validation accuracy and the model's, per epoch (as Adamson 2025 plots them)."""
    epochs = [h["epoch"] for h in history]
    n = len(history[0]["val_per_layer"]) if history else 0
    series = {f"layer {i + 1}": (epochs, [h["val_per_layer"][i] for h in history]) for i in range(n)}
    if history:
        series["all layers"] = (epochs, [h["val_model"] for h in history])
    return line_plot(series, path, f"{title}: per-layer accuracy", "epoch", "validation accuracy (multi-pass)")


def plot_gamma(history: list, path, title: str):
    """Collaboration strength gamma_l per layer over training (constant for F-CFF)."""
    epochs = [h["epoch"] for h in history]
    n = len(history[0]["gamma"]) if history else 0
    series = {f"gamma, layer {i + 1}": (epochs, [h["gamma"][i] for h in history]) for i in range(n)}
    return line_plot(series, path, f"{title}: collaboration strength", "epoch", "gamma")


def grouped_bars(categories: list, series: dict, path, title: str, ylabel: str):
    """One group of bars per category, one bar per entry of series: label -> values (one per category)."""
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    width = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(categories))], values, width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(categories))], categories)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return save_figure(fig, path)
