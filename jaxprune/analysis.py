"""Statistics of a finished run: paired tests over seeds, mask stability, weight spectra.

Pure functions on plain arrays and dicts (no training, no files), used by `jaxprune.report`
and the studies in ``experiments/``:

* `paired_test` / `compare_methods`: does LEGCNet-FT / -PT beat random and magnitude pruning
  at equal sparsity? Paired over seeds (each seed fixes the split, the init and the masks): the
  paired t-test (`scipy.stats.ttest_rel`), the Wilcoxon signed-rank test from 6 seeds on, the
  effect size Cohen's d_z (mean difference / sd of the differences), the mean difference with a
  t confidence interval, and one plain sentence, also when the answer is no.
* `iou`, `chance_iou`, `mask_stability`: intersection over union of the *pruned* sets across
  seeds, between FT and PT, and between the causal mask and the magnitude mask at the same
  (per-layer) sparsity, each next to the IoU two random sets of those sizes have on average
  (`iou` and `chance_iou` are `jaxprune.mask_stats`', imported here).
* `esd_alpha`, `powerlaw_fit`: the WeightWatcher-style power-law exponent of a layer's
  empirical spectral density (eigenvalues of ``W^T W / N``), fitted to the tail with the
  Clauset-Shalizi-Newman xmin search by Kolmogorov-Smirnov distance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from jaxprune.mask_stats import chance_iou, iou

# ------------------------------------------------------------------------------ paired tests
PRETTY = {
    "dense": "dense",
    "legcnet_ft": "FT",
    "legcnet_pt": "PT",
    "random": "random pruning",
    "magnitude": "magnitude pruning",
    "random_pt": "random pruning",
    "magnitude_pt": "magnitude pruning",
}

# (method, its baseline, the run names: (a, b)); baselines are matched per layer to the mask.
COMPARISONS = (
    ("legcnet_ft", "random"),
    ("legcnet_ft", "magnitude"),
    ("legcnet_pt", "random_pt"),
    ("legcnet_pt", "magnitude_pt"),
    ("legcnet_ft", "dense"),
    ("legcnet_pt", "dense"),
)


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    name_a: str = "A",
    name_b: str = "B",
    what: str = "beat",
    alpha: float = 0.05,
    confidence: float = 0.95,
    scale: float = 100.0,
    unit: str = "pp",
) -> dict:
    """Paired comparison of ``a`` and ``b`` (one value per seed, same order).

    Returns a dict: ``n``, ``mean_a``, ``mean_b``, ``mean_diff`` (a - b), ``ci_low`` /
    ``ci_high`` (t interval of the mean difference at `confidence`), ``sd_diff``, ``d_z``
    (Cohen's d for paired data: mean / sd of the differences), ``t`` and ``p_t``
    (`scipy.stats.ttest_rel`, two-sided), ``p_wilcoxon`` (`scipy.stats.wilcoxon`, two-sided,
    only when ``n >= 6``: below that its smallest possible p exceeds 0.05), ``significant``
    (p_t < alpha), and ``verdict``: one sentence such as "FT does not beat random pruning at
    equal sparsity (mean diff -0.3 pp, d=-0.20, p=0.61, 5 seeds)". Differences are reported as
    ``scale * diff`` in `unit` (percentage points of accuracy by default).

    Degenerate cases are stated, not hidden: fewer than 2 seeds (no test), and differences with
    no variance (every seed the same difference: the t-test is undefined).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired samples need equal 1-D shapes, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    d = a - b
    out = {
        "n": n,
        "name_a": name_a,
        "name_b": name_b,
        "mean_a": float(a.mean()) if n else math.nan,
        "mean_b": float(b.mean()) if n else math.nan,
        "mean_diff": float(d.mean()) if n else math.nan,
        "sd_diff": float(d.std(ddof=1)) if n > 1 else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "d_z": math.nan,
        "t": math.nan,
        "p_t": math.nan,
        "p_wilcoxon": None,
        "significant": False,
        "confidence": confidence,
    }
    head = f"{name_a} vs {name_b}"
    if n < 2:
        out["verdict"] = f"{head}: {n} seed(s), too few for a paired test."
        return out
    mean, sd = out["mean_diff"], out["sd_diff"]
    if sd <= 1e-12 * max(1.0, abs(mean)):  # no variance (up to float rounding)
        if abs(mean) <= 1e-12:
            out["verdict"] = f"{name_a} does not {what} {name_b}: identical in all {n} seeds (no difference to test)."
        else:
            out["verdict"] = (
                f"{name_a} differs from {name_b} by a constant "
                f"{scale * mean:+.2f} {unit} in all {n} seeds (no variance: the "
                "t-test is undefined)."
            )
        out["ci_low"] = out["ci_high"] = mean
        return out
    res = stats.ttest_rel(a, b)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    out.update(
        t=float(res.statistic),
        p_t=float(res.pvalue),
        d_z=float(mean / sd),
        ci_low=float(mean - half),
        ci_high=float(mean + half),
    )
    if n >= 6 and np.any(d != 0):
        out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    out["significant"] = bool(out["p_t"] < alpha)
    detail = (
        f"(mean diff {scale * mean:+.2f} {unit}, {confidence:.0%} CI "
        f"[{scale * out['ci_low']:+.2f}, {scale * out['ci_high']:+.2f}], "
        f"d={out['d_z']:+.2f}, p={out['p_t']:.2g}"
        + (f", Wilcoxon p={out['p_wilcoxon']:.2g}" if out["p_wilcoxon"] is not None else "")
        + f", {n} seeds)"
    )
    if not out["significant"]:
        verb = f"does not {what}"
    elif mean > 0:
        verb = "is better than"
    else:
        verb = "is worse than"
    out["verdict"] = f"{name_a} {verb} {name_b} {detail}."
    return out


def compare_methods(
    runs: Sequence[Mapping], *, metric: str = "test_accuracy", comparisons=COMPARISONS, alpha: float = 0.05
) -> list[dict]:
    """Paired tests of `metric` for each (method, baseline) pair present in `runs` (records of
    ``results.json``; a run's ``name`` is ``dense``, ``legcnet_ft``, ``random_pt``...).

    Seeds present for both are paired. Each result adds ``a``, ``b``, ``metric``, ``seeds``,
    ``equal_sparsity`` (whether every pair pruned the same number of weights per layer) and
    ``seeds_nothing_pruned`` (seeds where the causal mask pruned no weight: then every mask
    is the dense one and the difference is 0 by construction).
    """
    by = {}
    for r in runs:
        by[(r.get("name", r["method"]), int(r["seed"]))] = r
    out = []
    for a_name, b_name in comparisons:
        seeds = sorted(s for (n, s) in by if n == a_name and (b_name, s) in by)
        if not seeds:
            continue
        ra = [by[(a_name, s)] for s in seeds]
        rb = [by[(b_name, s)] for s in seeds]
        what = "beat" if b_name != "dense" else "differ significantly from"
        suffix = " at equal sparsity" if b_name != "dense" else ""
        res = paired_test(
            [r[metric] for r in ra],
            [r[metric] for r in rb],
            name_a=PRETTY.get(a_name, a_name),
            name_b=PRETTY.get(b_name, b_name) + suffix,
            what=what,
            alpha=alpha,
        )
        res.update(
            a=a_name,
            b=b_name,
            metric=metric,
            seeds=seeds,
            equal_sparsity=(b_name == "dense")
            or all(x.get("pruned_per_layer") == y.get("pruned_per_layer") for x, y in zip(ra, rb)),
            seeds_nothing_pruned=sum(1 for x in ra if sum(x.get("pruned_per_layer", [1])) == 0),
            sparsity_a=float(np.mean([x.get("sparsity", math.nan) for x in ra])),
        )
        out.append(res)
    return out


# ------------------------------------------------------------------------------ mask IoU
# `iou` and `chance_iou` live in jaxprune.mask_stats (the one IoU implementation, also behind
# `jaxprune.prune.pruned_iou`); imported here, where the studies have always found them.


def _layer_counts(pruned: np.ndarray, offsets: Sequence[int]) -> list[int]:
    return [int(pruned[offsets[i] : offsets[i + 1]].sum()) for i in range(len(offsets) - 1)]


def _pair(pa: np.ndarray, pb: np.ndarray, offsets, analysed_n) -> dict:
    empty = not pa.any() and not pb.any()  # nothing to compare: left out of the means
    return {
        "iou": math.nan if empty else iou(pa, pb),
        "chance": math.nan if empty else chance_iou(_layer_counts(pa, offsets), _layer_counts(pb, offsets), analysed_n),
        "pruned_a": int(pa.sum()),
        "pruned_b": int(pb.sum()),
    }


def _nanmean(values) -> float:
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


WITHIN_SEED_PAIRS = (
    ("legcnet_ft", "legcnet_pt"),
    ("legcnet_ft", "magnitude"),
    ("legcnet_pt", "magnitude_pt"),
    ("legcnet_ft", "random"),
    ("magnitude", "magnitude_pt"),
)
ACROSS_SEED_MASKS = ("legcnet_ft", "legcnet_pt", "magnitude", "random")


def mask_stability(
    masks: Mapping[int, Mapping[str, np.ndarray]],
    offsets: Sequence[int],
    analysed_n: Sequence[int] | None = None,
    within=WITHIN_SEED_PAIRS,
    across=ACROSS_SEED_MASKS,
) -> dict:
    """IoU of pruned sets. `masks`: seed -> name -> flat *keep* array (``analysis.npz``'s
    ``mask_<name>``); `offsets`: the layer offsets of the flat weight axis; `analysed_n`: the
    number of analysed weights per layer (default: every weight), for the chance level.

    Seeds (or seed pairs) where both sets are empty have no IoU (NaN) and are left out of the
    means. Returns ``{"within": {"a|b": {"per_seed": {seed: {...}}, "iou": mean, "chance":
    mean, "pruned_a": total, "pruned_b": total}},
    "across": {name: {"iou": mean over seed pairs, "chance": mean, "pairs": k}}}``.

    Across seeds the same flat position is the same (layer, input, output) slot but hidden
    units are permutation-symmetric, so only a first layer's input pixels carry a fixed meaning;
    read across-seed IoU against its chance level.
    """
    offsets = [int(o) for o in offsets]
    n_layer = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    analysed_n = list(analysed_n) if analysed_n is not None else n_layer
    out = {"within": {}, "across": {}}
    for a, b in within:
        per_seed = {}
        for seed, m in masks.items():
            if a in m and b in m:
                per_seed[int(seed)] = _pair(~np.asarray(m[a], bool), ~np.asarray(m[b], bool), offsets, analysed_n)
        if per_seed:
            out["within"][f"{a}|{b}"] = {
                "per_seed": per_seed,
                "iou": _nanmean(v["iou"] for v in per_seed.values()),
                "chance": _nanmean(v["chance"] for v in per_seed.values()),
                "pruned_a": int(sum(v["pruned_a"] for v in per_seed.values())),
                "pruned_b": int(sum(v["pruned_b"] for v in per_seed.values())),
            }
    for name in across:
        seeds = sorted(s for s, m in masks.items() if name in m)
        pairs = [
            _pair(~np.asarray(masks[s][name], bool), ~np.asarray(masks[t][name], bool), offsets, analysed_n)
            for s, t in itertools.combinations(seeds, 2)
        ]
        if pairs:
            out["across"][name] = {
                "iou": _nanmean(p["iou"] for p in pairs),
                "chance": _nanmean(p["chance"] for p in pairs),
                "pairs": len(pairs),
            }
    return out


# ------------------------------------------------------------------------------ ESD alpha
def powerlaw_fit(x: np.ndarray, *, min_tail: int = 3, xmax_exclude: int = 0) -> dict:
    """Continuous power-law fit ``p(x) ~ x^-alpha`` for ``x >= xmin`` (Clauset, Shalizi and
    Newman 2009, the method of WeightWatcher and the ``powerlaw`` package).

    For every candidate ``xmin`` (each distinct value with at least `min_tail` points at or above
    it) the maximum-likelihood exponent is ``alpha = 1 + n / sum(log(x_i / xmin))`` and the
    Kolmogorov-Smirnov distance D between the tail's empirical CDF and the fitted
    ``1 - (x / xmin)^(1 - alpha)`` is computed; the xmin with the smallest D wins.

    Returns ``alpha``, ``xmin``, ``ks`` (D), ``n_tail``, ``n`` and ``sigma`` (the MLE's standard
    error ``(alpha - 1) / sqrt(n_tail)``); NaN fields when fewer than `min_tail` positive points.
    """
    x = np.sort(np.asarray(x, float))
    x = x[np.isfinite(x) & (x > 0)]
    if xmax_exclude:
        x = x[:-xmax_exclude]
    n_all = int(x.size)
    nan = {"alpha": math.nan, "xmin": math.nan, "ks": math.nan, "n_tail": 0, "n": n_all, "sigma": math.nan}
    if n_all < max(min_tail, 2):
        return nan
    best = None
    logx = np.log(x)
    for i in np.unique(np.searchsorted(x, x, side="left")):
        tail_n = n_all - i
        if tail_n < min_tail:
            break
        lx = logx[i:] - logx[i]
        s = lx.sum()
        if s <= 0:
            continue
        alpha = 1.0 + tail_n / s
        cdf = 1.0 - np.exp((1.0 - alpha) * lx)
        emp_hi = np.arange(1, tail_n + 1) / tail_n
        emp_lo = np.arange(0, tail_n) / tail_n
        ks = float(max(np.max(np.abs(emp_hi - cdf)), np.max(np.abs(emp_lo - cdf))))
        if best is None or ks < best[0]:
            best = (ks, alpha, float(x[i]), tail_n)
    if best is None:
        return nan
    ks, alpha, xmin, tail_n = best
    return {
        "alpha": float(alpha),
        "xmin": xmin,
        "ks": ks,
        "n_tail": int(tail_n),
        "n": n_all,
        "sigma": float((alpha - 1.0) / math.sqrt(tail_n)),
    }


def esd(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of ``X = W^T W / N`` for a kernel ``W`` (N x M with N >= M after a transpose
    if needed), i.e. squared singular values / N, ascending (M of them)."""
    w = np.asarray(w, np.float64)
    if w.ndim != 2:
        raise ValueError(f"a 2-D kernel is needed, got shape {w.shape}")
    n = max(w.shape)
    sv = np.linalg.svd(w, compute_uv=False)
    return np.sort(sv**2 / n)


def esd_alpha(w: np.ndarray, *, min_eigs: int = 5, min_tail: int = 3, zero_tol: float = 1e-12) -> dict:
    """WeightWatcher-style power-law exponent of one layer's weight spectrum.

    Eigenvalues of ``W^T W / N`` (`esd`), numerically zero ones dropped (pruning can lower the
    rank), then `powerlaw_fit`. WeightWatcher reads alpha ~ 2-6 as well trained, < 2 as heavy
    tailed / over-fit, > 6 as under-trained (random-like).

    Weak for small layers: a layer has only ``min(fan_in, fan_out)`` eigenvalues (iris' 4-6-3
    net: 4 and 3), far too few for a tail fit; below `min_eigs` alpha is NaN. Always read
    ``n_eigs`` and ``n_tail`` next to alpha.
    """
    ev = esd(w)
    ev_pos = ev[ev > zero_tol * max(float(ev.max(initial=0.0)), 1e-300)]
    base = {
        "n_eigs": int(ev.size),
        "n_nonzero": int(ev_pos.size),
        "lambda_max": float(ev.max()) if ev.size else math.nan,
    }
    if ev_pos.size < min_eigs:
        return {
            **base,
            "alpha": math.nan,
            "xmin": math.nan,
            "ks": math.nan,
            "n_tail": 0,
            "sigma": math.nan,
            "note": f"{ev_pos.size} eigenvalues < {min_eigs}: no fit",
        }
    fit = powerlaw_fit(ev_pos, min_tail=min_tail)
    fit.pop("n", None)
    return {**base, **fit, "note": ""}


def esd_table(kernels_by_method: Mapping[str, Sequence[Sequence[np.ndarray]]], **kw) -> dict:
    """``{method: [per layer {alpha_mean, alpha_std, n_eigs, n_fit, fits}]}`` from
    ``{method: [per seed [kernel per layer]]}``."""
    out = {}
    for method, seeds in kernels_by_method.items():
        if not seeds:
            continue
        n_layers = len(seeds[0])
        rows = []
        for layer in range(n_layers):
            fits = [esd_alpha(k[layer], **kw) for k in seeds if len(k) > layer]
            alphas = np.array([f["alpha"] for f in fits], float)
            good = alphas[np.isfinite(alphas)]
            rows.append(
                {
                    "layer": layer,
                    "shape": tuple(np.shape(seeds[0][layer])),
                    "n_eigs": fits[0]["n_eigs"] if fits else 0,
                    "n_fit": int(good.size),
                    "alpha_mean": float(good.mean()) if good.size else math.nan,
                    "alpha_std": float(good.std(ddof=1)) if good.size > 1 else math.nan,
                    "n_tail_mean": float(np.mean([f["n_tail"] for f in fits])) if fits else 0.0,
                    "fits": fits,
                }
            )
        out[method] = rows
    return out
