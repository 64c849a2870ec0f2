"""The statistics of a sweep report: per-variant summaries with t confidence intervals, paired t-tests with
Cohen's d on the seeds two variants share, and Holm's correction across a family of comparisons.

A quantity a sample cannot give (the spread of one value, a test of differences that never vary) is None,
never NaN, so the JSON report stays valid JSON.
"""
import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def _number(x):
    return float(x) if x is not None and math.isfinite(x) else None


def summary(values) -> dict:
    """n, mean, sample std (ddof 1) and the 95% t confidence interval of the mean."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    out = {"n": n, "mean": _number(v.mean()) if n else None, "std": None, "ci95": None}
    if n >= 2:
        std = v.std(ddof=1)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
        out |= {"std": float(std), "ci95": [float(v.mean() - half), float(v.mean() + half)]}
    return out


def paired(a: dict, b: dict) -> dict:
    """a - b on the keys (seeds) both have: mean difference with its CI, paired t-test, Cohen's d_z (mean
    difference over the differences' std, the effect size of a paired design, as Beigzad 2025 reports)."""
    keys = sorted(set(a) & set(b))
    diff = np.array([a[k] - b[k] for k in keys], dtype=float)
    out = summary(diff) | {"seeds": keys, "t": None, "p": None, "cohens_d": None}
    out["mean_diff"] = out.pop("mean")
    out["std_diff"] = out.pop("std")
    if len(keys) >= 2 and out["std_diff"]:
        t, p = stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys])
        out |= {"t": _number(t), "p": _number(p), "cohens_d": out["mean_diff"] / out["std_diff"]}
    return out


def one_sample(values) -> dict:
    """summary(values) and a two-sided one-sample t-test of their mean against 0."""
    out = summary(values) | {"t": None, "p": None}
    if out["n"] >= 2 and out["std"]:
        t, p = stats.ttest_1samp(np.asarray(values, dtype=float), 0.0)
        out |= {"t": _number(t), "p": _number(p)}
    return out


def holm(pvalues: list) -> list:
    """Holm-Bonferroni adjusted p-values, in the input's order (None stays None and is not counted)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted, running = [None] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


def correct(family: list, alpha=0.05) -> list:
    """Adds p_holm and significant (p_holm < alpha) to each comparison of a family, in place."""
    for comparison, p in zip(family, holm([c["p"] for c in family]), strict=True):
        comparison["p_holm"] = p
        comparison["significant"] = p is not None and p < alpha
    return family


def fisher_z(r: float) -> float:
    """atanh(r), with |r| kept below 1 so a perfect correlation stays finite."""
    return math.atanh(max(-0.999999, min(0.999999, r)))


def correlation_summary(rs: list) -> dict:
    """Mean correlation over trials and its 95% CI, averaged in Fisher z (r itself is not additive)."""
    s = summary([fisher_z(r) for r in rs])
    back = {"n": s["n"], "mean_r": math.tanh(s["mean"]) if s["mean"] is not None else None, "ci95": None}
    if s["ci95"]:
        back["ci95"] = [math.tanh(s["ci95"][0]), math.tanh(s["ci95"][1])]
    return back


def rank_correlation(x: list, y: list) -> dict:
    """Spearman's rho of y on x and its two-sided p."""
    if len(x) < 3 or len(set(x)) < 2:
        return {"n": len(x), "rho": None, "p": None}
    rho, p = stats.spearmanr(x, y)
    return {"n": len(x), "rho": _number(rho), "p": _number(p)}
