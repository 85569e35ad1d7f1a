"""The verdict stage of `jaxprune.pipeline.run`: null controls and accuracy-vs-sparsity curves.

Runs after every seed's dense / analysis / retraining stages (crossseed nulls need the other
seeds' LE series), from the files those stages wrote (``seed_N/dense.npz``), so it can be
added to, or re-run on, a finished run directory with ``--resume``. Per seed it writes
``null_controls.json`` and ``curves.json`` (reused on resume when the settings match).

`results.json` gets ``null_controls`` (records: seed, mask, layer, control, real_fraction,
null_fraction, p_value, ...), ``null_calibration`` (per seed: rejection rate at each lag and of
the min-p rule under the shuffle null, FT windows), ``curves`` (records: method, seed,
sparsity, test_accuracy, macro_f1, reached_threshold, epochs_to_threshold, ...) and
``curve_comparisons`` (paired AUC tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxprune import curves as curves_mod
from jaxprune import nulls as nulls_mod
from jaxprune import rundir
from jaxprune.train import load_params
from jaxprune.weights import kernel_layout


def _cached(path: Path, settings: dict, resume: bool):
    saved = rundir.read_json(path) if resume else None  # names a corrupt file
    return saved["records"] if saved is not None and saved.get("settings") == settings else None


def _write(path: Path, settings: dict, records) -> None:
    rundir.write_json(path, {"settings": settings, "records": records})  # strict, atomic


def stage_outcomes(out_dir, seed: int, le: np.ndarray, risk: np.ndarray, cfg, n_weights: int) -> dict:
    """The select stage's FT / PT `GrangerOutcome`s of one seed: read from ``seed_K/analysis.npz``
    when it holds them whole (p-values per lag, statuses, statistics, of ``n_weights`` weights),
    else recomputed from the LE series ``le`` ``(n_windows, n_weights)`` and ``risk``
    ``(n_windows,)`` (run directories written before analysis.npz kept them). Either way the
    same outcomes as `jaxprune.select.analyze` computed."""
    from jaxprune.select import GrangerOutcome, granger_on_le, method_windows

    saved = rundir.load_analysis(out_dir, seed)
    out = {}
    for m, n in method_windows(len(risk), cfg).items():
        keys = [f"{k}_{m}" for k in ("pmin", "status", "lagp", "minstat", "maxlag")]
        if saved is not None and all(k in saved for k in keys):
            lag_p = np.asarray(saved[f"lagp_{m}"])
            if lag_p.shape == (n_weights, int(saved[f"maxlag_{m}"])):
                out[m] = GrangerOutcome(
                    pmin=np.asarray(saved[f"pmin_{m}"]),
                    lag_pvalues=lag_p,
                    status=np.asarray(saved[f"status_{m}"]),
                    maxlag_used=int(saved[f"maxlag_{m}"]),
                    n_windows=n,
                    min_statistic=np.asarray(saved[f"minstat_{m}"]),
                )
                continue
        out[m] = granger_on_le(le[:n], risk[:n], cfg)
    return out


def run_controls(
    dataset,
    cfg,
    seeds: Sequence[int],
    out_dir,
    *,
    nulls: nulls_mod.NullConfig | None = None,
    sparsities: Sequence[float] = (),
    resume: bool = False,
) -> dict:
    """Null controls and curves for every seed of a run directory; returns the results keys.

    dataset: a `Dataset` or a callable ``seed -> Dataset``; cfg: the run's `LegcnetConfig`.
    """
    from jaxprune.pipeline import _init_params

    out_dir = Path(out_dir)
    seeds = [int(s) for s in seeds]
    out = {
        "null_controls": [],
        "null_calibration": [],
        "curves": [],
        "curve_comparisons": [],
        "controls_settings": {
            "nulls": None
            if nulls is None
            else {
                "controls": list(nulls.controls),
                "draws": nulls.draws,
                "max_per_layer": nulls.max_per_layer,
                "iaaft_iterations": nulls.iaaft_iterations,
            },
            "sparsities": [float(s) for s in sparsities],
        },
    }
    if (nulls is None or not nulls.controls) and not sparsities:
        return out
    dense = {s: rundir.load_dense(out_dir, s, keys=None) for s in seeds}
    curve_settings = {"sparsities": [float(s) for s in sparsities]}
    curves, pending = {}, []
    for seed in seeds:
        d = dense[seed]
        data = dataset(seed) if callable(dataset) else dataset
        _, like = _init_params(data, cfg, seed)
        params = load_params(d, like, "params")
        layout = kernel_layout(params)
        le, risk = np.asarray(d["le"]), np.asarray(d["risk"])
        # the select stage's FT / PT windows and outcomes (analysis.npz)
        outcomes = stage_outcomes(out_dir, seed, le, risk, cfg, layout.n_weights)
        seed_dir = rundir.seed_dir(out_dir, seed)
        if nulls is not None and nulls.controls:
            others = [np.asarray(dense[o]["le"]) for o in seeds if o != seed]
            settings = {**out["controls_settings"]["nulls"], "seeds": seeds}
            cached = _cached(seed_dir / "null_controls.json", settings, resume)
            if cached is None:
                recs, calib = [], []
                for m, g in outcomes.items():
                    n = g.n_windows
                    r, c = nulls_mod.null_controls(
                        le[:n],
                        risk[:n],
                        cfg,
                        layout,
                        nulls,
                        seed=seed,
                        mask=m,
                        real_outcome=outcomes[m],
                        other_le=[o[:n] for o in others],
                        calibration=(m == "legcnet_ft"),
                    )
                    recs += r
                    if c is not None:
                        calib.append(c)
                cached = {"records": recs, "calibration": calib}
                _write(seed_dir / "null_controls.json", settings, cached)
            out["null_controls"] += cached["records"]
            out["null_calibration"] += cached["calibration"]
        if sparsities:
            cached = _cached(seed_dir / "curves.json", curve_settings, resume)
            if cached is None:
                init = load_params(d, like, "init")
                masks = curves_mod.curve_masks({"granger": outcomes}, params, sparsities, cfg, seed)
                pending.append((data, init, masks, seed))
            curves[seed] = cached
    if pending:
        # the curve masks of every seed not cached: one population (chunked by the budget), with
        # orbax checkpoints that a resumed run continues (a fresh one discards old ones)
        ckpt = out_dir / rundir.POPULATION_CHECKPOINTS / "curves"
        if not resume:
            rundir.discard_population_checkpoints(out_dir, "curves")
        for seed, recs in curves_mod.retrain_curves_seeds(pending, cfg, checkpoint_dir=ckpt).items():
            _write(rundir.seed_dir(out_dir, seed) / "curves.json", curve_settings, recs)
            curves[seed] = recs
        rundir.discard_population_checkpoints(out_dir, "curves")
    out["curves"] = [r for seed in seeds if curves.get(seed) for r in curves[seed]]
    if out["curves"]:
        out["curve_comparisons"] = curves_mod.auc_comparisons(out["curves"])
    return out


# ------------------------------------------------------------------------------ report
def _figures(run_dir: Path, results: dict) -> dict:
    """calibration.png and accuracy_sparsity_curves.png under run_dir/figures; {key: rel path}."""
    from jaxprune import figures as figs

    plt = figs.plt
    fig_dir = Path(run_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    calib = results.get("null_calibration") or []
    if calib:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for c in calib:
            lags = np.arange(1, len(c["lag_rejection"]) + 1)
            ax.plot(lags, c["lag_rejection"], "o-", ms=3, label=f"seed {c['seed']} per lag")
            ax.axhline(c["min_p_rejection"], ls=":", color="tab:red")
        a = calib[0]["alpha"]
        ax.axhline(a, color="black", lw=0.8, label=f"alpha = {a}")
        ax.plot([], [], ls=":", color="tab:red", label="min p over lags")
        ax.set_xlabel("lag")
        ax.set_ylabel("rejection rate under the shuffle null")
        ax.set_title(f"Calibration of {calib[0]['test']} (FT windows)")
        ax.legend(fontsize=7)
        figs._save(fig, fig_dir / "calibration.png")
        out["calibration"] = "figures/calibration.png"
    recs = results.get("curves") or []
    if recs:
        fig, ax = plt.subplots(figsize=(6, 4))
        colors = {
            "causal_ft": "tab:blue",
            "causal_pt": "tab:cyan",
            "magnitude": "tab:orange",
            "magnitude_global": "tab:brown",
            "random": "tab:red",
        }
        for method in curves_mod.CURVE_METHODS:
            rs = [r for r in recs if r["method"] == method]
            if not rs:
                continue
            sp = sorted({r["sparsity"] for r in rs})
            acc = np.array([[r["test_accuracy"] for r in rs if r["sparsity"] == s] for s in sp], dtype=object)
            mean = np.array([np.mean(a) for a in acc])
            lo = np.array([np.min(a) for a in acc])
            hi = np.array([np.max(a) for a in acc])
            ax.plot(sp, mean, "o-", color=colors.get(method), label=method, ms=3)
            ax.fill_between(sp, lo, hi, color=colors.get(method), alpha=0.15)
        for name, marker in (("legcnet_ft", "*"), ("legcnet_pt", "P")):
            pts = [r for r in results.get("runs", []) if r.get("name") == name]
            if pts:
                ax.scatter(
                    [r["sparsity"] for r in pts],
                    [r["test_accuracy"] for r in pts],
                    marker=marker,
                    s=60,
                    color="black",
                    zorder=5,
                    label=f"{name} (alpha rule)",
                )
        ax.set_xlabel("sparsity (fraction of analysed weights pruned)")
        ax.set_ylabel("test accuracy")
        ax.set_title("Accuracy vs sparsity (mean, band = min..max over seeds)")
        ax.legend(fontsize=7)
        figs._save(fig, fig_dir / "accuracy_sparsity_curves.png")
        out["curves"] = "figures/accuracy_sparsity_curves.png"
    return out


def _f(x, fmt=".3f") -> str:
    return "-" if x is None else format(x, fmt)


def render_section(results: dict, run_dir=None) -> str:
    """Markdown: "## Null controls" and "## Accuracy-vs-sparsity curves" (with figures when
    `run_dir` is given)."""
    from jaxprune.report import _markdown_table

    figs = {}
    if run_dir is not None:
        try:
            figs = _figures(Path(run_dir), results)
        except Exception as e:  # noqa: BLE001  (a figure never hides the numbers)
            figs = {"error": f"{type(e).__name__}: {e}"}
    settings = results.get("controls_settings") or {}
    out = ["## Null controls", ""]
    recs = results.get("null_controls") or []
    ns = settings.get("nulls")
    if ns is None:
        out.append("_Skipped (`--null none`)._")
    elif not recs:
        out.append("_No null control could run (crossseed needs >= 2 seeds)._")
    else:
        out += [
            (
                "Per layer, the fraction of testable weights the rule calls non-causal, for the real "
                "LE series and for null series through the same Granger kernel and rule: "
                "`shuffle` (each series permuted in time), `surrogate` (IAAFT: same values and "
                "~spectrum), `crossseed` (the same weight index of another seed's net against this "
                f"seed's risk). {ns['draws']} draws (crossseed: one per other seed) on at most "
                f"{ns['max_per_layer']} sampled weights per layer. p = (1 + #draws with null "
                "fraction <= real) / (draws + 1): small p means the real series is more causal "
                "than the null."
            ),
            "",
            "**Verdict:**",
            "",
        ]
        out += [f"- {line}" for line in nulls_mod.verdict(recs)]
        out += [
            "",
            _markdown_table(
                ["seed", "mask", "layer", "control", "real fraction", "null fraction (mean ± sd)", "p", "draws"],
                [
                    [
                        r["seed"],
                        r["mask"],
                        r["layer"],
                        r["control"],
                        _f(r["real_fraction"]),
                        f"{_f(r['null_fraction'])} ± {_f(r['null_fraction_sd'])}",
                        _f(r["p_value"], ".3g"),
                        r["draws"],
                    ]
                    for r in recs
                ],
            ),
        ]
        calib = results.get("null_calibration") or []
        if calib:
            out += [
                "",
                (
                    "Calibration under the shuffle null (FT windows): rejection rate of "
                    f"`{calib[0]['test']}` at alpha {calib[0]['alpha']} per lag, and of the "
                    "min-p-over-lags rule (an exact test rejects alpha at each lag)."
                ),
                "",
            ]
            out.append(
                _markdown_table(
                    ["seed", "lag 1", "max over lags (lag)", "min-p rule", "series"],
                    [
                        [
                            c["seed"],
                            _f(c["lag_rejection"][0]),
                            f"{_f(max(c['lag_rejection']))} ({int(np.argmax(c['lag_rejection'])) + 1})",
                            _f(c["min_p_rejection"]),
                            c["n_series"],
                        ]
                        for c in calib
                    ],
                )
            )
            if "calibration" in figs:
                out += ["", f"![calibration]({figs['calibration']})"]
    out += ["", "## Accuracy-vs-sparsity curves", ""]
    crecs = results.get("curves") or []
    if not crecs:
        out.append("_No curves (pass `--sparsities 0.2,0.5,0.8`)._")
    else:
        out += [
            (
                "Each method prunes the same number of weights per analysed layer at each target "
                "sparsity (magnitude_global: the same total), then retrains from the same initial "
                "weights to the same threshold. causal_ft / causal_pt prune the least causal "
                "weights first (largest min p, ties by smallest statistic). The alpha rule's FT / PT "
                "masks are single operating points on these curves (the table above)."
            ),
            "",
        ]
        table = curves_mod.auc_table(crecs)
        methods = [m for m in curves_mod.CURVE_METHODS if m in table]
        sp = sorted({r["sparsity"] for r in crecs})
        rows = []
        for m in methods:
            row = [m]
            for s in sp:
                acc = [r["test_accuracy"] for r in crecs if r["method"] == m and r["sparsity"] == s]
                reached = sum(bool(r["reached_threshold"]) for r in crecs if r["method"] == m and r["sparsity"] == s)
                row.append(f"{np.mean(acc):.4f} ± {np.std(acc):.4f} ({reached}/{len(acc)})")
            aucs = list(table[m].values())
            row.append(f"{np.mean(aucs):.4f} ± {np.std(aucs):.4f}")
            rows.append(row)
        out.append(_markdown_table(["method"] + [f"s={s:g}: test acc (reached)" for s in sp] + ["AUC"], rows))
        comps = results.get("curve_comparisons") or []
        if comps:
            out += ["", "Paired tests of the AUC over seeds:", ""]
            out += [f"- {c['verdict']}" for c in comps]
        if "curves" in figs:
            out += ["", f"![accuracy vs sparsity]({figs['curves']})"]
    if "error" in figs:
        out += ["", f"_Figures failed: {figs['error']}._"]
    return "\n".join(out)
