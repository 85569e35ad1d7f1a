"""Shared plumbing of the studies: run the pipeline, render the report with the analyses,
prune artifacts."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from jaxprune import pipeline, report, rundir


def prune_artifacts(run_dir) -> None:
    """Delete checkpoints and ``.npz`` files, keeping report.md, figures/, *.json."""
    run_dir = Path(run_dir)
    for p in sorted(run_dir.rglob("ckpt_*"), reverse=True):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    for p in run_dir.rglob("*.npz"):
        p.unlink()


def run_study(
    name: str,
    dataset_fn,
    cfg: pipeline.LegcnetConfig,
    seeds,
    out_dir,
    *,
    artifacts: bool = True,
    resume: bool = False,
    log=print,
    nulls="default",
    sparsities=(),
    **run_kwargs,
) -> dict:
    """pipeline.run (which also saves the retrained nets) -> report with analyses and figures.
    nulls / sparsities: the null controls and curve targets (`pipeline.run`).
    Returns a summary with the results, the analyses and the wall time."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    results = pipeline.run(
        dataset_fn,
        cfg,
        seeds,
        out_dir,
        resume=resume,
        checkpoint_every_s=1e9,
        nulls=nulls,
        sparsities=sparsities,
        **run_kwargs,
    )
    t_pipe = time.perf_counter() - t0
    run = rundir.load_run_data(out_dir, results)  # read once for the analyses and the report
    extras = report.analyse_run(run)
    (out_dir / "report.md").write_text(report.render(run, extras=extras))
    seconds = time.perf_counter() - t0
    log(f"[{name}] {len(seeds)} seeds in {seconds:.0f} s (pipeline {t_pipe:.0f} s) -> {out_dir / 'report.md'}")
    if not artifacts:
        prune_artifacts(out_dir)
    return {
        "name": name,
        "results": results,
        "extras": extras,
        "seconds": seconds,
        "pipeline_seconds": t_pipe,
        "out": str(out_dir),
    }


def base_parser(doc: str, default_out: str, default_seeds: int) -> argparse.ArgumentParser:
    from jaxprune import compile_cache

    compile_cache.enable()  # every experiment script builds its parser first
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=default_out, help="output directory")
    p.add_argument(
        "--seeds", type=int, default=None, help=f"number of seeds 0..K-1 (default {default_seeds}, quick: CONFIG)"
    )
    p.add_argument("--quick", action="store_true", help="the short CPU configuration")
    p.add_argument(
        "--no-artifacts",
        action="store_true",
        help="delete checkpoints and .npz files afterwards (keep reports, figures, json)",
    )
    p.add_argument("--resume", action="store_true", help="resume a killed run")
    p.add_argument(
        "--null", default=None, help="null controls: comma list of shuffle,surrogate,crossseed, or none (default: all)"
    )
    p.add_argument("--null-draws", type=int, default=None, help="draws per null (default 19)")
    p.add_argument(
        "--sparsities",
        default=None,
        help="accuracy-vs-sparsity targets, e.g. 0.2,0.5,0.8, or none "
        "(default: CONFIG's sparsities / quick_sparsities)",
    )
    return p


def controls_from_args(args, config: dict):
    """(nulls, sparsities) for `run_study` from the flags and the study's CONFIG
    (``sparsities`` / ``quick_sparsities``, ``null_draws``). Bad values: SystemExit(2)."""
    from jaxprune.curves import parse_sparsities
    from jaxprune.nulls import QUICK_MAX_PER_LAYER, NullConfig, parse_controls

    try:
        controls = parse_controls(args.null) if args.null is not None else NullConfig().controls
        draws = args.null_draws if args.null_draws is not None else config.get("null_draws", 19)
        # quick studies sample fewer weights per layer for the nulls, as `jaxprune run --quick`
        per_layer = QUICK_MAX_PER_LAYER if args.quick else NullConfig().max_per_layer
        nulls = NullConfig(controls=controls, draws=draws, max_per_layer=per_layer) if controls else None
        if args.sparsities is not None:
            sparsities = parse_sparsities(args.sparsities)
        else:
            sparsities = tuple(config.get("quick_sparsities" if args.quick else "sparsities", ()))
    except ValueError as e:
        print(f"error: {e}")
        raise SystemExit(2) from None
    return nulls, sparsities


def headline(summary: dict) -> dict:
    """Key numbers of one study for cross-data-set tables."""
    res, ex = summary["results"], summary["extras"]
    by = {}
    for r in res["runs"]:
        by.setdefault(r["name"], []).append(r)
    mean = {k: float(np.mean([r["test_accuracy"] for r in v])) for k, v in by.items()}
    sparsity = {k: float(np.mean([r["sparsity"] for r in v])) for k, v in by.items()}
    comps = {f"{c['a']}|{c['b']}": c for c in ex.get("comparisons", [])}
    st = ex.get("stability", {}).get("within", {})
    from jaxprune.nulls import verdict

    return {
        "dataset": res["dataset"],
        "seeds": len(res["seeds"]),
        "acc": mean,
        "sparsity": sparsity,
        "comparisons": comps,
        "stability": st,
        "seconds": summary["seconds"],
        "null_verdicts": verdict(res.get("null_controls") or []),
        "curve_verdicts": [f"AUC: {c['verdict']}" for c in res.get("curve_comparisons") or []],
    }


def write_json(path, obj) -> None:
    from jaxprune.rundir import (
        write_json as strict_write,  # NaN -> null: always valid JSON
    )

    strict_write(path, obj)


def apply_overrides(cfg: pipeline.LegcnetConfig, config: dict) -> pipeline.LegcnetConfig:
    """``config["train_overrides"]`` / ``config["cfg_overrides"]`` applied to a preset."""
    if config.get("train_overrides"):
        cfg = cfg.replace(train=cfg.train.replace(**config["train_overrides"]))
    if config.get("cfg_overrides"):
        cfg = cfg.replace(**config["cfg_overrides"])
    return cfg
