"""LEGCNet on the original's from-scratch tabular nets, every data set available offline.

Data sets: scikit-learn's bundled iris, breast_cancer, wine and digits (`pipeline.preset`:
`TABULAR_PRESETS`, per-example SGD, sigmoid units, windows of 160-200 steps with 10 % overlap,
the original's training-accuracy thresholds), plus any CSV given with ``--csv PATH`` (label in
the first column unless ``--csv-label-column``; a 16-unit sigmoid layer). Of the original's
other sets (diabetes, titanic, sonar, vowel, banknote, liver) no installed package ships a copy:
scikit-learn's ``load_diabetes`` is a regression set (442 patients, a continuous disease
progression score), not the original's Pima diabetes classification; TensorFlow Datasets has a
``titanic`` builder but it downloads. Point ``--csv`` at a local copy to include one.

Per data set: ``OUT/<name>/report.md`` (paired tests, IoU, spectra, figures); across data sets:
``OUT/report.md``.

Runtime on this project's 2-core CPU (jax 0.10.2): the full config (5 seeds, PT baselines, null
controls, curves at 0.1..0.9; the committed example ``docs/example_tabular``) 10.5 min (digits
8 min of it). A single data set: ``--datasets iris``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from experiments import common
from jaxprune import pipeline, report, rundir
from jaxprune.data import load_dataset

CONFIG = {
    "datasets": ("iris", "breast_cancer", "wine", "digits"),
    "seeds": 5,
    "quick_seeds": 3,
    # PT gets its own random / magnitude baselines also in quick mode (preset's quick drops them)
    "baselines_for": ("legcnet_ft", "legcnet_pt"),
    # None: the preset's (parity, the TISEAN-exact float64 kernel)
    "le_mode": None,
    # extra LegcnetConfig / TrainConfig fields on top of the preset (tests shrink runs here)
    "cfg_overrides": {},
    "train_overrides": {},
    # accuracy-vs-sparsity curves and null-control draws (tests shrink these too)
    "sparsities": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "quick_sparsities": (0.2, 0.5, 0.8),
    "null_draws": 19,
}


def config_for(name: str, quick: bool) -> pipeline.LegcnetConfig:
    cfg = pipeline.preset("csv" if name.startswith("csv:") else name, quick=quick)
    cfg = cfg.replace(baselines_for=tuple(CONFIG["baselines_for"]))
    if CONFIG["le_mode"]:
        cfg = cfg.replace(le_mode=CONFIG["le_mode"])
    return common.apply_overrides(cfg, CONFIG)


def summary_report(summaries: list[dict], notes: list[str]) -> str:
    heads = [common.headline(s) for s in summaries]
    out = [
        "# LEGCNet on the tabular data sets",
        "",
        "The original's from-scratch nets (`jaxprune.pipeline.preset`); per data set the full "
        "report is in its folder. Test accuracy, mean over seeds; sparsity of the FT / PT "
        "masks; paired t-test p-values (test accuracy, FT / PT vs the baselines pruned to "
        "the same per-layer counts); IoU of the FT and magnitude pruned sets (chance and the "
        "FT-pruned weights over all seeds in brackets).",
        "",
    ]
    header = [
        "data set",
        "seeds",
        "dense",
        "FT",
        "PT",
        "random (FT)",
        "magnitude (FT)",
        "random (PT)",
        "magnitude (PT)",
        "sparsity FT / PT",
        "FT-rand pp (p)",
        "FT-mag pp (p)",
        "PT-rand pp (p)",
        "PT-mag pp (p)",
        "IoU FT-mag",
        "wall s",
    ]
    rows = []

    def cmp(h, key):
        c = h["comparisons"].get(key)
        if c is None:
            return "n/a"
        p = c["p_t"]
        return f"{100 * c['mean_diff']:+.1f} ({'n/a' if p != p else f'{p:.2g}'})"

    for h, s in zip(heads, summaries):
        a = h["acc"]
        fm = h["stability"].get("legcnet_ft|magnitude")
        rows.append(
            [
                f"[{h['dataset']}]({Path(s['out']).name}/report.md)",
                h["seeds"],
                *(
                    f"{a[k]:.3f}" if k in a else "n/a"
                    for k in ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt")
                ),
                f"{h['sparsity'].get('legcnet_ft', float('nan')):.3f} / "
                f"{h['sparsity'].get('legcnet_pt', float('nan')):.3f}",
                cmp(h, "legcnet_ft|random"),
                cmp(h, "legcnet_ft|magnitude"),
                cmp(h, "legcnet_pt|random_pt"),
                cmp(h, "legcnet_pt|magnitude_pt"),
                "n/a" if fm is None else f"{fm['iou']:.2f} ({fm['chance']:.2f}; {fm.get('pruned_a', '?')} pruned)",
                f"{h['seconds']:.0f}",
            ]
        )
    from jaxprune.report import _markdown_table

    out.append(_markdown_table(header, rows))
    out += ["", "## Verdicts", ""]
    for h in heads:
        out.append(f"**{h['dataset']}**")
        out.append("")
        for key, c in h["comparisons"].items():
            if not key.endswith("dense"):
                out.append(f"* {c['verdict']}")
        out += [f"* Null control: {v}" for v in h.get("null_verdicts", [])]
        out += [f"* {v}" for v in h.get("curve_verdicts", [])]
        out.append("")
    if notes:
        out += ["## Notes", ""] + [f"* {n}" for n in notes]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = common.base_parser(__doc__, "runs/tabular", CONFIG["seeds"])
    p.add_argument("--datasets", default=",".join(CONFIG["datasets"]), help="comma-separated built-in sets")
    p.add_argument(
        "--csv", action="append", default=[], metavar="PATH", help="a classification CSV to add (repeatable)"
    )
    p.add_argument("--csv-label-column", default="0", help="label column of the CSV files")
    p.add_argument(
        "--report-only", action="store_true", help="re-render every report from an existing OUT (needs its .npz files)"
    )
    args = p.parse_args(argv)
    nulls, sparsities = common.controls_from_args(args, CONFIG)
    n_seeds = args.seeds or (CONFIG["quick_seeds"] if args.quick else CONFIG["seeds"])
    seeds = list(range(n_seeds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [d for d in args.datasets.split(",") if d] + [f"csv:{c}" for c in args.csv]
    label_col = int(args.csv_label_column) if args.csv_label_column.lstrip("-").isdigit() else args.csv_label_column
    notes = [
        "Not shipped by any installed package, so not run: diabetes (scikit-learn's "
        "load_diabetes is regression), titanic (TFDS builder needs a download), sonar, "
        "vowel, banknote, liver. Add a local copy with --csv PATH."
    ]
    summaries = []
    t0 = time.perf_counter()
    if args.report_only:
        old = {h["dataset"]: h for h in json.loads((out / "summary.json").read_text())}
        for name in names:
            sub = out / (Path(name[4:]).stem if name.startswith("csv:") else name)
            results = rundir.load_results(sub)
            extras = report.analyse_run(sub, results)
            (sub / "report.md").write_text(report.render(results, sub, extras=extras))
            summaries.append(
                {
                    "name": name,
                    "results": results,
                    "extras": extras,
                    "out": str(sub),
                    "seconds": old.get(results["dataset"], {}).get("seconds", 0.0),
                }
            )
        notes += [n for n in json.loads((out / "summary.json").read_text())[0].get("notes", []) if n not in notes]
        names = []
    for name in names:

        def ds(seed, name=name):
            if name.startswith("csv:"):
                return load_dataset(name, seed=seed, label_column=label_col)
            return load_dataset(name, seed=seed)

        cfg = config_for(name, args.quick)
        sub = out / (Path(name[4:]).stem if name.startswith("csv:") else name)
        summaries.append(
            common.run_study(
                name,
                ds,
                cfg,
                seeds,
                sub,
                artifacts=not args.no_artifacts,
                resume=args.resume,
                overwrite=not args.resume,
                nulls=nulls,
                sparsities=sparsities,
            )
        )
    if names:
        notes.append(
            f"Wall time {time.perf_counter() - t0:.0f} s for {len(names)} data sets x "
            f"{n_seeds} seeds ({'quick' if args.quick else 'full'} config) on "
            f"{summaries[0]['results']['jax']['backend'] if summaries else '?'}."
        )
    (out / "report.md").write_text(summary_report(summaries, notes))
    heads = [common.headline(s) for s in summaries]
    if heads:
        heads[0]["notes"] = notes
    common.write_json(out / "summary.json", heads)
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
