"""Multiple-testing corrections of the Granger p-values, and the per-weight keep decision.

Pure NumPy on flat arrays: ``(n_weights,)`` per-weight p-values (the minimum over lags) or
``(n_weights, n_lags)`` per-lag p-values, NaN = untestable. `corrected_pvalues` applies a
correction over the lags of each weight (Bonferroni, Holm) and / or over weights
(Benjamini-Hochberg); `keep_decision` turns the corrected p-values into the LEGCNet decision.
`jaxprune.prune.causal_mask` uses both; every name here is also importable from
`jaxprune.prune`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNTESTABLE_POLICIES = ("keep", "prune")
LAG_CORRECTIONS = ("bonferroni", "holm")
WEIGHT_CORRECTIONS = ("bh",)
CORRECTIONS = ("none",) + LAG_CORRECTIONS + WEIGHT_CORRECTIONS


def round_pvalues(p: np.ndarray, decimals: int = 4) -> np.ndarray:
    """p-values rounded to `decimals` places, as the original notebook did before comparing.

    For reproducing the original only: rounding moves p in [0.04995, 0.05) to 0.05, which is
    then "not causal". Apply it to the raw p-values (per weight or per lag) before `causal_mask`.
    NaN stays NaN. Returns float64 of the input's shape.
    """
    return np.round(np.asarray(p, dtype=np.float64), decimals)


def min_over_lags(lag_pvalues: np.ndarray) -> np.ndarray:
    """Per-weight minimum over lags, ``(n_weights, n_lags) -> (n_weights,)`` float64.

    A weight with any NaN lag is NaN (untestable): in the original a failing lag made the whole
    statsmodels call fail, and the weight was handled as untestable.
    """
    lag_pvalues = np.asarray(lag_pvalues, dtype=np.float64)
    if lag_pvalues.ndim != 2:
        raise ValueError(f"lag_pvalues must be (n_weights, n_lags), got {lag_pvalues.shape}")
    return lag_pvalues.min(axis=1)  # NaN propagates through min, as wanted


def bonferroni_over_lags(p_min: np.ndarray, n_lags: int) -> np.ndarray:
    """Bonferroni over lags: ``min(p_min * n_lags, 1)`` per weight, float64; NaN stays NaN."""
    if n_lags < 1:
        raise ValueError(f"n_lags must be >= 1, got {n_lags}")
    return np.minimum(np.asarray(p_min, dtype=np.float64) * n_lags, 1.0)


def holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values along the last axis (e.g. over the lags of each weight).

    ``p`` of shape ``(..., m)`` float -> same shape float64, equal to statsmodels'
    ``multipletests(row, method="holm")[1]`` for every row without NaN. Rows containing NaN are
    all NaN (untestable, see `min_over_lags`).

    Note: the smallest Holm-adjusted p of a row equals ``min(m * min(p), 1)``, the Bonferroni
    value, so "is any lag significant" is the same decision under Holm and Bonferroni; Holm only
    differs in which *other* lags it also calls significant.
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    p_sorted = np.take_along_axis(p, order, axis=-1)
    # step-down: (m - i) * p_(i) for 0-based rank i, made monotone by a running max, capped at 1
    factors = (m - np.arange(m)).astype(np.float64)
    adj_sorted = np.minimum(np.maximum.accumulate(p_sorted * factors, axis=-1), 1.0)
    adj = np.empty_like(adj_sorted)
    np.put_along_axis(adj, order, adj_sorted, axis=-1)
    bad = np.isnan(p).any(axis=-1)
    adj[bad] = np.nan
    return adj


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (FDR) adjusted p-values of a 1-D array, float64, same shape.

    NaN entries are left out of the family (m = number of finite entries) and stay NaN.
    Matches statsmodels' ``multipletests(p, method="fdr_bh")[1]`` on the finite entries.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"bh_adjust takes a 1-D array, got shape {p.shape}")
    out = np.full_like(p, np.nan)
    finite = ~np.isnan(p)
    q = p[finite]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    ranked = q[order] * m / np.arange(1, m + 1)
    # step-up: running min from the largest rank down, capped at 1
    adj_sorted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    adj = np.empty_like(adj_sorted)
    adj[order] = adj_sorted
    out[finite] = adj
    return out


def _parse_correction(correction: str | Sequence[str]) -> tuple[str | None, str | None]:
    """``"none" | "bonferroni" | "holm" | "bh"`` or a pair like ``("holm", "bh")`` ->
    (lag correction or None, weight correction or None)."""
    items = [correction] if isinstance(correction, str) else list(correction)
    lag, weight = None, None
    for c in items:
        c = str(c).lower()
        if c == "none":
            continue
        if c in LAG_CORRECTIONS:
            if lag is not None:
                raise ValueError(f"at most one correction over lags, got {correction!r}")
            lag = c
        elif c in WEIGHT_CORRECTIONS:
            weight = c
        else:
            raise ValueError(f"unknown correction {c!r}; use one or two of {CORRECTIONS}")
    return lag, weight


def corrected_pvalues(
    pvalues: np.ndarray | None,
    *,
    correction: str | Sequence[str] = "none",
    lag_pvalues: np.ndarray | None = None,
    n_lags: int | None = None,
    family: np.ndarray | None = None,
) -> np.ndarray:
    """The per-weight p-value the decision compares with alpha: float64 ``(n_weights,)``.

    Args:
      pvalues: per-weight minimum p over lags ``(n_weights,)``, NaN = untestable; may be None
        when `lag_pvalues` is given (then it is their minimum).
      correction: ``"none"`` (the original), ``"bonferroni"`` / ``"holm"`` over the lags of each
        weight, ``"bh"`` (Benjamini-Hochberg) over weights, or a lag and a weight correction
        together, e.g. ``("holm", "bh")``: the lag correction is applied first.
      lag_pvalues: per-lag p-values ``(n_weights, n_lags)``; required for ``"holm"``.
      n_lags: number of lags for ``"bonferroni"`` when only `pvalues` is given.
      family: bool ``(n_weights,)``, the weights that form the BH family (`causal_mask` passes
        the analysed, testable ones); weights outside it keep their lag-corrected value. None =
        all finite entries.

    Returns float64 ``(n_weights,)``; NaN stays NaN (untestable).
    """
    lag_corr, weight_corr = _parse_correction(correction)
    if lag_pvalues is not None:
        lag_pvalues = np.asarray(lag_pvalues, dtype=np.float64)
        p_from_lags = min_over_lags(lag_pvalues)
        if pvalues is None:
            pvalues = p_from_lags
    if pvalues is None:
        raise ValueError("give pvalues (per-weight min over lags) or lag_pvalues")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D (n_weights,), got shape {p.shape}")
    if lag_pvalues is not None and lag_pvalues.shape[0] != p.shape[0]:
        raise ValueError(f"lag_pvalues {lag_pvalues.shape} and pvalues {p.shape} disagree")

    if lag_corr == "bonferroni":
        if n_lags is None:
            if lag_pvalues is None:
                raise ValueError("bonferroni over lags needs n_lags or lag_pvalues")
            n_lags = lag_pvalues.shape[1]
        p = bonferroni_over_lags(p, int(n_lags))
    elif lag_corr == "holm":
        if lag_pvalues is None:
            raise ValueError("holm over lags needs lag_pvalues (n_weights, n_lags)")
        p = holm_adjust(lag_pvalues).min(axis=1)
        # keep the untestable marks of the given per-weight p (e.g. from a status code)
        p[np.isnan(np.asarray(pvalues, dtype=np.float64))] = np.nan

    if weight_corr == "bh":
        fam = ~np.isnan(p) if family is None else (np.asarray(family, dtype=bool) & ~np.isnan(p))
        adj = bh_adjust(np.where(fam, p, np.nan))
        p = np.where(fam, adj, p)
    return p


def keep_decision(
    p: np.ndarray,
    testable: np.ndarray,
    analysed: np.ndarray,
    *,
    alpha: float = 0.05,
    untestable: str = "keep",
) -> np.ndarray:
    """The LEGCNet decision on the flat axis: bool ``(n_weights,)``, True = keep.

    A weight outside the analysed set is kept. An analysed, testable weight is kept when it is
    causal (``p < alpha``). An analysed, untestable weight is kept for ``untestable="keep"``
    (the original: a failed test counted as p = 0) and pruned for ``"prune"``.
    """
    if untestable not in UNTESTABLE_POLICIES:
        raise ValueError(f"untestable must be one of {UNTESTABLE_POLICIES}, got {untestable!r}")
    p = np.asarray(p, dtype=np.float64)
    testable = np.asarray(testable, dtype=bool)
    analysed = np.asarray(analysed, dtype=bool)
    with np.errstate(invalid="ignore"):
        causal = testable & (p < alpha)
    untestable_kept = ~testable if untestable == "keep" else np.zeros_like(testable)
    return ~analysed | causal | untestable_kept
