"""results.json (+ the run directory) -> report.md.

The tables of `jaxprune.pipeline.run` as mean +- std over seeds and, when the run's per-seed
arrays are at hand, the research result: paired tests over seeds (do LEGCNet-FT / -PT beat
random and magnitude pruning at equal sparsity?), mask stability (IoU of the pruned sets), the
weight-spectrum power-law exponents and the figures of `jaxprune.figures` (PNG files in
``DIR/figures``, linked relatively). Anything whose files are missing is left out with a note.

The run directory is read once, by `jaxprune.rundir.load_run_data`, into a `RunData`;
`render` and `analyse` work on that object. `analyse_run(run_dir)` and
`write_report(results, path)` load it for you.

``python -m jaxprune.report DIR`` re-renders ``DIR/report.md``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from jaxprune import analysis as an
from jaxprune import rundir

METHOD_ORDER = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude")
COLUMNS = (
    ("test_accuracy", "test acc", "{:.4f}"),
    ("macro_f1", "macro F1", "{:.4f}"),
    ("macro_precision", "macro P", "{:.4f}"),
    ("macro_recall", "macro R", "{:.4f}"),
    ("sparsity", "sparsity", "{:.4f}"),
    ("flops", "FLOPs", "{:.0f}"),
    ("epochs", "epochs", "{:.1f}"),
)


def _mean_std(values, fmt: str) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    arr = np.asarray(vals, dtype=float)
    std = arr.std(ddof=1) if arr.size > 1 else 0.0
    return f"{fmt.format(arr.mean())} ± {fmt.format(std)}"


def _row_key(run: dict) -> str:
    name = run["method"]
    if run.get("matched_to") == "legcnet_pt":
        name += " (PT sparsity)"
    elif run.get("matched_to") == "legcnet_ft":
        name += " (FT sparsity)"
    return name


def summary_table(runs: list[dict]) -> list[dict]:
    """One row per method (and matched sparsity): mean +- std of each metric over seeds."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(_row_key(run), []).append(run)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows = []
    for key in sorted(groups, key=lambda k: (order.get(k.split(" ")[0], 99), k)):
        rs = groups[key]
        row = {"method": key, "seeds": len(rs)}
        for col, _, fmt in COLUMNS:
            row[col] = _mean_std([r.get(col) for r in rs], fmt)
        reached = [r for r in rs if r.get("reached_threshold")]
        row["reached"] = f"{len(reached)}/{len(rs)}"
        row["epochs_to_threshold"] = _mean_std([r.get("epochs_to_threshold") for r in reached], "{:.1f}")
        rows.append(row)
    return rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render(run: rundir.RunData | dict, run_dir=None, extras: dict | None = None) -> str:
    """The markdown report of a run.

    Args:
      run: a `jaxprune.rundir.RunData` (results and per-seed arrays, loaded once), or a results
        dict (see `jaxprune.pipeline.run`) alone.
      run_dir: with a results dict, the run directory to load the per-seed arrays from (None:
        the tables of results.json only); with a `RunData`, defaults to its ``run_dir``.
      extras: the analyses (`analyse` / `analyse_run`) when already computed; None = compute
        them (and write the figures and ``analyses.json`` into the run directory) when per-seed
        data are at hand.
    """
    if isinstance(run, rundir.RunData):
        data, results = run, run.results
        run_dir = data.run_dir if run_dir is None else run_dir
    else:
        results = run
        data = None
        if extras is None and run_dir is not None:
            data = rundir.load_run_data(run_dir, results)
    from jaxprune.config import flat_config_dict

    cfg = flat_config_dict(results["config"])  # grouped (this version) or flat (earlier runs)
    runs = results["runs"]
    out = [
        f"# LEGCNet on {results['dataset']}",
        "",
        f"Seeds: {results['seeds']}. Net: hidden {cfg['train']['hidden']}, "
        f"{cfg['train']['activation']}, loss {cfg['train']['loss']}, {cfg['train']['optimizer']} "
        f"lr {cfg['train']['learning_rate']}, batch {cfg['train']['batch_size']}, "
        f"{cfg['train']['epochs']} epochs. Windows {cfg['train']['window']} / stride "
        f"{cfg['train']['stride']}; LE mode {cfg['le_mode']}; Granger {cfg['test']} maxlag "
        f"{cfg['maxlag']}, alpha {cfg['alpha']}, correction {cfg['correction']}, untestable "
        f"weights: {cfg['untestable']}; PT on the first {cfg['pt_windows']} windows. Retraining "
        f"from the same init to {cfg['target_accuracy']:.0%} training accuracy or "
        f"{cfg['max_retrain_epochs'] or cfg['train']['epochs']} epochs.",
        f"Backend: {results['jax']['backend']} ({', '.join(results['jax']['devices'])}), "
        f"jax {results['jax']['version']}.",
        "",
        "## Test metrics (mean ± std over seeds)",
        "",
    ]
    rows = summary_table(runs)
    header = ["method", "seeds"] + [c[1] for c in COLUMNS] + ["reached", "epochs to threshold"]
    out.append(
        _markdown_table(
            header,
            [
                [r["method"], r["seeds"]] + [r[c[0]] for c in COLUMNS] + [r["reached"], r["epochs_to_threshold"]]
                for r in rows
            ],
        )
    )
    out += ["", "## Masks per seed", ""]
    mask_rows = []
    for s in results["per_seed"]:
        for m in ("legcnet_ft", "legcnet_pt"):
            sm = s["summaries"][m]
            mask_rows.append(
                [
                    s["seed"],
                    m,
                    sm["n_windows"],
                    sm["maxlag_used"],
                    " / ".join(str(v) for v in sm["pruned"]),
                    sm["pruned_total"],
                    f"{sm['sparsity']:.4f}",
                    sum(sm["untestable"]),
                    sm["le_undefined"],
                    sm["pruned_if_keep"],
                    sm["pruned_if_prune"],
                ]
            )
    out.append(
        _markdown_table(
            [
                "seed",
                "mask",
                "windows",
                "maxlag",
                "pruned per layer",
                "pruned",
                "sparsity",
                "untestable",
                "LE undefined",
                "pruned (keep untestable)",
                "pruned (prune untestable)",
            ],
            mask_rows,
        )
    )
    out += ["", "## Multiple-testing corrections (pruned weights; keep / prune untestable)", ""]
    corr_rows = []
    for s in results["per_seed"]:
        for m in ("legcnet_ft", "legcnet_pt"):
            table = s["summaries"][m]["corrections"]
            corr_rows.append(
                [s["seed"], m] + [f"{v['pruned_if_keep']} / {v['pruned_if_prune']}" for v in table.values()]
            )
    names = list(results["per_seed"][0]["summaries"]["legcnet_ft"]["corrections"])
    out.append(_markdown_table(["seed", "mask"] + names, corr_rows))
    out += ["", "## Wall time per stage (seconds)", ""]
    time_rows = [
        [s["seed"]]
        + [
            f"{s['timings'].get(k, float('nan')):.1f}"
            for k in ("train_and_le", "le_estimate", "granger_and_masks", "retrain")
        ]
        for s in results["per_seed"]
    ]
    out.append(
        _markdown_table(
            ["seed", "dense train + LE", "of which LE (estimate)", "Granger + masks", "retraining (all nets)"],
            time_rows,
        )
    )
    out += [
        "",
        "LE: the seed's share of the Lyapunov kernel's measured time (the kernel runs on each "
        "window, all seeds' members side by side, right after the epoch that completed it); "
        "the dense stage and the retraining are the seed's shares of their populations.",
        "",
    ]
    dense_rows = [
        [
            s["seed"],
            f"{s['dense_full_run']['train_accuracy']:.4f}",
            f"{s['dense_full_run']['test_accuracy']:.4f}",
            s["dense_full_run"]["epochs"],
            s["dense_full_run"]["steps"],
            s["dense_full_run"]["n_windows"],
        ]
        for s in results["per_seed"]
    ]
    out += ["## Dense run behind the masks (full length)", ""]
    out.append(_markdown_table(["seed", "train acc", "test acc", "epochs", "steps", "windows"], dense_rows))
    if "null_controls" in results or "curves" in results:
        from jaxprune.controls import render_section

        out += ["", render_section(results, run_dir)]
    if run_dir is not None:
        out += ["", deployment_section(run_dir, results)]
    if extras is None and data is not None:
        extras = analyse_run(data)
    if extras is not None:
        out += ["", render_extras(results, extras)]
    return "\n".join(out) + "\n"


def deployment_section(run_dir, results: dict) -> str:
    """The cost of each pruned net as a deployable model (`jaxprune.export`)."""
    intro = (
        "Each net compacted to smaller dense widths (inputs used - hidden - outputs: "
        "units with no kept input or output dropped, cascading; constant units folded "
        "into the next bias). Bytes are the float32 payload of the full-width net, the "
        "compact net and its sparse encoding; latency (median ms per call, on the CPU that "
        "ran `jaxprune export RUN --method NAME`) for the full-width net → the exported "
        "model, n/a until exported. See docs/export.md."
    )
    head = ["## Deployment (compact export)", "", intro, ""]
    try:
        from jaxprune.export import DEPLOYMENT_HEADER, deployment_rows

        rows = deployment_rows(run_dir, results)
    except (OSError, KeyError, ValueError, TypeError) as e:  # never lose the report to a table
        return "\n".join([*head, f"_Not available: {type(e).__name__}: {e}._"])
    if not rows:
        return "\n".join([*head, "_Not available: no masks or dense weights in the run._"])
    return "\n".join(head + [_markdown_table(DEPLOYMENT_HEADER, rows)])


# ------------------------------------------------------------------------------ analyses
ESD_SOURCES = ("init", "dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt")


def _kernels_by_method(data: rundir.RunData) -> tuple[dict, list[str]]:
    """``{name: [per seed [kernel (fan_in, fan_out) per layer]]}`` for the ESD table, and the
    run names whose weights are missing."""
    results = data.results
    sizes = rundir.layer_sizes(results)
    out, missing = {}, []
    for name in ESD_SOURCES:
        per_seed = []
        for s, d in data.seeds.items():
            if name in ("init", "dense"):
                data.check(s, "dense.npz")
                k = d.kernels(sizes, "init" if name == "init" else "params")
            else:
                data.check(s, f"retrained_{name}.npz")
                r = d.retrained.get(name)
                k = None if r is None else r["kernels"]
            if k is not None:
                per_seed.append(k)
        if per_seed:
            out[name] = per_seed
        elif name == "dense" or any(r.get("name") == name for r in results["runs"]):
            missing.append(name)
    return out, missing


def analyse(data: rundir.RunData, *, figures_dir=None) -> dict:
    """Paired tests, mask IoU, ESD alpha and (with `figures_dir`) the figures of a run, from
    its in-memory data; whatever its arrays allow. Each part that fails or lacks its data is
    recorded under ``notes`` instead. Writes nothing but the figures' PNG files."""
    results = data.results
    out: dict = {"notes": {}}
    try:
        out["comparisons"] = an.compare_methods(results["runs"])
        out["comparisons_f1"] = an.compare_methods(results["runs"], metric="macro_f1")
    except Exception as e:  # pragma: no cover - defensive
        out["notes"]["comparisons"] = f"{type(e).__name__}: {e}"
    try:
        for s in data.seeds:
            data.check(s, "analysis.npz")
        masks = data.masks()
        if masks:
            out["stability"] = an.mask_stability(
                masks, rundir.layer_offsets(results), rundir.analysed_per_layer(results)
            )
        else:
            out["notes"]["stability"] = "no seed_K/analysis.npz in the run directory"
    except Exception as e:
        out["notes"]["stability"] = f"{type(e).__name__}: {e}"
    try:
        kernels, missing = _kernels_by_method(data)
        if kernels:
            table = an.esd_table(kernels)
            for rows in table.values():
                for row in rows:
                    row.pop("fits", None)
            out["esd"] = table
        if missing:
            out["notes"]["esd"] = (
                "no saved weights for " + ", ".join(missing) + " (the "
                "pipeline keeps the dense net only; the studies in "
                "experiments/ save the retrained nets)"
            )
    except Exception as e:
        out["notes"]["esd"] = f"{type(e).__name__}: {e}"
    if figures_dir is not None:
        try:
            from jaxprune.figures import render_figures

            out["figures"], errs = render_figures(data, figures_dir)
            if errs:
                out["notes"]["figures"] = "; ".join(f"{k}: {v}" for k, v in errs.items())
        except Exception as e:
            out["notes"]["figures"] = f"{type(e).__name__}: {e}"
    return out


def analyse_run(run_dir, results: dict | None = None, *, figures: bool = True) -> dict:
    """`analyse` a run directory (or a `RunData` loaded from one): the figures go to
    ``run_dir/figures`` and the analyses also to ``run_dir/analyses.json``.

    `run_dir` may be a path (loaded once with `jaxprune.rundir.load_run_data`, using `results`
    when given) or a `RunData`; a `RunData` without a ``run_dir`` is analysed without figures
    or file."""
    data = run_dir if isinstance(run_dir, rundir.RunData) else rundir.load_run_data(run_dir, results)
    where = data.run_dir
    out = analyse(data, figures_dir=where / "figures" if figures and where is not None else None)
    if where is not None:
        try:
            rundir.write_json(where / "analyses.json", out)
        except Exception as e:  # pragma: no cover - read-only directory
            out["notes"]["analyses.json"] = f"{type(e).__name__}: {e}"
    return out


def _pp(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}"


def _p(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def comparison_rows(comparisons: list[dict]) -> list[list[str]]:
    return [
        [
            f"{an.PRETTY[c['a']]} vs {an.PRETTY[c['b']]}"
            + ("" if c["b"] == "dense" else (" (FT sparsity)" if not c["b"].endswith("_pt") else " (PT sparsity)")),
            len(c["seeds"]),
            f"{c['mean_a']:.4f}",
            f"{c['mean_b']:.4f}",
            _pp(c["mean_diff"]),
            f"[{_pp(c['ci_low'])}, {_pp(c['ci_high'])}]",
            "n/a" if math.isnan(c["d_z"]) else f"{c['d_z']:+.2f}",
            _p(c["p_t"]),
            _p(c["p_wilcoxon"]),
            c["seeds_nothing_pruned"],
        ]
        for c in comparisons
    ]


COMPARISON_HEADER = [
    "comparison",
    "seeds",
    "mean A",
    "mean B",
    "A - B (pp)",
    "95% CI (pp)",
    "d_z",
    "p (paired t)",
    "p (Wilcoxon)",
    "seeds with nothing pruned",
]


def render_extras(results: dict, extras: dict) -> str:
    notes = extras.get("notes", {})
    out = [
        "## Does the causal criterion beat random and magnitude pruning?",
        "",
        "Test accuracy, paired over seeds (a seed fixes the split, the initial weights and the "
        "masks; baselines prune the same number of weights in each layer as the mask they "
        "are matched to). Paired t-test, Wilcoxon signed-rank from 6 seeds on, effect size "
        "d_z = mean / sd of the per-seed differences. pp = percentage points.",
        "",
    ]
    comps = extras.get("comparisons") or []
    if comps:
        out.append(_markdown_table(COMPARISON_HEADER, comparison_rows(comps)))
        out += [""] + [f"* {c['verdict']}" for c in comps]
        f1 = extras.get("comparisons_f1") or []
        if f1:
            out += ["", "Macro F1, the same pairs:", ""]
            out += [f"* {c['verdict']}" for c in f1 if c["b"] != "dense"]
        nothing = [c for c in comps if c["seeds_nothing_pruned"]]
        if nothing:
            out += [
                "",
                "In seeds where a causal mask prunes nothing, it and its baselines are "
                "the dense mask, so their difference is 0 by construction.",
            ]
    else:
        out.append(f"_Not available: {notes.get('comparisons', 'no paired runs')}._")

    out += ["", "## Mask stability (IoU of the pruned sets)", ""]
    st = extras.get("stability")
    if st:
        out += [
            "IoU = |A and B| / |A or B| of the pruned weights; *chance* is the IoU two "
            "uniformly random sets of the same per-layer sizes have on average. An IoU well "
            "above chance between the causal and the magnitude mask means the causal "
            "criterion mostly picks small weights.",
            "",
        ]
        rows = []
        for key, v in st["within"].items():
            a, b = key.split("|")
            per = ", ".join(
                f"{s}: {_f3(x['iou'])} ({x['pruned_a']}/{x['pruned_b']})" for s, x in sorted(v["per_seed"].items())
            )
            rows.append([f"{rundir_label(a)} vs {rundir_label(b)}", _f3(v["iou"]), _f3(v["chance"]), per])
        out.append(_markdown_table(["masks (same seed)", "mean IoU", "chance", "per seed: IoU (pruned A / B)"], rows))
        rows = [[rundir_label(k), v["pairs"], _f3(v["iou"]), _f3(v["chance"])] for k, v in st["across"].items()]
        if rows:
            out += [
                "",
                "Across seeds (hidden units are permutation-symmetric between seeds, so "
                "only first-layer input positions keep a fixed meaning):",
                "",
            ]
            out.append(_markdown_table(["mask", "seed pairs", "mean IoU", "chance"], rows))
        fm = st["within"].get("legcnet_ft|magnitude")
        if fm:
            out += ["", "Causal (FT) vs magnitude at the same sparsity: " + iou_verdict(fm)]
    else:
        out.append(f"_Not available: {notes.get('stability', 'no masks')}._")

    out += [
        "",
        "## Weight spectra (ESD power-law alpha per layer)",
        "",
        "WeightWatcher-style: eigenvalues of W^T W / N per layer kernel, power law fitted to "
        "the tail (Clauset-Shalizi-Newman xmin by KS distance). Cells: mean alpha +- std "
        "over seeds [fits / seeds, eigenvalues per layer]. A layer with fewer than 5 "
        "eigenvalues gets no fit; with a few dozen the fit is weak. WeightWatcher reads "
        "2-6 as well trained, > 6 as random-like.",
        "",
    ]
    esd = extras.get("esd")
    if esd:
        n_layers = max(len(v) for v in esd.values())
        rows = []
        for name, layers in esd.items():
            cells = []
            for row in layers:
                a = row["alpha_mean"]
                sd = row["alpha_std"]
                n_seeds = len(results["seeds"])
                cells.append("n/a" if math.isnan(a) else f"{a:.2f}" + ("" if math.isnan(sd) else f" ± {sd:.2f}"))
                cells[-1] += f" [{row['n_fit']}/{n_seeds}, {row['n_eigs']}]"
            rows.append([rundir_label(name)] + cells)
        out.append(_markdown_table(["net"] + [f"layer {i}" for i in range(n_layers)], rows))
    if notes.get("esd"):
        out += ["", f"_{notes['esd']}._"]
    out += [
        "",
        "Feature attributions (the paper's SHAP appendix) are not computed: SHAP's "
        "model-agnostic KernelExplainer would need the `shap` package (no second deep-learning "
        "framework, but numba, pandas and more), which jaxprune does not depend on.",
    ]

    figs = extras.get("figures") or {}
    out += ["", "## Figures", ""]
    captions = {
        "accuracy_sparsity": "Test accuracy vs sparsity",
        "accuracy_epochs": "Training accuracy per epoch (retraining runs; dotted: the dense run behind the masks)",
        "pruned_per_layer": "Pruned fraction per layer",
        "pmin_hist": "Distribution of the Granger min p-values",
        "risk": "Risk series",
        "le_heatmap": "Lyapunov exponents per layer over windows",
    }
    for key, cap in captions.items():
        if key in figs:
            out += [f"![{cap}]({figs[key]})", f"*{cap}.*", ""]
    if notes.get("figures"):
        out += [f"_Figures left out: {notes['figures']}._"]
    return "\n".join(out)


def _f3(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


MIN_PRUNED_FOR_IOU = 10


def iou_verdict(fm: dict) -> str:
    """One sentence on the causal-vs-magnitude IoU (``stability["within"]`` entry)."""
    n = fm.get("pruned_a", 0)
    iou, chance = fm["iou"], fm["chance"]
    if n < MIN_PRUNED_FOR_IOU or math.isnan(iou):
        return (
            f"IoU {_f3(iou)} against {_f3(chance)} by chance, but the causal masks pruned "
            f"only {n} weights over all seeds: too few to tell whether the causal criterion "
            "is more than small magnitude."
        )
    ratio = iou / chance if chance > 0 else math.inf
    head = f"IoU {iou:.3f} against {chance:.3f} by chance ({ratio:.1f}x, {n} pruned weights). "
    if ratio >= 2:
        return head + (
            "The causal mask overlaps small-magnitude pruning far more than chance: "
            "much of it is a small-weight criterion."
        )
    if ratio < 1.5:
        return head + "The causal mask is not small-magnitude pruning in disguise."
    return head + "Some overlap with small-magnitude pruning beyond chance."


def rundir_label(name: str) -> str:
    return {
        "init": "initial weights",
        "dense": "dense (trained)",
        "legcnet_ft": "LEGCNet-FT",
        "legcnet_pt": "LEGCNet-PT",
        "random": "random (FT sparsity)",
        "magnitude": "magnitude (FT sparsity)",
        "random_pt": "random (PT sparsity)",
        "magnitude_pt": "magnitude (PT sparsity)",
    }.get(name, name)


def write_report(results: dict | rundir.RunData, path, *, extras: bool = True) -> Path:
    """Write ``report.md`` to `path`; the analyses and figures come from the run directory
    next to it (``path.parent``), loaded once, or from `results` when it is a `RunData`, and
    are left out, with a note, where its files are missing."""
    path = Path(path)
    run_dir = path.parent if extras else None
    plain = results.results if isinstance(results, rundir.RunData) else results
    try:
        text = render(results if extras else plain, run_dir)
    except Exception as e:  # never lose the basic tables to an analysis bug
        text = render(plain) + f"\n_Analyses failed: {type(e).__name__}: {e}._\n"
    path.write_text(text)
    return path


def report_from_dir(run_dir) -> Path:
    """Re-render ``report.md`` from ``run_dir/results.json``."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    return write_report(results, run_dir / "report.md")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m jaxprune.report RUN_DIR   (re-renders RUN_DIR/report.md)")
        return 2
    print(report_from_dir(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
