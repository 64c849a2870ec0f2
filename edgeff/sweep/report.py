"""`edgeff sweep report`: a results table -> per-variant statistics, paired comparisons, the training
dynamics of Adamson 2025 and the plots; one dict (the --json document), and Markdown tables for people (report_text)."""
from itertools import combinations
from pathlib import Path

from edgeff.errors import EdgeFFError
from edgeff.sweep.dynamics import dynamics, shape
from edgeff.sweep.plots import plot_layer_curves, plot_variants
from edgeff.sweep.stats import correct, paired, summary
from edgeff.sweep.table import METRICS, read_table


def _by_variant(rows: list) -> dict:
    """variant -> its ok rows, variants in the table's order (the spec's)."""
    out = {}
    for r in rows:
        if r["status"] == "ok":
            out.setdefault(r["variant"], []).append(r)
    return out


def build_report(path, metric="test_multi_pass", fraction=0.95, plot_dir=None) -> dict:
    rows = read_table(path)
    if metric not in METRICS:
        raise EdgeFFError(f"--metric {metric!r} is not a column of a results table; choose one of "
                          f"{', '.join(METRICS)}")
    by_variant = _by_variant(rows)
    if not by_variant:
        raise EdgeFFError(f"{path}: no trial finished successfully yet, so there is nothing to report")
    values = {v: {r["seed"]: r[metric] for r in rs if r[metric] is not None} for v, rs in by_variant.items()}
    if not any(values.values()):
        raise EdgeFFError(f"{path}: no trial recorded {metric} (quantize = true in the spec gives int8_*; "
                          "finetune_epochs gives finetune_multi_pass)")
    variants = []
    for v, rs in by_variant.items():
        depth, width = shape(rs[0]["sizes"])
        others = {m: summary([r[m] for r in rs if r[m] is not None]) for m in METRICS
                  if m != metric and any(r[m] is not None for r in rs)}
        variants.append({"variant": v, "sizes": rs[0]["sizes"], "depth": depth, "width": width,
                         "collab": rs[0]["collab"], "params": rs[0]["params"], **summary(list(values[v].values())),
                         "seeds": sorted(values[v]), "other_metrics": others})
    names = list(by_variant)
    # each variant minus every variant before it in the table: a spec listing FF, F-CFF, A-CFF asks "> FF?"
    comparisons = correct([{"a": a, "b": b, **paired(values[a], values[b])}
                           for b, a in combinations(names, 2)])
    result = {"results": str(path), "metric": metric,
              "trials": {"ok": sum(r["status"] == "ok" for r in rows),
                         "failed": sum(r["status"] != "ok" for r in rows)},
              "failed": [{"variant": r["variant"], "seed": r["seed"], "error": r["error"]}
                         for r in rows if r["status"] != "ok"],
              "variants": variants, "comparisons": comparisons, "dynamics": dynamics(by_variant, fraction),
              "plots": []}
    if plot_dir is not None:
        plot_dir = Path(plot_dir)
        scored = [v for v in variants if v["n"]]
        result["plots"].append(str(plot_variants(scored, {v: list(values[v].values()) for v in names}, metric,
                                                 plot_dir / f"sweep_{metric}.png")))
        if result["dynamics"]["variants"]:
            result["plots"].append(str(plot_layer_curves(result["dynamics"]["variants"],
                                                         plot_dir / "sweep_layer_curves.png")))
    return result


def _pct(x, digits=2):
    return "–" if x is None else f"{100 * x:.{digits}f}"


def _num(x, fmt=".2f"):
    return "–" if x is None else format(x, fmt)


def _ci(ci, scale=100, digits=2):
    return "–" if ci is None else f"[{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def _p(c):
    return f"{_num(c['p'], '.2g')} / {_num(c['p_holm'], '.2g')}{' *' if c['significant'] else ''}"


def report_text(r: dict) -> str:
    out = [f"{r['results']}: {r['trials']['ok']} trials ok, {r['trials']['failed']} failed; metric {r['metric']} "
           "(percent)", "",
           "| variant | n | mean ± std | 95% CI |", "|---|---|---|---|"]
    out += [f"| {v['variant']} | {v['n']} | {_pct(v['mean'])} ± {_pct(v['std'])} | {_ci(v['ci95'])} |"
            for v in r["variants"]]
    if r["comparisons"]:
        out += ["", "Paired by seed; p two-sided, then Holm-corrected over the comparisons (* below 0.05).", "",
                "| comparison | seeds | mean difference (points) | 95% CI | t | p / p Holm | Cohen's d |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {c['a']} − {c['b']} | {c['n']} | {_pct(c['mean_diff'], 2)} | {_ci(c['ci95'])} | "
                f"{_num(c['t'])} | {_p(c)} | {_num(c['cohens_d'])} |" for c in r["comparisons"]]
    d = r["dynamics"]
    if d["variants"]:
        out += ["", f"Training dynamics (Adamson 2025): delay = first epoch at which a layer reaches "
                f"{d['fraction']:g} of its final validation accuracy; lag = delay of a layer minus that of the "
                "layer before it, paired by seed (p Holm-corrected over the variant's layers); r = Pearson "
                "correlation of a layer's accuracy with the model's over training (mean over seeds in Fisher z, "
                "95% CI).", "",
                "| variant | layer | delay (epochs, mean ± std) | lag behind the layer before | p / p Holm | "
                "Cohen's d | r with the model | 95% CI of r |", "|---|---|---|---|---|---|---|---|"]
        for v in d["variants"]:
            for l, (dl, c) in enumerate(zip(v["delay"], v["correlation"], strict=True)):
                lag = v["lag"][l - 1] if l else None
                out.append(f"| {v['variant']} | {l + 1} | {_num(dl['mean'])} ± {_num(dl['std'])} | "
                           f"{_num(lag['mean_diff']) if lag else ''} | {_p(lag) if lag else ''} | "
                           f"{_num(lag['cohens_d']) if lag else ''} | {_num(c['mean_r'], '.3f')} | "
                           f"{_ci(c['ci95'], 1, 3)} |")
        above = [(v["variant"], c) for v in d["variants"] for c in v["layer1_above"]]
        if above:
            out += ["", "Does layer 1 correlate with the model more than deeper layers? z(r of layer 1) − z(r of "
                    "the layer), Fisher z, paired by seed (p Holm-corrected over the variant's layers).", "",
                    "| variant | layer | mean difference in z | 95% CI | p / p Holm | Cohen's d |",
                    "|---|---|---|---|---|---|"]
            out += [f"| {v} | {c['layer']} | {_num(c['mean_diff'], '.3f')} | {_ci(c['ci95'], 1, 3)} | {_p(c)} | "
                    f"{_num(c['cohens_d'])} |" for v, c in above]
    if d["width_trend"]:
        out += ["", "Width and the layer-model correlation: per seed, Spearman's rho between width and the layer's r "
                "over that seed's widths; then the seeds' mean rho, tested against 0 (one-sample t; rho < 0: width "
                "weakens the correlation).", "",
                "| depth | layer | widths | seeds | mean rho | 95% CI | t | p / p Holm |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {t['depth']} | {t['layer']} | {', '.join(map(str, t['widths']))} | {t['n']} | "
                f"{_num(t['mean_rho'], '.3f')} | {_ci(t['ci95'], 1, 3)} | {_num(t['t'])} | {_p(t)} |"
                for t in d["width_trend"]]
    if r["failed"]:
        out += ["", "Failed trials:"] + [f"- {f['variant']} seed {f['seed']}: {f['error']}" for f in r["failed"]]
    if r["plots"]:
        out += ["", "plots: " + ", ".join(r["plots"])]
    return "\n".join(out)
