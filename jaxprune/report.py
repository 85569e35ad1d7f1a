"""results.json -> report.md: the run's tables as mean +- std over seeds."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

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


def render(results: dict) -> str:
    """The markdown report of a results dict (see `jaxprune.pipeline.run`)."""
    cfg = results["config"]
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
    out.append(_markdown_table(
        header,
        [[r["method"], r["seeds"]] + [r[c[0]] for c in COLUMNS] + [r["reached"], r["epochs_to_threshold"]]
         for r in rows],
    ))
    out += ["", "## Masks per seed", ""]
    mask_rows = []
    for s in results["per_seed"]:
        for m in ("legcnet_ft", "legcnet_pt"):
            sm = s["summaries"][m]
            mask_rows.append([
                s["seed"], m, sm["n_windows"], sm["maxlag_used"],
                " / ".join(str(v) for v in sm["pruned"]), sm["pruned_total"],
                f"{sm['sparsity']:.4f}", sum(sm["untestable"]), sm["le_undefined"],
                sm["pruned_if_keep"], sm["pruned_if_prune"],
            ])
    out.append(_markdown_table(
        ["seed", "mask", "windows", "maxlag", "pruned per layer", "pruned", "sparsity",
         "untestable", "LE undefined", "pruned (keep untestable)", "pruned (prune untestable)"],
        mask_rows,
    ))
    out += ["", "## Multiple-testing corrections (pruned weights; keep / prune untestable)", ""]
    corr_rows = []
    for s in results["per_seed"]:
        for m in ("legcnet_ft", "legcnet_pt"):
            table = s["summaries"][m]["corrections"]
            corr_rows.append([s["seed"], m] + [
                f"{v['pruned_if_keep']} / {v['pruned_if_prune']}" for v in table.values()])
    names = list(results["per_seed"][0]["summaries"]["legcnet_ft"]["corrections"])
    out.append(_markdown_table(["seed", "mask"] + names, corr_rows))
    out += ["", "## Wall time per stage (seconds)", ""]
    time_rows = [[s["seed"]] + [f"{s['timings'].get(k, float('nan')):.1f}" for k in
                                ("train_and_le", "le_estimate", "granger_and_masks", "retrain")]
                 for s in results["per_seed"]]
    out.append(_markdown_table(
        ["seed", "dense train + LE", "of which LE (estimate)", "Granger + masks", "retraining (all nets)"],
        time_rows,
    ))
    out += ["", "The LE estimate is the dense stage minus the per-epoch time of the dense "
            "retraining run times the epochs; the kernel runs inside the jitted epoch.", ""]
    dense_rows = [[s["seed"], f"{s['dense_full_run']['train_accuracy']:.4f}",
                   f"{s['dense_full_run']['test_accuracy']:.4f}", s["dense_full_run"]["epochs"],
                   s["dense_full_run"]["steps"], s["dense_full_run"]["n_windows"]]
                  for s in results["per_seed"]]
    out += ["## Dense run behind the masks (full length)", ""]
    out.append(_markdown_table(["seed", "train acc", "test acc", "epochs", "steps", "windows"], dense_rows))
    return "\n".join(out) + "\n"


def write_report(results: dict, path) -> Path:
    path = Path(path)
    path.write_text(render(results))
    return path


def report_from_dir(run_dir) -> Path:
    """Re-render ``report.md`` from ``run_dir/results.json``."""
    run_dir = Path(run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    return write_report(results, run_dir / "report.md")
