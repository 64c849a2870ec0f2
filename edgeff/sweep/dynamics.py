"""The analysis of training dynamics over a sweep's per-layer curves of Adamson 2025 ("The Forward-Forward
Algorithm: Characterizing Training Behavior"): per-layer validation accuracy over training, the delay of deeper
layers, and the correlation of each layer's accuracy with the model's, and how width changes it.

The curves are the trainer's own record (edgeff/train/trainer.py: each layer's multi-pass validation accuracy
and the model's after every evaluated epoch) and the correlations are its layer_model_correlation.
"""
import numpy as np

from edgeff.sweep.stats import correct, correlation_summary, fisher_z, one_sample, paired, rank_correlation, summary


def delay(epochs: list, accuracy: list, fraction: float):
    """The first epoch at which a layer reaches `fraction` of its final accuracy (None for an empty curve or a
    layer that ends at zero)."""
    if not accuracy or accuracy[-1] <= 0:
        return None
    goal = fraction * accuracy[-1]
    return next(e for e, a in zip(epochs, accuracy, strict=True) if a >= goal)


def shape(sizes: list) -> tuple:
    """(depth, width) of an MLP: hidden layers, and their width when all are equal (else None)."""
    hidden = sizes[1:]
    return len(hidden), hidden[0] if len(set(hidden)) == 1 else None


def _bands(rows: list) -> dict:
    """Mean and std over trials of each layer's and the model's curve, on the epochs every trial recorded."""
    n = min(len(r["curves"]["epoch"]) for r in rows)
    layers = np.array([[layer[:n] for layer in r["curves"]["layers"]] for r in rows])   # trial, layer, epoch
    model = np.array([r["curves"]["model"][:n] for r in rows])
    return {"epochs": rows[0]["curves"]["epoch"][:n], "layers_mean": layers.mean(axis=0).tolist(),
            "layers_std": _std(layers).tolist(), "model_mean": model.mean(axis=0).tolist(),
            "model_std": _std(model).tolist()}


def _std(a: np.ndarray) -> np.ndarray:
    """The spread over trials (axis 0); zero for a single trial, which has none."""
    return a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1:])


def variant_dynamics(variant: str, rows: list, fraction: float) -> dict:
    """One variant's curves with bands, each layer's delay, the lag of each layer behind the one before it
    (paired by seed, Holm-corrected over the variant's layers), each layer's correlation with the model, and how
    much more layer 1 correlates than each deeper layer (Fisher z of r, paired by seed, Holm over the layers)."""
    depth, width = shape(rows[0]["sizes"])
    delays = [[delay(r["curves"]["epoch"], r["curves"]["layers"][l], fraction) for r in rows] for l in range(depth)]
    per_seed = [{r["seed"]: d for r, d in zip(rows, layer, strict=True) if d is not None} for layer in delays]
    lags = correct([{"layer": l + 2, "behind": l + 1, **paired(per_seed[l + 1], per_seed[l])}
                    for l in range(depth - 1)])
    r_by_seed = [{r["seed"]: r["correlation"][l] for r in rows if r["correlation"] and r["correlation"][l] is not None}
                 for l in range(depth)]
    correlation = [{"layer": l + 1, **correlation_summary(list(rs.values()))} for l, rs in enumerate(r_by_seed)]
    z = [{seed: fisher_z(r) for seed, r in rs.items()} for rs in r_by_seed]
    above = correct([{"layer": l + 1, **paired(z[0], z[l])} for l in range(1, depth)])
    return {"variant": variant, "depth": depth, "width": width, "n": len(rows), **_bands(rows),
            "delay": [{"layer": l + 1, **summary([d for d in layer if d is not None])}
                      for l, layer in enumerate(delays)],
            "lag": lags, "correlation": correlation, "layer1_above": above}


def width_trend(by_variant: dict) -> list:
    """Per depth and layer, Adamson 2025's "width weakens the correlation" on the seeds the widths share: for each
    seed, Spearman's rho between width and the layer's correlation with the model over that seed's trials (at
    least 3 widths), then a one-sample t-test of the seeds' rhos against 0. A mean rho < 0: width weakens the
    correlation. The seed is the unit because every width trains on each seed. Holm-corrected over the family."""
    points = {}   # (depth, layer) -> seed -> [(width, r)]
    for rows in by_variant.values():
        depth, width = shape(rows[0]["sizes"])
        if width is None:
            continue
        for r in rows:
            for l, c in enumerate(r["correlation"] or []):
                if c is not None:
                    points.setdefault((depth, l + 1), {}).setdefault(r["seed"], []).append((width, c))
    trend = []
    for (depth, layer), by_seed in sorted(points.items()):
        widths = sorted({w for pts in by_seed.values() for w, _ in pts})
        if len(widths) < 3:
            continue
        rhos = [rank_correlation([w for w, _ in pts], [c for _, c in pts])["rho"] for pts in by_seed.values()]
        test = one_sample([rho for rho in rhos if rho is not None])
        trend.append({"depth": depth, "layer": layer, "widths": widths, "n": test["n"],
                      "mean_rho": test["mean"], "ci95": test["ci95"], "t": test["t"], "p": test["p"]})
    return correct(trend)


def dynamics(by_variant: dict, fraction: float) -> dict:
    """by_variant: variant -> its ok rows (with curves). The seed-001 part of the report."""
    with_curves = {v: rows for v, rows in by_variant.items() if all(r["curves"]["epoch"] for r in rows)}
    return {"fraction": fraction,
            "variants": [variant_dynamics(v, rows, fraction) for v, rows in with_curves.items()],
            "width_trend": width_trend(with_curves)}
