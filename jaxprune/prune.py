"""Pruning masks: the LEGCNet causal mask and the random and magnitude baselines.

Every decision is made on the flat weight axis of `jaxprune.weights` (``n_weights`` kernel
weights, layer by layer, row-major inside a kernel) by small pure functions on NumPy arrays, and
one function, `mask_from_flat`, turns a flat decision into a mask pytree. A mask is a pytree with
the structure of the params whose leaves are boolean arrays of the leaves' shapes: True = keep.
Biases (and any other non-kernel leaf) are always True; no leaf is ever None, so a mask can be
zipped with params, gradients or optimizer updates by `jax.tree.map` without special cases.

Here:

* `causal_mask`: the LEGCNet rule. A weight whose windowed-Lyapunov series does not
  Granger-cause the risk series (per-weight p >= alpha) is pruned; weights whose test was not
  possible follow the ``untestable`` policy; optional corrections for multiple testing; an
  optional layer filter.
* `random_mask`, `magnitude_mask`: baselines pruning exactly as many weights per layer (or in
  total) as a reference mask.
* `apply_mask`, `mask_from_flat`, `flat_keep` and the layer helpers of the flat axis.

Next to it, one module per concern (each name is also re-exported here, so
``from jaxprune.prune import <name>`` keeps working):

* `jaxprune.multitest`: p-value corrections over lags (Bonferroni, Holm) and over weights
  (Benjamini-Hochberg), and the keep decision;
* `jaxprune.optim`: `masked_optimizer` (deprecated name ``masked``), sparse (re)training with
  any optax optimizer, pruned weights stay exactly 0;
* `jaxprune.mask_stats`: `mask_summary`, `dense_flops`, `sparse_flops`, `pruned_iou`.

Layer indices (``layers=``) count kernels in flat order (0 = first layer); negative indices count
from the end, so ``layers=[-2, -1]`` is the original's "last two layers".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

# The flat-axis helpers, the corrections, the optimizer and the statistics live in their own
# modules; they are imported (re-exported) here so that every name this module has always had
# still resolves from it (the private ones too: tests and callers imported them from here).
from jaxprune._flat_axis import (
    _as_layout,  # noqa: F401
    _normalise_layers,  # noqa: F401
    analysed_weights,
    flat_keep,
    layer_ids,
    mask_from_flat,
    per_layer_counts,
)
from jaxprune.mask_stats import (
    Flops,
    MaskSummary,
    _bias_sizes,  # noqa: F401
    chance_iou,
    dense_flops,
    iou,
    mask_summary,
    pruned_iou,
    sparse_flops,
)
from jaxprune.multitest import (
    CORRECTIONS,
    LAG_CORRECTIONS,
    UNTESTABLE_POLICIES,
    WEIGHT_CORRECTIONS,
    _parse_correction,  # noqa: F401
    bh_adjust,
    bonferroni_over_lags,
    corrected_pvalues,
    holm_adjust,
    keep_decision,
    min_over_lags,
    round_pvalues,
)
from jaxprune.optim import MaskedState, _check_same_structure, _zero_where_pruned, masked, masked_optimizer
from jaxprune.weights import (
    KernelLayout,
    flatten_kernels,
    kernel_layout,
    key_name,
    unflatten_kernels,
)

__all__ = [
    # defined here
    "PruneSummary",
    "causal_mask",
    "random_mask",
    "magnitude_mask",
    "apply_mask",
    # the flat axis
    "layer_ids",
    "analysed_weights",
    "per_layer_counts",
    "mask_from_flat",
    "flat_keep",
    # jaxprune.multitest
    "UNTESTABLE_POLICIES",
    "LAG_CORRECTIONS",
    "WEIGHT_CORRECTIONS",
    "CORRECTIONS",
    "round_pvalues",
    "min_over_lags",
    "bonferroni_over_lags",
    "holm_adjust",
    "bh_adjust",
    "corrected_pvalues",
    "keep_decision",
    # jaxprune.optim
    "MaskedState",
    "masked_optimizer",
    "masked",
    # jaxprune.mask_stats
    "MaskSummary",
    "mask_summary",
    "Flops",
    "dense_flops",
    "sparse_flops",
    "pruned_iou",
    "iou",
    "chance_iou",
    # jaxprune.weights (imported here before the split; kept importable)
    "KernelLayout",
    "flatten_kernels",
    "kernel_layout",
    "key_name",
    "unflatten_kernels",
]

PyTree = Any


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


def _target_counts(target: Any, layout: KernelLayout, analysed: np.ndarray, per_layer: bool) -> np.ndarray | int:
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
            raise ValueError(f"reference mask has {ref.size} kernel weights, params {layout.n_weights}")
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


def _prune_by_order(order: np.ndarray, candidates: np.ndarray, count: int, keep: np.ndarray) -> None:
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
# Applying a mask
# --------------------------------------------------------------------------------------------


def apply_mask(params: PyTree, mask: PyTree) -> PyTree:
    """Params with the pruned positions set to exactly 0 (same structure and dtypes).

    Call it on the initial params before sparse training: `masked_optimizer` keeps zeros at zero, it
    does not move weights to zero.
    """
    _check_same_structure(mask, params, "params")
    return _zero_where_pruned(params, mask)
