"""PNG figures of a run (matplotlib, Agg backend), for ``report.md``.

The figure functions take arrays (or the results dict) and the PNG path to write; none of them
reads a file. `render_figures` draws all of them from a `jaxprune.rundir.RunData` into one
folder, and `make_figures(run_dir)` loads the run directory once and writes into
``run_dir/figures/``; both return ``{key: path relative to the run directory}`` and, for a
figure whose inputs are missing, ``{key: reason}`` in ``errors``. Figures:

* ``le_heatmap``: per layer, the LE series of the first seed (windows x weights; weights
  subsampled to at most `MAX_HEATMAP_WEIGHTS` per layer and ordered by FT min p, pruned on top;
  NaN windows, i.e. no Lyapunov estimate, in grey);
* ``risk``: the risk series (1 - training accuracy at each window's end) per seed, PT cut marked;
* ``pmin_hist``: distribution of the min p-values over lags (log x), FT and PT, alpha marked;
* ``accuracy_epochs``: training accuracy per epoch of each retraining run (dense / FT / PT /
  random / magnitude, per seed) and of the full-length dense run behind the masks;
* ``pruned_per_layer``: pruned fraction per layer per mask (mean +- std over seeds);
* ``accuracy_sparsity``: test accuracy vs sparsity, per seed and the mean per method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune import rundir  # noqa: E402

MAX_HEATMAP_WEIGHTS = 300
COLORS = {
    "dense": "black",
    "legcnet_ft": "tab:blue",
    "legcnet_pt": "tab:cyan",
    "random": "tab:red",
    "magnitude": "tab:orange",
    "random_pt": "salmon",
    "magnitude_pt": "gold",
}
LABELS = {
    "dense": "dense",
    "legcnet_ft": "LEGCNet-FT",
    "legcnet_pt": "LEGCNet-PT",
    "random": "random (FT sparsity)",
    "magnitude": "magnitude (FT sparsity)",
    "random_pt": "random (PT sparsity)",
    "magnitude_pt": "magnitude (PT sparsity)",
}
MARKERS = {
    "dense": "D",
    "legcnet_ft": "o",
    "legcnet_pt": "s",
    "random": "v",
    "magnitude": "^",
    "random_pt": "<",
    "magnitude_pt": ">",
}
DPI = 90


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def le_heatmap(
    le: np.ndarray, offsets, path: Path, *, pmin: np.ndarray | None = None, alpha: float = 0.05, seed: int | None = None
) -> Path:
    """Per layer, the LE series of one seed as a heatmap (windows x weights).

    Args:
      le: windowed LE series ``(n_windows, n_weights)`` on the flat weight axis; NaN (no
        estimate) is drawn grey.
      offsets: layer offsets of the flat axis, ``(n_layers + 1,)`` ints.
      path: the PNG to write.
      pmin: the FT min-over-lags p-values ``(n_weights,)``: weights are ordered by it, pruned
        (p >= `alpha`) on top above a line; None = flat order.
      alpha: the significance level of the run.
      seed: the seed named in the title.

    Layers with more than `MAX_HEATMAP_WEIGHTS` weights show a fixed random sample of them.
    """
    le = np.asarray(le, float)
    offsets = [int(o) for o in offsets]
    n_layers = len(offsets) - 1
    fig, axes = plt.subplots(1, n_layers, figsize=(4.2 * n_layers, 3.6), squeeze=False)
    finite = le[np.isfinite(le)]
    lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
    lim = lim if lim > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.6")
    rng = np.random.default_rng(0)
    for layer in range(n_layers):
        ax = axes[0, layer]
        idx = np.arange(offsets[layer], offsets[layer + 1])
        if idx.size > MAX_HEATMAP_WEIGHTS:
            idx = np.sort(rng.choice(idx, MAX_HEATMAP_WEIGHTS, replace=False))
        n_pruned_shown = 0
        if pmin is not None:
            p = np.nan_to_num(pmin[idx], nan=-1.0)
            idx = idx[np.argsort(-p, kind="stable")]  # pruned (p >= alpha) on top
            n_pruned_shown = int(np.sum(np.nan_to_num(pmin[idx], nan=-1.0) >= alpha))
        im = ax.imshow(
            np.ma.masked_invalid(le[:, idx].T), aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest"
        )
        if n_pruned_shown:
            ax.axhline(n_pruned_shown - 0.5, color="k", lw=0.8)
        total = offsets[layer + 1] - offsets[layer]
        ax.set_title(f"layer {layer}: {idx.size} of {total} weights", fontsize=9)
        ax.set_xlabel("window")
        if layer == 0:
            ax.set_ylabel("weight (by FT min p, descending)")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="LE (grey: no estimate)")
    fig.suptitle(f"Lyapunov exponent per window, seed {seed} (above the line: pruned by FT)", fontsize=10)
    return _save(fig, path)


def risk_series(risks: Mapping[int, np.ndarray], path: Path, *, pt_windows: int) -> Path | None:
    """The risk series ``(n_windows,)`` of each seed (``{seed: risk}``, drawn in that order),
    with the PT cut after the first `pt_windows` windows; None (nothing written) when empty."""
    if not risks:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for s, risk in risks.items():
        ax.plot(risk, lw=1, label=f"seed {s}")
    pt = pt_windows
    ax.axvline(pt - 0.5, color="k", ls="--", lw=0.8, label=f"PT: first {pt} windows")
    ax.set_xlabel("window")
    ax.set_ylabel("risk = 1 - training accuracy")
    ax.set_title("Risk series (Granger target)", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def pmin_hist(pmins: Mapping[str, Sequence[np.ndarray]], path: Path, *, alpha: float) -> Path | None:
    """Histogram (log x) of the min-over-lags p-values, pooled over seeds, per method.

    Args:
      pmins: ``{"legcnet_ft": [per seed (n_weights,)], "legcnet_pt": [...]}``; NaN = untestable
        (counted in the legend, not drawn).
      path: the PNG to write.
      alpha: the significance level, marked.

    Returns the path, or None (nothing written) when no method has any array.
    """
    if not any(pmins.values()):
        return None
    floor = 1e-16
    bins = np.logspace(-16, 0, 49)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for m, parts in pmins.items():
        if not parts:
            continue
        p = np.concatenate([np.asarray(a, float) for a in parts])
        nan = int(np.sum(~np.isfinite(p)))
        p = np.clip(p[np.isfinite(p)], floor, 1.0)
        frac = float(np.mean(p >= alpha)) if p.size else math.nan
        ax.hist(
            p,
            bins=bins,
            histtype="step",
            lw=1.4,
            color=COLORS.get(m, "grey"),
            label=f"{LABELS.get(m, m)}: {frac:.1%} >= alpha, {nan} untestable",
        )
    ax.axvline(alpha, color="k", ls="--", lw=1, label=f"alpha = {alpha}")
    ax.set_xscale("log")
    ax.set_xlabel("min p over lags (clipped at 1e-16)")
    ax.set_ylabel("weights (all seeds)")
    ax.set_title("Granger min p-values: right of alpha = pruned", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def accuracy_epochs(
    retrained: Mapping[int, Mapping[str, np.ndarray]],
    dense: Mapping[int, np.ndarray],
    path: Path,
    *,
    target_accuracy: float,
) -> Path | None:
    """Training accuracy per epoch of every retraining run and of the dense runs.

    Args:
      retrained: ``{seed: {run name: train accuracy per epoch (epochs,)}}``; empty histories
        are skipped.
      dense: ``{seed: (epochs,)}``, the full-length dense run behind the masks (dotted).
      path: the PNG to write.
      target_accuracy: the retraining threshold, marked.

    Seeds are drawn in order (a seed's retraining runs, then its dense run); None (nothing
    written) when there is no curve.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    seen = set()
    for s in dict.fromkeys([*retrained, *dense]):
        for name, h in retrained.get(s, {}).items():
            h = np.asarray(h)
            if not h.size:
                continue
            ax.plot(
                np.arange(1, h.size + 1),
                h,
                color=COLORS.get(name, "grey"),
                lw=1,
                alpha=0.8,
                label=None if name in seen else LABELS.get(name, name),
            )
            seen.add(name)
        if s in dense:
            h = np.asarray(dense[s])
            ax.plot(
                np.arange(1, h.size + 1),
                h,
                color="0.5",
                ls=":",
                lw=1,
                label=None if "full" in seen else "dense, full run behind the masks",
            )
            seen.add("full")
    if not seen:
        plt.close(fig)
        return None
    ax.axhline(target_accuracy, color="k", lw=0.6, ls="--", label="retraining threshold")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training accuracy")
    ax.set_title("Training accuracy per epoch (retraining stops at the threshold)", fontsize=10)
    ax.legend(fontsize=6, loc="lower right")
    return _save(fig, path)


def pruned_per_layer(results: dict, path: Path) -> Path | None:
    """Pruned fraction per layer of each mask (bars: mean over seeds, error bars: std), from
    the run records of a results dict; None (nothing written) when only the dense run is."""
    sizes = rundir.layer_sizes(results)
    names = [n for n in rundir.run_names(results) if n != "dense"]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    width = 0.8 / len(names)
    x = np.arange(len(sizes))
    for i, name in enumerate(names):
        fr = np.array(
            [
                [p / max(n, 1) for p, n in zip(r["pruned_per_layer"], sizes)]
                for r in results["runs"]
                if r.get("name", r["method"]) == name
            ]
        )
        ax.bar(
            x + (i - (len(names) - 1) / 2) * width,
            fr.mean(0),
            width,
            yerr=fr.std(0, ddof=1) if len(fr) > 1 else None,
            capsize=2,
            color=COLORS.get(name, "grey"),
            label=LABELS.get(name, name),
        )
    ax.set_xticks(x, [f"layer {i}\n({n} w)" for i, n in enumerate(sizes)])
    ax.set_ylabel("pruned fraction")
    ax.set_title("Pruned fraction per layer (baselines matched per layer)", fontsize=10)
    ax.legend(fontsize=6)
    return _save(fig, path)


def accuracy_sparsity(results: dict, path: Path) -> Path | None:
    """Test accuracy vs sparsity of every run record of a results dict: small markers per
    seed, large outlined ones the mean per run name."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in rundir.run_names(results):
        rs = [r for r in results["runs"] if r.get("name", r["method"]) == name]
        sp = np.array([r["sparsity"] for r in rs])
        acc = np.array([r["test_accuracy"] for r in rs])
        c = COLORS.get(name, "grey")
        mk = MARKERS.get(name, "o")
        z = 3 if name.startswith("legcnet") else 2  # the causal masks on top
        ax.scatter(sp, acc, s=14, color=c, alpha=0.5, marker=mk, zorder=z)
        ax.scatter(
            [sp.mean()],
            [acc.mean()],
            s=90 if z == 3 else 60,
            color=c,
            edgecolor="k",
            marker=mk,
            label=LABELS.get(name, name),
            zorder=z + 2,
        )
    ax.set_xlabel("sparsity (pruned fraction of all kernel weights)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs sparsity (small: seeds; large, outlined: means)", fontsize=10)
    ax.legend(fontsize=6)
    return _save(fig, path)


# ------------------------------------------------------------------------------ from a run
# The glue from a `rundir.RunData` to the figure functions above. A file the loader could not
# read raises its CorruptFileError here (data.check), so the figure that needed it is reported
# with the reason, as if it had read the file itself.


def _le_heatmap_of(data: rundir.RunData, path: Path) -> Path | None:
    seed = data.le_seed
    if seed is None:
        return None
    data.check(seed, "dense.npz")
    if data.le is None:
        return None
    data.check(seed, "analysis.npz")
    return le_heatmap(
        data.le,
        rundir.layer_offsets(data.results),
        path,
        pmin=data.seeds[seed].pmin("legcnet_ft"),
        alpha=_cfg(data)["alpha"],
        seed=seed,
    )


def _risk_of(data: rundir.RunData, path: Path) -> Path | None:
    risks = {}
    for s, d in data.seeds.items():
        data.check(s, "dense.npz")
        if d.dense is not None:
            risks[s] = d.dense["risk"]
    return risk_series(risks, path, pt_windows=_cfg(data)["pt_windows"])


def _pmin_of(data: rundir.RunData, path: Path) -> Path | None:
    pooled = {"legcnet_ft": [], "legcnet_pt": []}
    for s, d in data.seeds.items():
        data.check(s, "analysis.npz")
        for m in pooled:
            if d.pmin(m) is not None:
                pooled[m].append(d.pmin(m))
    return pmin_hist(pooled, path, alpha=_cfg(data)["alpha"])


def _accuracy_epochs_of(data: rundir.RunData, path: Path) -> Path | None:
    names = rundir.run_names(data.results)
    retrained, dense = {}, {}
    for s, d in data.seeds.items():
        for name in names:
            data.check(s, f"retrained_{name}.npz")
        retrained[s] = {name: d.retrained[name]["train_accuracy_history"] for name in names if name in d.retrained}
        data.check(s, "dense.npz")
        if d.dense is not None:
            dense[s] = d.dense["train_accuracy_history"]
    return accuracy_epochs(retrained, dense, path, target_accuracy=_cfg(data)["target_accuracy"])


def render_figures(data: rundir.RunData, out_dir) -> tuple[dict, dict]:
    """Write every figure of a run into `out_dir` (PNG); returns ``(figures, errors)``:
    ``{key: path relative to out_dir's parent}`` (the run directory, where report.md links
    them) and ``{key: why it is missing}``."""
    out_dir = Path(out_dir)
    results = data.results
    jobs = {
        "le_heatmap": lambda p: _le_heatmap_of(data, p),
        "risk": lambda p: _risk_of(data, p),
        "pmin_hist": lambda p: _pmin_of(data, p),
        "accuracy_epochs": lambda p: _accuracy_epochs_of(data, p),
        "pruned_per_layer": lambda p: pruned_per_layer(results, p),
        "accuracy_sparsity": lambda p: accuracy_sparsity(results, p),
    }
    figures, errors = {}, {}
    for key, job in jobs.items():
        path = out_dir / f"{key}.png"
        try:
            made = job(path)
        except Exception as e:  # a figure must never sink the report
            plt.close("all")
            errors[key] = f"{type(e).__name__}: {e}"
            continue
        if made is None:
            errors[key] = "per-seed files missing"
        else:
            figures[key] = str(Path(made).relative_to(out_dir.parent))
    return figures, errors


def make_figures(run_dir, results: dict | None = None) -> tuple[dict, dict]:
    """Write every figure into ``run_dir/figures``; returns ``(figures, errors)``:
    ``{key: path relative to run_dir}`` and ``{key: why it is missing}``. Loads the run
    directory once (`rundir.load_run_data`), then `render_figures`."""
    run_dir = Path(run_dir)
    results = results if results is not None else rundir.load_results(run_dir)
    if results is None:
        return {}, {"all": "no results.json"}
    return render_figures(rundir.load_run_data(run_dir, results), run_dir / "figures")


def _cfg(data) -> dict:
    """The run's config as a flat dict (grouped in this version, flat in earlier runs)."""
    from jaxprune.config import flat_config_dict

    return flat_config_dict(data.results["config"])
