"""The sweep report's plots: a metric per variant with 95% confidence intervals, and per-layer accuracy curves
with bands over seeds (Adamson 2025's figures)."""
import math

import matplotlib.pyplot as plt
import numpy as np

from edgeff.plots import save_figure


def plot_variants(variants: list, by_variant: dict, metric: str, path):
    """One column per variant: every seed's value (dots) and the mean with its 95% CI (bar)."""
    fig, ax = plt.subplots(figsize=(max(4.8, 1.1 * len(variants) + 2), 4.0))
    for i, v in enumerate(variants):
        values = by_variant[v["variant"]]
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), values, s=10, alpha=0.5, color="tab:gray")
        low, high = v["ci95"] or (v["mean"], v["mean"])
        ax.errorbar(i, v["mean"], yerr=[[v["mean"] - low], [high - v["mean"]]], fmt="o", color="tab:blue",
                    capsize=6, markersize=6)
    ax.set_xticks(range(len(variants)), [v["variant"] for v in variants], rotation=20, ha="right")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean and 95% CI per variant (dots: seeds)")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def plot_layer_curves(variants: list, path):
    """One panel per variant: each layer's mean validation accuracy over epochs with a ±1 std band over
    seeds, and the model's (dashed)."""
    cols = min(3, len(variants))
    rows = math.ceil(len(variants) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, v in zip(axes.flat, variants, strict=False):
        epochs = v["epochs"]
        for l, (mean, std) in enumerate(zip(v["layers_mean"], v["layers_std"], strict=True)):
            mean, std = np.asarray(mean), np.asarray(std)
            ax.plot(epochs, mean, label=f"layer {l + 1}")
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.plot(epochs, v["model_mean"], "k--", label="model")
        ax.set_title(f"{v['variant']} (n={v['n']})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(variants):]:
        ax.axis("off")
    axes[0][0].set_ylabel("validation accuracy (multi-pass)")
    fig.tight_layout()
    return save_figure(fig, path)
