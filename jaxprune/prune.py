"""Pruning masks: the LEGCNet causal mask, random and magnitude baselines, sparse training.

Every decision is made on the flat weight axis of `jaxprune.weights` (``n_weights`` kernel
weights, layer by layer, row-major inside a kernel) by small pure functions on NumPy arrays, and
one function, `mask_from_flat`, turns a flat decision into a mask pytree. A mask is a pytree with
the structure of the params whose leaves are boolean arrays of the leaves' shapes: True = keep.
Biases (and any other non-kernel leaf) are always True; no leaf is ever None, so a mask can be
zipped with params, gradients or optimizer updates by `jax.tree.map` without special cases.

Pieces:

* `causal_mask`: the LEGCNet rule. A weight whose windowed-Lyapunov series does not
  Granger-cause the risk series (per-weight p >= alpha) is pruned; weights whose test was not
  possible follow the ``untestable`` policy; optional corrections for multiple testing over lags
  (Bonferroni, Holm) and over weights (Benjamini-Hochberg); an optional layer filter.
* `random_mask`, `magnitude_mask`: baselines pruning exactly as many weights per layer (or in
  total) as a reference mask.
* `masked`, `apply_mask`: sparse (re)training with any optax optimizer; pruned weights stay
  exactly 0.
* `dense_flops`, `sparse_flops`, `mask_summary`, `pruned_iou`: what a run reports about masks.

Layer indices (``layers=``) count kernels in flat order (0 = first layer); negative indices count
from the end, so ``layers=[-2, -1]`` is the original's "last two layers".
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune.weights import (
    KernelLayout,
    flatten_kernels,
    kernel_layout,
    key_name,
    unflatten_kernels,
)

PyTree = Any

UNTESTABLE_POLICIES = ("keep", "prune")
LAG_CORRECTIONS = ("bonferroni", "holm")
WEIGHT_CORRECTIONS = ("bh",)
CORRECTIONS = ("none",) + LAG_CORRECTIONS + WEIGHT_CORRECTIONS


# --------------------------------------------------------------------------------------------
# Flat helpers
# --------------------------------------------------------------------------------------------


def _as_layout(params_or_layout: PyTree | KernelLayout) -> KernelLayout:
    if isinstance(params_or_layout, KernelLayout):
        return params_or_layout
    return kernel_layout(params_or_layout)


def layer_ids(layout: KernelLayout) -> np.ndarray:
    """The layer of every flat weight: int64 array of shape ``(n_weights,)``."""
    sizes = np.diff(np.asarray(layout.offsets))
    return np.repeat(np.arange(layout.n_layers), sizes)


def _normalise_layers(layers: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    """Layer filter -> sorted tuple of non-negative layer indices (None = all layers)."""
    if layers is None:
        return tuple(range(n_layers))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    out = set()
    for layer in layers:
        layer = int(layer)
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer} out of range for a net with {n_layers} kernels")
        out.add(layer % n_layers)
    return tuple(sorted(out))


def analysed_weights(layout: KernelLayout, layers: Sequence[int] | None = None) -> np.ndarray:
    """Which flat weights a layer filter selects: bool ``(n_weights,)`` (None = all)."""
    return np.isin(layer_ids(layout), _normalise_layers(layers, layout.n_layers))


def per_layer_counts(flags: np.ndarray, layout: KernelLayout) -> np.ndarray:
    """True entries of a flat bool ``(n_weights,)`` per layer: int64 ``(n_layers,)``."""
    flags = np.asarray(flags, dtype=bool)
    return np.array([int(flags[layout.layer_slice(i)].sum()) for i in range(layout.n_layers)])


def mask_from_flat(keep: np.ndarray | jax.Array, params: PyTree) -> PyTree:
    """Flat keep decisions ``(n_weights,)`` bool -> mask pytree shaped like `params`.

    Kernel leaves get the decisions (reshaped to the kernel's shape); every other leaf (biases)
    is all True. Leaves are ``jnp`` bool arrays; no leaf is None.
    """
    return unflatten_kernels(jnp.asarray(keep, dtype=bool), params, other=True)


def flat_keep(mask: PyTree) -> np.ndarray:
    """The kernel entries of a mask pytree on the flat axis: NumPy bool ``(n_weights,)``."""
    return np.asarray(flatten_kernels(mask)).astype(bool)


# --------------------------------------------------------------------------------------------
# p-values and multiple testing (pure NumPy on flat arrays)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The causal mask
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PruneSummary:
    """What `causal_mask` decided, per layer (tuples of length ``n_layers``) and in total.

    Attributes:
      n_weights: kernel weights per layer.
      analysed: weights the layer filter selected.
      testable: analysed weights with a finite p-value (and OK status).
      untestable: analysed weights whose test was not possible.
      not_causal: testable weights with corrected p >= alpha.
      pruned_untestable: untestable weights pruned (0 under ``"keep"``, = untestable under
        ``"prune"``).
      pruned: weights pruned, ``not_causal + pruned_untestable``.
      alpha, correction, untestable_policy: the settings used.

    Both policies' totals are available without recomputing: `pruned_if_keep` (= not_causal)
    and `pruned_if_prune` (= not_causal + untestable).
    """

    n_weights: tuple[int, ...]
    analysed: tuple[int, ...]
    testable: tuple[int, ...]
    untestable: tuple[int, ...]
    not_causal: tuple[int, ...]
    pruned_untestable: tuple[int, ...]
    pruned: tuple[int, ...]
    alpha: float
    correction: str
    untestable_policy: str

    @property
    def pruned_total(self) -> int:
        return int(sum(self.pruned))

    @property
    def kept_total(self) -> int:
        return int(sum(self.n_weights)) - self.pruned_total

    @property
    def sparsity(self) -> float:
        """Pruned fraction of all kernel weights."""
        return self.pruned_total / max(int(sum(self.n_weights)), 1)

    @property
    def sparsity_analysed(self) -> float:
        """Pruned fraction of the analysed weights (the original reported "x of 1,800")."""
        return self.pruned_total / max(int(sum(self.analysed)), 1)

    @property
    def pruned_if_keep(self) -> int:
        return int(sum(self.not_causal))

    @property
    def pruned_if_prune(self) -> int:
        return int(sum(self.not_causal)) + int(sum(self.untestable))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(
            pruned_total=self.pruned_total,
            kept_total=self.kept_total,
            sparsity=self.sparsity,
            sparsity_analysed=self.sparsity_analysed,
            pruned_if_keep=self.pruned_if_keep,
            pruned_if_prune=self.pruned_if_prune,
        )
        return d


def causal_mask(
    pvalues: np.ndarray | jax.Array | None,
    params: PyTree,
    *,
    alpha: float = 0.05,
    untestable: str = "keep",
    status: np.ndarray | jax.Array | None = None,
    ok_status: int = 0,
    layers: Sequence[int] | None = None,
    correction: str | Sequence[str] = "none",
    lag_pvalues: np.ndarray | jax.Array | None = None,
    n_lags: int | None = None,
) -> tuple[PyTree, PruneSummary]:
    """The LEGCNet mask: prune weights whose LE series does not Granger-cause the risk.

    Args:
      pvalues: per-weight minimum p over lags, shape ``(n_weights,)`` on the flat axis of
        `jaxprune.weights`; NaN where the test was not possible. None when `lag_pvalues` is given.
      params: the params pytree the mask must match (the trained or initial params; only the
        structure and shapes are used).
      alpha: significance level; a weight is causal (kept) when its corrected p < alpha.
      untestable: policy for weights whose test was not possible (NaN p or status != ok_status):
        ``"keep"`` (default, the original: its failed test counted as p = 0) or ``"prune"`` (a
        weight that never moves cannot cause anything). The summary reports both counts.
      status: optional int ``(n_weights,)`` status codes from the Granger kernel; any code other
        than `ok_status` marks the weight untestable even if its p is finite.
      layers: layer filter (kernel indices, negatives from the end); weights outside it are
        always kept. The original analysed ``layers=[-2, -1]`` only. None = all layers.
      correction: ``"none"`` (default, the original), ``"bonferroni"`` or ``"holm"`` over lags,
        ``"bh"`` over weights (FDR over the analysed, testable weights), or a lag and a weight
        correction together, e.g. ``("bonferroni", "bh")``. See `corrected_pvalues`.
      lag_pvalues: per-lag p-values ``(n_weights, n_lags)``, needed for ``"holm"``; a row with
        a NaN marks the weight untestable. When both are given, `pvalues` is the per-weight p for
        ``"none"`` / ``"bonferroni"`` and `lag_pvalues` is used for ``"holm"``.
      n_lags: number of lags for ``"bonferroni"`` when `lag_pvalues` is not given.

    Untestable weights are left out of the BH family (m = analysed testable weights), whatever
    the policy: a p "taken as 0" would only loosen everyone else's threshold. To reproduce the
    original exactly, round the raw p-values first (`round_pvalues`) and use the defaults with
    ``layers=[-2, -1]``.

    Returns:
      ``(mask, summary)``: the mask pytree (bool leaves, True = keep, biases True) and a
      `PruneSummary`.
    """
    layout = kernel_layout(params)
    n = layout.n_weights
    if pvalues is None and lag_pvalues is None:
        raise ValueError("give pvalues (per-weight min over lags) or lag_pvalues")
    if pvalues is None:
        raw = min_over_lags(np.asarray(lag_pvalues))
    else:
        raw = np.asarray(pvalues, dtype=np.float64)
    if raw.shape != (n,):
        raise ValueError(f"pvalues have shape {raw.shape}, expected ({n},) for these params")

    testable = ~np.isnan(raw)
    if status is not None:
        status = np.asarray(status)
        if status.shape != (n,):
            raise ValueError(f"status has shape {status.shape}, expected ({n},)")
        testable &= status == ok_status
    if lag_pvalues is not None:
        lag_pvalues = np.asarray(lag_pvalues, dtype=np.float64)
        if lag_pvalues.ndim != 2 or lag_pvalues.shape[0] != n:
            raise ValueError(f"lag_pvalues have shape {lag_pvalues.shape}, expected ({n}, n_lags)")
        testable &= ~np.isnan(lag_pvalues).any(axis=1)
    analysed = analysed_weights(layout, layers)

    p_marked = np.where(testable, raw, np.nan)  # status-failed weights become NaN everywhere
    p = corrected_pvalues(
        p_marked,
        correction=correction,
        lag_pvalues=lag_pvalues,
        n_lags=n_lags,
        family=analysed & testable,
    )
    keep = keep_decision(p, testable, analysed, alpha=alpha, untestable=untestable)

    an_unt = analysed & ~testable
    with np.errstate(invalid="ignore"):
        not_causal = analysed & testable & ~(p < alpha)
    pruned = analysed & ~keep
    counts = lambda f: tuple(int(c) for c in per_layer_counts(f, layout))  # noqa: E731
    summary = PruneSummary(
        n_weights=tuple(int(c) for c in np.diff(layout.offsets)),
        analysed=counts(analysed),
        testable=counts(analysed & testable),
        untestable=counts(an_unt),
        not_causal=counts(not_causal),
        pruned_untestable=counts(an_unt & ~keep),
        pruned=counts(pruned),
        alpha=float(alpha),
        correction=correction if isinstance(correction, str) else "+".join(correction),
        untestable_policy=untestable,
    )
    return mask_from_flat(keep, params), summary


# --------------------------------------------------------------------------------------------
# Baselines at the same sparsity
# --------------------------------------------------------------------------------------------


def _is_count_list(target: Any) -> bool:
    """True for per-layer counts: a list/tuple of ints or a 1-D integer NumPy array."""
    if isinstance(target, np.ndarray):
        return target.ndim == 1 and np.issubdtype(target.dtype, np.integer)
    return isinstance(target, (list, tuple)) and all(
        isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in target
    )


def _target_counts(
    target: Any, layout: KernelLayout, analysed: np.ndarray, per_layer: bool
) -> np.ndarray | int:
    """Resolve a sparsity target to per-layer counts ``(n_layers,)`` or one global count.

    `target` may be a mask pytree (its pruned kernel weights per layer, or in total), a sequence
    of per-layer counts, an int (a global count, only with ``per_layer=False``) or a float in
    [0, 1] (a fraction of the analysed weights, per layer or globally, rounded half to even).
    """
    avail = per_layer_counts(analysed, layout)
    if isinstance(target, (float, np.floating)):
        if not 0.0 <= target <= 1.0:
            raise ValueError(f"sparsity must be in [0, 1], got {target}")
        if per_layer:
            counts = np.round(target * avail).astype(np.int64)
        else:
            return int(np.round(target * avail.sum()))
    elif isinstance(target, (int, np.integer)):
        if per_layer:
            raise ValueError("an int count is global: pass per_layer=False, or per-layer counts")
        count = int(target)
        if not 0 <= count <= avail.sum():
            raise ValueError(f"cannot prune {count} of {avail.sum()} analysed weights")
        return count
    elif _is_count_list(target):
        counts = np.asarray(target, dtype=np.int64)
        if counts.shape != (layout.n_layers,):
            raise ValueError(f"need {layout.n_layers} per-layer counts, got {counts.shape}")
    else:  # a reference mask pytree
        ref = flat_keep(target)
        if ref.shape != (layout.n_weights,):
            raise ValueError(
                f"reference mask has {ref.size} kernel weights, params {layout.n_weights}"
            )
        counts = per_layer_counts(~ref, layout)
    if per_layer:
        if np.any(counts < 0) or np.any(counts > avail):
            raise ValueError(
                f"per-layer counts {counts.tolist()} exceed the analysed weights {avail.tolist()}"
                " (is a layer with pruned weights outside the layer filter?)"
            )
        return counts
    total = int(counts.sum())
    if total > avail.sum():
        raise ValueError(f"cannot prune {total} of {avail.sum()} analysed weights")
    return total


def _prune_by_order(
    order: np.ndarray, candidates: np.ndarray, count: int, keep: np.ndarray
) -> None:
    """Prune (set False in `keep`, in place) the first `count` candidates in `order`."""
    if count:
        keep[candidates[order[:count]]] = False


def random_mask(
    params: PyTree,
    target: Any,
    *,
    key: jax.Array | None = None,
    seed: int | None = None,
    per_layer: bool = True,
    layers: Sequence[int] | None = None,
) -> PyTree:
    """Prune uniformly random kernel weights, as many as `target` asks.

    Args:
      params: params pytree (only structure and shapes are used).
      target: a reference mask pytree (e.g. the causal mask: the same number pruned in each
        layer, or in total with ``per_layer=False``), per-layer counts, a global int count
        (``per_layer=False``), or a float sparsity of the analysed weights.
      key / seed: a jax PRNG key, or an int seed (``jax.random.key(seed)``); exactly one.
      per_layer: match per-layer counts (default) or draw the global count over all analysed
        weights.
      layers: layer filter; only these layers' weights are candidates.

    Returns:
      the mask pytree (bool, True = keep). Layer ``i`` uses ``fold_in(key, i)``, so a layer's
      draw does not depend on the other layers' counts.
    """
    if (key is None) == (seed is None):
        raise ValueError("pass exactly one of key= or seed=")
    if key is None:
        key = jax.random.key(int(seed))
    layout = kernel_layout(params)
    analysed = analysed_weights(layout, layers)
    counts = _target_counts(target, layout, analysed, per_layer)
    keep = np.ones(layout.n_weights, dtype=bool)
    if per_layer:
        for i in range(layout.n_layers):
            cand = np.flatnonzero(analysed[layout.layer_slice(i)]) + layout.offsets[i]
            order = np.asarray(jax.random.permutation(jax.random.fold_in(key, i), cand.size))
            _prune_by_order(order, cand, int(counts[i]), keep)
    else:
        cand = np.flatnonzero(analysed)
        order = np.asarray(jax.random.permutation(key, cand.size))
        _prune_by_order(order, cand, int(counts), keep)
    return mask_from_flat(keep, params)


def magnitude_mask(
    params: PyTree,
    target: Any,
    *,
    per_layer: bool = True,
    layers: Sequence[int] | None = None,
) -> PyTree:
    """Prune the kernel weights of smallest ``|w|`` in `params` (the trained dense net).

    `target`, `per_layer` and `layers` as in `random_mask`. With ``per_layer=False`` magnitudes
    of all analysed layers are compared directly (global magnitude pruning).

    Ties are broken deterministically: a stable sort on ``|w|`` (NumPy ``kind="stable"``) keeps
    equal magnitudes in flat order, so among equal ``|w|`` the weight with the lower flat index
    (earlier layer, row, column) is pruned first. Magnitudes are compared in float64.
    """
    layout = kernel_layout(params)
    analysed = analysed_weights(layout, layers)
    counts = _target_counts(target, layout, analysed, per_layer)
    mag = np.abs(np.asarray(flatten_kernels(params), dtype=np.float64))
    keep = np.ones(layout.n_weights, dtype=bool)
    if per_layer:
        for i in range(layout.n_layers):
            cand = np.flatnonzero(analysed[layout.layer_slice(i)]) + layout.offsets[i]
            order = np.argsort(mag[cand], kind="stable")
            _prune_by_order(order, cand, int(counts[i]), keep)
    else:
        cand = np.flatnonzero(analysed)
        order = np.argsort(mag[cand], kind="stable")
        _prune_by_order(order, cand, int(counts), keep)
    return mask_from_flat(keep, params)


# --------------------------------------------------------------------------------------------
# Sparse training
# --------------------------------------------------------------------------------------------


def _check_same_structure(mask: PyTree, tree: PyTree, what: str) -> None:
    ms, ts = jax.tree.structure(mask), jax.tree.structure(tree)
    if ms != ts:
        raise ValueError(
            f"mask and {what} have different tree structures:\n  mask: {ms}\n  {what}: {ts}\n"
            "build the mask from the same kind of pytree (plain dict vs nnx.State)"
        )


def _zero_where_pruned(tree: PyTree, mask: PyTree) -> PyTree:
    # jnp.where, not multiplication: a NaN/inf gradient at a pruned position must not leak through
    return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), tree, mask)


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
    """Params with the pruned positions set to exactly 0 (same structure and dtypes).

    Call it on the initial params before sparse training: `masked` keeps zeros at zero, it
    does not move weights to zero.
    """
    _check_same_structure(mask, params, "params")
    return _zero_where_pruned(params, mask)


class MaskedState(NamedTuple):
    """State of `masked`: the inner optimizer's state and the mask (bool pytree, True = keep).

    The mask lives in the state so that a checkpoint of the optimizer state restores it with the
    sparse run, and so that a jitted step takes it as an ordinary array argument: changing the
    mask (same shapes) reuses the compiled step instead of recompiling.
    """

    inner_state: optax.OptState
    mask: PyTree


def masked_optimizer(
    inner: optax.GradientTransformation, mask: PyTree
) -> optax.GradientTransformationExtraArgs:
    """Wrap any optax optimizer so that pruned weights stay exactly 0 (jaxpruner-style).

    ``update`` zeros the incoming gradients at pruned positions *before* the inner transform, so
    momentum / Adam moments never accumulate there, and zeros the outgoing updates at pruned
    positions, so nothing the inner transform adds (weight decay, noise, ...) moves a pruned
    weight. With params that are 0 at the pruned positions (`apply_mask`), ``optax.apply_updates``
    therefore leaves them at exactly 0 for every step. Where the mask is True the inner
    updates pass through unchanged (bit-identical to the unwrapped optimizer for an all-True mask).

    This is not ``optax.masked``: that one selects *which leaves* the inner transform runs on and
    passes the other leaves' updates (raw gradients) through untouched, with a per-leaf mask. Here
    the mask is per element, the inner transform runs on every leaf, and masked-out elements get
    a zero update.

    Args:
      inner: any ``optax.GradientTransformation`` (extra args are forwarded if it takes them).
      mask: bool pytree with the structure of the params (e.g. from `causal_mask`); stored in
        the state by ``init`` (see `MaskedState`).

    Returns:
      an ``optax.GradientTransformationExtraArgs``; jit-able.
    """
    inner = optax.with_extra_args_support(inner)
    mask = jax.tree.map(lambda m: jnp.asarray(m, dtype=bool), mask)

    def init_fn(params):
        _check_same_structure(mask, params, "params")
        # a copy per state: a train step may donate its state (GPU/TPU), which deletes the
        # buffers it holds, and the caller's mask must outlive that
        return MaskedState(inner_state=inner.init(params), mask=jax.tree.map(jnp.copy, mask))

    def update_fn(updates, state, params=None, **extra_args):
        grads = _zero_where_pruned(updates, state.mask)
        new_updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        new_updates = _zero_where_pruned(new_updates, state.mask)
        return new_updates, MaskedState(inner_state=inner_state, mask=state.mask)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Deprecated name of `masked_optimizer`, kept for one release (a plain alias: the package's own
# call sites still use it, so a warning here would fire on every run).
masked = masked_optimizer


# --------------------------------------------------------------------------------------------
# Reporting: counts, FLOPs, IoU
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MaskSummary:
    """Kept and pruned kernel weights per layer (tuples of length ``n_layers``) and in total."""

    kept: tuple[int, ...]
    pruned: tuple[int, ...]

    @property
    def total(self) -> tuple[int, ...]:
        return tuple(k + p for k, p in zip(self.kept, self.pruned))

    @property
    def kept_total(self) -> int:
        return int(sum(self.kept))

    @property
    def pruned_total(self) -> int:
        return int(sum(self.pruned))

    @property
    def sparsity(self) -> float:
        return self.pruned_total / max(self.kept_total + self.pruned_total, 1)

    def as_dict(self) -> dict:
        return dict(
            kept=self.kept,
            pruned=self.pruned,
            total=self.total,
            kept_total=self.kept_total,
            pruned_total=self.pruned_total,
            sparsity=self.sparsity,
        )


def mask_summary(mask: PyTree) -> MaskSummary:
    """Kept / pruned kernel weights per layer of a mask pytree (biases are not counted)."""
    layout = kernel_layout(mask)
    keep = flat_keep(mask)
    kept = per_layer_counts(keep, layout)
    pruned = per_layer_counts(~keep, layout)
    return MaskSummary(tuple(int(k) for k in kept), tuple(int(p) for p in pruned))


@dataclasses.dataclass(frozen=True)
class Flops:
    """Forward-pass cost of one example through the dense layers, per layer and in total.

    Convention: one multiply-add per kept kernel weight (``macs``), counted as 2 FLOPs, plus one
    add per bias entry; activations, softmax and the loss are not counted. Biases are never
    pruned, so a unit whose incoming weights are all pruned still costs its bias add. Multiply by
    the batch size for a batch. This is the arithmetic a sparse kernel would need, not what a
    dense matmul with zeros executes.
    """

    flops: tuple[int, ...]
    macs: tuple[int, ...]

    @property
    def total(self) -> int:
        return int(sum(self.flops))

    @property
    def total_macs(self) -> int:
        return int(sum(self.macs))

    def as_dict(self) -> dict:
        return dict(flops=self.flops, macs=self.macs, total=self.total, total_macs=self.total_macs)


def _bias_sizes(tree: PyTree, layout: KernelLayout) -> tuple[int, ...]:
    """Size of the bias next to each kernel (same path with ``"bias"`` for ``"kernel"``), 0 if
    the layer has none."""
    sizes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = tuple(key_name(k) for k in path)
        if names and names[-1] == "value":
            names = names[:-1]
        sizes[names] = int(np.size(leaf))
    out = []
    for kpath in layout.paths:
        names = tuple(key_name(k) for k in kpath)
        if names[-1] == "value":
            names = names[:-1]
        out.append(sizes.get(names[:-1] + ("bias",), 0))
    return tuple(out)


def dense_flops(params_or_layout: PyTree | KernelLayout, *, bias: bool | None = None) -> Flops:
    """FLOPs of the dense forward pass per example (see `Flops` for the convention).

    Args:
      params_or_layout: params (or a mask) pytree, or a `KernelLayout`.
      bias: count bias adds. None (default): from the pytree, each layer's bias leaf if it has
        one; for a bare `KernelLayout`, assume every layer has a ``fan_out`` bias.
    """
    layout = _as_layout(params_or_layout)
    if bias is None:
        if isinstance(params_or_layout, KernelLayout):
            biases = tuple(int(s[-1]) for s in layout.shapes)
        else:
            biases = _bias_sizes(params_or_layout, layout)
    else:
        biases = tuple(int(s[-1]) if bias else 0 for s in layout.shapes)
    macs = tuple(int(np.prod(s)) for s in layout.shapes)
    return Flops(tuple(2 * m + b for m, b in zip(macs, biases)), macs)


def sparse_flops(mask: PyTree, *, bias: bool | None = None) -> Flops:
    """FLOPs of the sparse forward pass per example: 2 per kept kernel weight + bias adds.

    `bias` as in `dense_flops` (None: the bias leaves found in the mask pytree).
    """
    layout = kernel_layout(mask)
    keep = flat_keep(mask)
    macs = tuple(int(k) for k in per_layer_counts(keep, layout))
    if bias is None:
        biases = _bias_sizes(mask, layout)
    else:
        biases = tuple(int(s[-1]) if bias else 0 for s in layout.shapes)
    return Flops(tuple(2 * m + b for m, b in zip(macs, biases)), macs)


def pruned_iou(
    mask_a: PyTree, mask_b: PyTree, *, layers: Sequence[int] | None = None
) -> float:
    """Intersection over union of the *pruned* kernel weights of two masks, in [0, 1].

    Restricted to `layers` if given. Two masks that prune nothing are identical: IoU 1.0 (as
    ``1 - scipy.spatial.distance.jaccard``).
    """
    a, b = ~flat_keep(mask_a), ~flat_keep(mask_b)
    if a.shape != b.shape:
        raise ValueError(f"masks have {a.size} and {b.size} kernel weights")
    sel = analysed_weights(kernel_layout(mask_a), layers)
    a, b = a & sel, b & sel
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union
