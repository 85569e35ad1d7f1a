"""Accuracy-vs-sparsity curves: the causal criterion against magnitude and random pruning.

Pruning criteria are compared by curves, not one point (Blalock et al. 2020). For each target
sparsity ``s`` and each analysed layer ``i`` with ``n_i`` analysed weights, every method prunes
``round(s * n_i)`` weights of that layer (round half to even, `jaxprune.prune`):

* ``causal_ft`` / ``causal_pt``: the least causal first, by Granger evidence of the FT / PT
  outcome: larger min p first, ties by smaller test statistic (at the min-p lag), then flat
  index. Untestable weights (no p) have no evidence either way: the config's ``untestable``
  policy places them first (``"prune"``) or last (``"keep"``, the original) in the order;
* ``magnitude``: smallest ``|w|`` of the trained dense net per layer;
* ``magnitude_global``: smallest ``|w|`` over all analysed layers, the same total count;
* ``random``: uniformly random, the same per-layer counts (seeded).

All masks of all seeds retrain together in one `jaxprune.population.PopulationTrainer`
program (`retrain_curves_seeds`; masks, seeds and data splits are data: no recompile per mask
or seed), each member from its seed's initial weights on its seed's split, with the run's
threshold and epoch budget. The area under each curve (trapezoid over sparsity,
divided by the sparsity range: the mean accuracy over the range) is compared per seed with a
paired test (`jaxprune.analysis.paired_test`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from jaxprune import prune
from jaxprune.weights import kernel_layout

CURVE_METHODS = ("causal_ft", "causal_pt", "magnitude", "magnitude_global", "random")
RECORD_KEYS = ("method", "seed", "sparsity", "test_accuracy", "macro_f1", "reached_threshold", "epochs_to_threshold")


def parse_sparsities(text: str) -> tuple[float, ...]:
    """``"0.1,0.5"`` -> ``(0.1, 0.5)``; each in (0, 1), distinct; ``"none"`` -> ``()``."""
    text = text.strip()
    if text == "none":
        return ()
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--sparsities takes a comma list of numbers in (0, 1), got {text!r}") from None
    if not vals or any(not 0 < v < 1 for v in vals) or len(set(vals)) != len(vals):
        raise ValueError(f"--sparsities takes distinct numbers in (0, 1), got {text!r}")
    return tuple(sorted(vals))


def causal_order_key(pmin: np.ndarray, stat: np.ndarray | None, untestable: str) -> np.ndarray:
    """Rank ``(n,)`` of each weight in pruning order (0 = pruned first) from its min p and
    statistic ``(n,)`` (NaN = untestable)."""
    pmin = np.asarray(pmin, np.float64)
    n = pmin.size
    stat = np.zeros(n) if stat is None else np.nan_to_num(np.asarray(stat, np.float64), nan=0.0)
    untest = np.isnan(pmin)
    group = np.where(untest, 0 if untestable == "prune" else 2, 1)
    # lexsort: last key is primary -> group, then larger p first, then smaller statistic
    order = np.lexsort((np.arange(n), stat, -np.nan_to_num(pmin, nan=0.0), group))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    return rank


def causal_curve_mask(outcome, params, sparsity: float, *, untestable: str = "keep", layers=None):
    """Mask pytree pruning the ``round(sparsity * n_i)`` least causal analysed weights of each
    layer ``i`` (`outcome`: a `jaxprune.select.GrangerOutcome` on the flat weight axis)."""
    layout = kernel_layout(params)
    analysed = prune.analysed_weights(layout, layers)
    counts = prune._target_counts(float(sparsity), layout, analysed, True)
    rank = causal_order_key(outcome.pmin, outcome.min_statistic, untestable)
    keep = np.ones(layout.n_weights, bool)
    for i in range(layout.n_layers):
        cand = np.flatnonzero(analysed[layout.layer_slice(i)]) + layout.offsets[i]
        order = np.argsort(rank[cand], kind="stable")
        prune._prune_by_order(order, cand, int(counts[i]), keep)
    return prune.mask_from_flat(keep, params)


def curve_masks(analysis: dict, params, sparsities: Sequence[float], cfg, seed: int) -> list:
    """``[(method, sparsity, mask)]`` for every curve method and sparsity.

    analysis: a `jaxprune.select.Analysis` (its ``granger`` outcomes);
    params: the trained dense params (magnitude ranks)."""
    out = []
    layers = cfg.selection.layers
    for s in sparsities:
        per_layer = {}
        for method, src in (("causal_ft", "legcnet_ft"), ("causal_pt", "legcnet_pt")):
            m = causal_curve_mask(
                analysis["granger"][src], params, s, untestable=cfg.selection.untestable, layers=layers
            )
            per_layer[method] = m
        counts = prune.per_layer_counts(~prune.flat_keep(per_layer["causal_ft"]), kernel_layout(params))
        out += [("causal_ft", s, per_layer["causal_ft"]), ("causal_pt", s, per_layer["causal_pt"])]
        out.append(("magnitude", s, prune.magnitude_mask(params, counts, layers=layers)))
        out.append(
            ("magnitude_global", s, prune.magnitude_mask(params, int(counts.sum()), per_layer=False, layers=layers))
        )
        out.append(
            ("random", s, prune.random_mask(params, counts, seed=int(seed) * 1000 + round(s * 1000), layers=layers))
        )
    return out


# Memory budget of a curve population when the config sets none: every member of every seed
# carries its own data split on the device (mnist5k: ~19 MB a member), so a many-seed study is
# chunked (`jaxprune.population.PopulationTrainer.chunk_size`) instead of allocating all at once.
DEFAULT_BUDGET_BYTES = 2**30


def _budget(cfg) -> float:
    mb = getattr(cfg, "memory_budget_mb", None)
    return DEFAULT_BUDGET_BYTES if mb is None else mb * 2**20


def retrain_curves(dataset, cfg, init_params, masks: list, seed: int) -> list[dict]:
    """Retrain every ``(method, sparsity, mask)`` of one seed together; one record each with
    `RECORD_KEYS` plus the achieved ``actual_sparsity`` and the member's ``seconds``."""
    return retrain_curves_seeds([(dataset, init_params, masks, seed)], cfg)[int(seed)]


def retrain_curves_seeds(items: Sequence[tuple], cfg, *, checkpoint_dir=None) -> dict[int, list[dict]]:
    """The curve masks of SEVERAL seeds retrained as ONE population (one compiled program,
    chunked by the config's memory budget, else `DEFAULT_BUDGET_BYTES`).

    items: ``[(dataset, init_params, [(method, sparsity, mask)], seed)]``, one per seed: each
    member trains on its seed's data split from its seed's initial weights with its seed's batch
    order (per-member data, `jaxprune.population.retrain_population`), exactly as
    `retrain_curves` of that seed alone, up to float32 rounding (vmapped matmuls on XLA:CPU
    depend on the member count at ~1e-8). Returns ``{seed: records}`` (`retrain_curves`'
    records; ``seconds`` is the population's wall time over its member count). checkpoint_dir:
    the population's orbax checkpoints (`jaxprune.population.PopulationTrainer.fit`).
    """
    from jaxprune.population import retrain_population

    items = [it for it in items if it[2]]
    if not items:
        return {}
    members = [(i, m) for i, it in enumerate(items) for m in it[2]]
    seeds = [int(items[i][3]) for i, _ in members]
    inits = [items[i][1] for i, _ in members]
    masks = [m for _, (_, _, m) in members]
    # one shared split when every seed has the same (one object); else each member its seed's
    same = all(it[0] is items[0][0] for it in items)
    data = items[0][0] if same else [items[i][0] for i, _ in members]
    t0 = time.perf_counter()
    # the records need no per-epoch test accuracy (their test metrics come from the final params)
    recs, _ = retrain_population(
        data,
        cfg,
        inits,
        masks,
        seeds=seeds,
        memory_budget_bytes=_budget(cfg),
        test_history=False,
        checkpoint_dir=checkpoint_dir,
    )
    seconds = time.perf_counter() - t0
    out = {int(it[3]): [] for it in items}
    for (i, (method, s, _)), r in zip(members, recs):
        out[int(items[i][3])].append(
            {
                "method": method,
                "seed": int(items[i][3]),
                "sparsity": float(s),
                "test_accuracy": r["test_accuracy"],
                "macro_f1": r["macro_f1"],
                "reached_threshold": r["reached_threshold"],
                "epochs_to_threshold": r["epochs_to_threshold"],
                "actual_sparsity": r["sparsity"],
                "epochs": r["epochs"],
                "seconds": seconds / len(members),
            }
        )
    return out


def auc(sparsity: Sequence[float], accuracy: Sequence[float]) -> float:
    """Normalised area under an accuracy-vs-sparsity curve: trapezoid over the sorted
    sparsities divided by their range (the mean accuracy over the range); one point: itself."""
    s = np.asarray(sparsity, np.float64)
    a = np.asarray(accuracy, np.float64)
    o = np.argsort(s)
    s, a = s[o], a[o]
    if s.size == 1:
        return float(a[0])
    return float(np.trapezoid(a, s) / (s[-1] - s[0]))


def auc_table(records: Sequence[dict], metric: str = "test_accuracy") -> dict:
    """``{method: {seed: auc}}`` from curve records."""
    pts = {}
    for r in records:
        pts.setdefault(r["method"], {}).setdefault(r["seed"], []).append((r["sparsity"], r[metric]))
    return {m: {sd: auc(*zip(*sorted(v))) for sd, v in by.items()} for m, by in pts.items()}


def auc_comparisons(records: Sequence[dict], metric: str = "test_accuracy") -> list[dict]:
    """Paired tests (over seeds) of the AUC: causal_ft / causal_pt vs magnitude and random."""
    from jaxprune.analysis import paired_test

    table = auc_table(records, metric)
    out = []
    for a in ("causal_ft", "causal_pt"):
        for b in ("magnitude", "magnitude_global", "random"):
            if a not in table or b not in table:
                continue
            seeds = sorted(set(table[a]) & set(table[b]))
            res = paired_test(
                [table[a][s] for s in seeds], [table[b][s] for s in seeds], name_a=a, name_b=b, what="beat"
            )
            res["metric"] = f"AUC of {metric}"
            out.append(res)
    return out
