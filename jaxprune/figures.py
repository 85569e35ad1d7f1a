"""PNG figures of a run directory (matplotlib, Agg backend), for ``report.md``.

`make_figures(run_dir)` writes into ``run_dir/figures/`` and returns ``{key: path relative to
run_dir}``; a figure whose inputs are missing is skipped (its key maps to the reason in
``errors``). Figures:

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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune import rundir  # noqa: E402

MAX_HEATMAP_WEIGHTS = 300
COLORS = {
    "dense": "black", "legcnet_ft": "tab:blue", "legcnet_pt": "tab:cyan",
    "random": "tab:red", "magnitude": "tab:orange", "random_pt": "salmon",
    "magnitude_pt": "gold",
}
LABELS = {
    "dense": "dense", "legcnet_ft": "LEGCNet-FT", "legcnet_pt": "LEGCNet-PT",
    "random": "random (FT sparsity)", "magnitude": "magnitude (FT sparsity)",
    "random_pt": "random (PT sparsity)", "magnitude_pt": "magnitude (PT sparsity)",
}
MARKERS = {"dense": "D", "legcnet_ft": "o", "legcnet_pt": "s", "random": "v",
           "magnitude": "^", "random_pt": "<", "magnitude_pt": ">"}
DPI = 90


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def le_heatmap(run_dir, results: dict, path: Path, seed: int | None = None) -> Path | None:
    seed = results["seeds"][0] if seed is None else seed
    dense = rundir.load_dense(run_dir, seed, keys=("le",))
    if dense is None:
        return None
    le = np.asarray(dense["le"], float)
    offsets = rundir.layer_offsets(results)
    analysis = rundir.load_analysis(run_dir, seed) or {}
    pmin = analysis.get("pmin_legcnet_ft")
    alpha = _config(results)["alpha"]
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
        im = ax.imshow(np.ma.masked_invalid(le[:, idx].T), aspect="auto", cmap=cmap,
                       vmin=-lim, vmax=lim, interpolation="nearest")
        if n_pruned_shown:
            ax.axhline(n_pruned_shown - 0.5, color="k", lw=0.8)
        total = offsets[layer + 1] - offsets[layer]
        ax.set_title(f"layer {layer}: {idx.size} of {total} weights", fontsize=9)
        ax.set_xlabel("window")
        if layer == 0:
            ax.set_ylabel("weight (by FT min p, descending)")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="LE (grey: no estimate)")
    fig.suptitle(f"Lyapunov exponent per window, seed {seed} (above the line: pruned by FT)",
                 fontsize=10)
    _save(fig, path)
    return path


def risk_series(run_dir, results: dict, path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    any_ = False
    for s in results["seeds"]:
        d = rundir.load_dense(run_dir, s, keys=("risk",))
        if d is None:
            continue
        ax.plot(d["risk"], lw=1, label=f"seed {s}")
        any_ = True
    if not any_:
        plt.close(fig)
        return None
    pt = _config(results)["pt_windows"]
    ax.axvline(pt - 0.5, color="k", ls="--", lw=0.8, label=f"PT: first {pt} windows")
    ax.set_xlabel("window")
    ax.set_ylabel("risk = 1 - training accuracy")
    ax.set_title("Risk series (Granger target)", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)
    return path


def pmin_hist(run_dir, results: dict, path: Path) -> Path | None:
    alpha = _config(results)["alpha"]
    pooled = {"legcnet_ft": [], "legcnet_pt": []}
    for s in results["seeds"]:
        a = rundir.load_analysis(run_dir, s)
        if a is None:
            continue
        for m in pooled:
            if f"pmin_{m}" in a:
                pooled[m].append(np.asarray(a[f"pmin_{m}"], float))
    if not any(pooled.values()):
        return None
    floor = 1e-16
    bins = np.logspace(-16, 0, 49)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for m, parts in pooled.items():
        if not parts:
            continue
        p = np.concatenate(parts)
        nan = int(np.sum(~np.isfinite(p)))
        p = np.clip(p[np.isfinite(p)], floor, 1.0)
        frac = float(np.mean(p >= alpha)) if p.size else math.nan
        ax.hist(p, bins=bins, histtype="step", lw=1.4, color=COLORS[m],
                label=f"{LABELS[m]}: {frac:.1%} >= alpha, {nan} untestable")
    ax.axvline(alpha, color="k", ls="--", lw=1, label=f"alpha = {alpha}")
    ax.set_xscale("log")
    ax.set_xlabel("min p over lags (clipped at 1e-16)")
    ax.set_ylabel("weights (all seeds)")
    ax.set_title("Granger min p-values: right of alpha = pruned", fontsize=10)
    ax.legend(fontsize=7)
    _save(fig, path)
    return path


def accuracy_epochs(run_dir, results: dict, path: Path) -> Path | None:
    names = rundir.run_names(results)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    seen = set()
    for s in results["seeds"]:
        for name in names:
            r = rundir.load_retrained(run_dir, s, name)
            if r is None or not len(r["train_accuracy_history"]):
                continue
            h = np.asarray(r["train_accuracy_history"])
            ax.plot(np.arange(1, h.size + 1), h, color=COLORS.get(name, "grey"), lw=1,
                    alpha=0.8, label=None if name in seen else LABELS.get(name, name))
            seen.add(name)
        d = rundir.load_dense(run_dir, s, keys=("train_accuracy_history",))
        if d is not None:
            h = np.asarray(d["train_accuracy_history"])
            ax.plot(np.arange(1, h.size + 1), h, color="0.5", ls=":", lw=1,
                    label=None if "full" in seen else "dense, full run behind the masks")
            seen.add("full")
    if not seen:
        plt.close(fig)
        return None
    ax.axhline(_config(results)["target_accuracy"], color="k", lw=0.6, ls="--",
               label="retraining threshold")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training accuracy")
    ax.set_title("Training accuracy per epoch (retraining stops at the threshold)", fontsize=10)
    ax.legend(fontsize=6, loc="lower right")
    _save(fig, path)
    return path


def pruned_per_layer(results: dict, path: Path) -> Path | None:
    sizes = rundir.layer_sizes(results)
    names = [n for n in rundir.run_names(results) if n != "dense"]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    width = 0.8 / len(names)
    x = np.arange(len(sizes))
    for i, name in enumerate(names):
        fr = np.array([[p / max(n, 1) for p, n in zip(r["pruned_per_layer"], sizes)]
                       for r in results["runs"] if r.get("name", r["method"]) == name])
        ax.bar(x + (i - (len(names) - 1) / 2) * width, fr.mean(0), width,
               yerr=fr.std(0, ddof=1) if len(fr) > 1 else None, capsize=2,
               color=COLORS.get(name, "grey"), label=LABELS.get(name, name))
    ax.set_xticks(x, [f"layer {i}\n({n} w)" for i, n in enumerate(sizes)])
    ax.set_ylabel("pruned fraction")
    ax.set_title("Pruned fraction per layer (baselines matched per layer)", fontsize=10)
    ax.legend(fontsize=6)
    _save(fig, path)
    return path


def accuracy_sparsity(results: dict, path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name in rundir.run_names(results):
        rs = [r for r in results["runs"] if r.get("name", r["method"]) == name]
        sp = np.array([r["sparsity"] for r in rs])
        acc = np.array([r["test_accuracy"] for r in rs])
        c = COLORS.get(name, "grey")
        mk = MARKERS.get(name, "o")
        z = 3 if name.startswith("legcnet") else 2  # the causal masks on top
        ax.scatter(sp, acc, s=14, color=c, alpha=0.5, marker=mk, zorder=z)
        ax.scatter([sp.mean()], [acc.mean()], s=90 if z == 3 else 60, color=c, edgecolor="k",
                   marker=mk, label=LABELS.get(name, name), zorder=z + 2)
    ax.set_xlabel("sparsity (pruned fraction of all kernel weights)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs sparsity (small: seeds; large, outlined: means)", fontsize=10)
    ax.legend(fontsize=6)
    _save(fig, path)
    return path


def make_figures(run_dir, results: dict | None = None) -> tuple[dict, dict]:
    """Write every figure into ``run_dir/figures``; returns ``(figures, errors)``:
    ``{key: path relative to run_dir}`` and ``{key: why it is missing}``."""
    run_dir = Path(run_dir)
    results = results if results is not None else rundir.load_results(run_dir)
    if results is None:
        return {}, {"all": "no results.json"}
    out_dir = run_dir / "figures"
    jobs = {
        "le_heatmap": lambda p: le_heatmap(run_dir, results, p),
        "risk": lambda p: risk_series(run_dir, results, p),
        "pmin_hist": lambda p: pmin_hist(run_dir, results, p),
        "accuracy_epochs": lambda p: accuracy_epochs(run_dir, results, p),
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
            figures[key] = str(Path(made).relative_to(run_dir))
    return figures, errors


def _config(results: dict) -> dict:
    """results.json's config in the flat layout (grouped since the config groups, flat before)."""
    from jaxprune.config import flat_config_dict

    return flat_config_dict(results["config"])
