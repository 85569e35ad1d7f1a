"""The select stage: Granger tests of every weight's LE series against the risk series, then
masks (LEGCNet-FT on all windows, LEGCNet-PT on the first ``pt_windows``) and the random /
magnitude baselines at the same sparsity.

`analyze` is the stage: arrays and a config in, a frozen `Analysis` out; no file I/O (the run
directory is `jaxprune.rundir`'s). ``jaxprune run`` and ``jaxprune analyze`` both go through it.
docs/granger.md gives the formulas, docs/architecture.md the stage order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import granger as granger_mod
from jaxprune import prune, sharding, stationarity
from jaxprune.weights import kernel_layout

if TYPE_CHECKING:
    from jaxprune.config import LegcnetConfig

__all__ = [
    "Analysis",
    "GrangerOutcome",
    "LE_UNDEFINED",
    "analyze",
    "granger_on_le",
    "mask_from_granger",
    "correction_table",
    "effective_maxlag",
    "method_windows",
]


def budget_bytes(cfg: LegcnetConfig) -> float | None:
    """The kernels' per-device memory budget in bytes (None: no budget)."""
    return None if cfg.memory_budget_mb is None else cfg.memory_budget_mb * 2**20


def use_sharding(cfg: LegcnetConfig) -> bool:
    """Route the kernels through `jaxprune.sharding` (several devices or a memory budget);
    results are identical for any number of devices at the same budget."""
    return jax.device_count() > 1 or cfg.memory_budget_mb is not None


def effective_maxlag(n: int, maxlag: int) -> int:
    """The largest usable lag <= maxlag for a series of n points (statsmodels needs n > 3p + 1)."""
    return max(0, min(maxlag, (n - 2) // 3))


@dataclasses.dataclass(frozen=True)
class GrangerOutcome:
    """Per-weight Granger results for one LE series set (flat weight axis)."""

    pmin: np.ndarray  # (n_weights,) min p over lags, NaN when untestable
    lag_pvalues: np.ndarray  # (n_weights, maxlag_used)
    status: np.ndarray  # (n_weights,) granger.Status (+ 100 when the LE series had no estimate)
    maxlag_used: int
    n_windows: int
    # (n_weights,) the test statistic at the lag of min p (ranks ties in p; NaN if untestable)
    min_statistic: np.ndarray | None = None


LE_UNDEFINED = 100  # status offset: the weight's LE series was all NaN (it never moved)


def granger_on_le(le: np.ndarray, risk: np.ndarray, cfg: LegcnetConfig, *, local: bool = False) -> GrangerOutcome:
    """Granger-test every weight's LE series (``le``: ``(n_windows, n_weights)``) against
    ``risk`` (``(n_windows,)``), in float64 whatever the LE mode (float32 statistics are off by
    ~1e-4 relative, and not faster on CPU: README, Speed).

    NaN windows (no Lyapunov estimate) are filled with ``cfg.selection.nan_fill`` (the original: 0); a
    series that is NaN in every window is untestable (status ``LE_UNDEFINED``). maxlag is capped
    to what ``n_windows`` allows (`effective_maxlag`); the cap is returned.
    local: keep the computation on this process's devices (several processes: the null
    controls, whose calls the processes need not make in step).
    """
    with jax.enable_x64(True):
        return _granger_on_le(le, risk, cfg, local)


def _granger_on_le(le: np.ndarray, risk: np.ndarray, cfg: LegcnetConfig, local: bool = False) -> GrangerOutcome:
    le = np.asarray(le, np.float64)
    risk = np.asarray(risk, np.float64)
    n, n_w = le.shape
    if risk.shape != (n,):
        raise ValueError(f"risk has shape {risk.shape}, expected ({n},)")
    if not np.all(np.isfinite(risk)):
        raise ValueError("the risk series holds NaN or inf")
    maxlag = effective_maxlag(n - (1 if cfg.granger.stationarity else 0), cfg.granger.maxlag)
    if maxlag < 1:
        raise ValueError(f"{n} windows are too few for a Granger test (need >= 5)")
    undefined = np.all(np.isnan(le), axis=0)
    x = np.asarray(granger_mod.fill_nan(jnp.asarray(le.T), cfg.selection.nan_fill))
    y = jnp.asarray(risk)
    if cfg.granger.stationarity:
        pair = stationarity.make_stationary(y, jnp.asarray(x))
        y, x = pair.y, pair.x
        if y.ndim > 1:
            y = y[0]
    if float(jnp.max(y) - jnp.min(y)) == 0.0:
        # A constant risk series (e.g. a plateau over the PT windows) explains nothing: every
        # weight is untestable rather than an exception.
        status = np.full((n_w,), granger_mod.Status.CONSTANT, np.int32)
        pmin = np.full((n_w,), np.nan)
        lag_p = np.full((n_w, maxlag), np.nan)
        min_stat = pmin
    else:
        local = local and jax.process_count() > 1
        if local:
            res = granger_mod.granger_tests(y, jax.device_put(jnp.asarray(x), jax.local_devices()[0]), maxlag=maxlag)
        elif use_sharding(cfg) and y.ndim == 1:
            res = sharding.sharded_granger_tests(y, np.asarray(x), maxlag=maxlag, memory_budget_bytes=budget_bytes(cfg))
        else:
            res = granger_mod.granger_tests(y, jnp.asarray(x), maxlag=maxlag)
        lag_p = np.asarray(getattr(res, cfg.granger.test).pvalue, np.float64)
        status = np.asarray(res.status, np.int32)
        pmin, _ = granger_mod.min_pvalue(res, cfg.granger.test, round_decimals=cfg.selection.round_pvalues)
        pmin = np.asarray(pmin, np.float64)
        stat = np.asarray(getattr(res, cfg.granger.test).statistic, np.float64)
        at = np.argmin(np.where(np.isnan(lag_p), np.inf, lag_p), axis=-1)[..., None]
        min_stat = np.take_along_axis(stat, at, axis=-1)[..., 0]
    status = np.where(undefined, LE_UNDEFINED, status)
    pmin = np.where(status == 0, pmin, np.nan)
    min_stat = np.where(status == 0, min_stat, np.nan)
    return GrangerOutcome(pmin, lag_p, status, maxlag, n, min_stat)


def mask_from_granger(outcome: GrangerOutcome, params, cfg: LegcnetConfig):
    """``(mask, PruneSummary)`` from a `GrangerOutcome` with the config's policy and correction."""
    p = outcome.pmin
    if cfg.selection.round_pvalues is not None:
        p = prune.round_pvalues(p, cfg.selection.round_pvalues)
    lag_p = outcome.lag_pvalues
    return prune.causal_mask(
        p,
        params,
        alpha=cfg.selection.alpha,
        untestable=cfg.selection.untestable,
        status=np.where(outcome.status == 0, 0, 1),
        layers=cfg.selection.layers,
        correction=cfg.selection.correction,
        lag_pvalues=lag_p,
        n_lags=outcome.maxlag_used,
    )


def correction_table(outcome: GrangerOutcome, params, cfg: LegcnetConfig) -> dict:
    """Sparsity under each multiple-testing correction and both untestable policies."""
    table = {}
    for corr in ("none", "bonferroni", "holm", "bh", ("holm", "bh")):
        name = corr if isinstance(corr, str) else "+".join(corr)
        _, summary = mask_from_granger(outcome, params, cfg.replace(correction=corr))
        table[name] = {
            "pruned_if_keep": summary.pruned_if_keep,
            "pruned_if_prune": summary.pruned_if_prune,
            "n_weights": int(sum(summary.n_weights)),
        }
    return table


def method_windows(n_windows: int, cfg: LegcnetConfig) -> dict[str, int]:
    """Windows each LEGCNet variant tests: FT all ``n_windows``, PT the first ``pt_windows``."""
    return {"legcnet_ft": n_windows, "legcnet_pt": min(cfg.selection.pt_windows, n_windows)}


@dataclasses.dataclass(frozen=True)
class Analysis:
    """What the select stage decided for one seed.

    masks: name -> boolean mask pytree shaped like the params' kernels: ``legcnet_ft``,
      ``legcnet_pt`` and, with baselines, ``random`` / ``magnitude`` (at FT sparsity),
      ``random_pt`` / ``magnitude_pt`` (at PT sparsity, per ``baselines_for``) and ``dense``
      (all True).
    granger: ``legcnet_ft`` / ``legcnet_pt`` -> `GrangerOutcome` (flat weight axis).
    summaries: the same keys -> `jaxprune.prune.PruneSummary`.
    corrections: the same keys -> `correction_table`.
    seconds: the same keys -> wall seconds of the Granger tests and the mask.
    """

    masks: Mapping[str, Any]
    granger: Mapping[str, GrangerOutcome]
    summaries: Mapping[str, prune.PruneSummary]
    corrections: Mapping[str, dict]
    seconds: Mapping[str, float]

    def __getitem__(self, key: str):
        # the dict that `pipeline.analyze_dense` returned before this class: analysis["masks"]
        return getattr(self, key)

    def as_dict(self) -> dict:
        """``{"masks": ..., "granger": ..., "summaries": ..., "corrections": ..., "seconds": ...}``
        (shallow: the same objects)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def method_summary(self, method: str) -> dict:
        """One LEGCNet variant's summary for ``results.json`` / ``analysis.json``."""
        g = self.granger[method]
        return {
            **self.summaries[method].as_dict(),
            "maxlag_used": g.maxlag_used,
            "n_windows": g.n_windows,
            "le_undefined": int(np.sum(g.status == LE_UNDEFINED)),
            "corrections": self.corrections[method],
        }


def analyze(
    le: np.ndarray,
    risk: np.ndarray,
    params: Any,
    cfg: LegcnetConfig,
    *,
    seed: int | None = None,
    baselines: bool = True,
) -> Analysis:
    """The select stage: Granger tests and masks for one seed.

    le: ``(n_windows, n_weights)`` LE series (NaN where a window has no estimate); risk:
    ``(n_windows,)``; params: the trained dense net (the mask layout and the magnitude
    baseline); seed: the random baseline's seed. baselines: also build the random / magnitude
    baselines (``cfg.retrain.baselines_for``) and the all-True ``dense`` mask, i.e. every mask that
    `jaxprune.pipeline.run_seed` retrains; False: LEGCNet-FT / -PT only (`jaxprune analyze`).
    """
    if baselines and seed is None:
        raise ValueError("analyze: the random baseline needs seed= (or pass baselines=False)")
    le, risk = np.asarray(le), np.asarray(risk)
    masks, summaries, outcomes, corrections, seconds = {}, {}, {}, {}, {}
    for method, n in method_windows(len(risk), cfg).items():
        t0 = time.perf_counter()
        outcome = granger_on_le(le[:n], risk[:n], cfg)
        mask, summary = mask_from_granger(outcome, params, cfg)
        seconds[method] = time.perf_counter() - t0
        masks[method] = mask
        summaries[method] = summary
        outcomes[method] = outcome
        corrections[method] = correction_table(outcome, params, cfg)
    if baselines:
        for base in cfg.retrain.baselines_for:
            ref = masks[base]
            tag = "" if base == "legcnet_ft" else "_pt"
            masks["random" + tag] = prune.random_mask(
                params, ref, seed=seed, per_layer=cfg.retrain.per_layer_baselines, layers=cfg.selection.layers
            )
            # magnitude: smallest |w| of the trained dense weights
            masks["magnitude" + tag] = prune.magnitude_mask(
                params, ref, per_layer=cfg.retrain.per_layer_baselines, layers=cfg.selection.layers
            )
        masks["dense"] = prune.mask_from_flat(np.ones(kernel_layout(params).n_weights, bool), params)
    return Analysis(masks, outcomes, summaries, corrections, seconds)
