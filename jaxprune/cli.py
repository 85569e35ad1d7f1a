"""The ``jaxprune`` command: ``jaxprune train``, ``jaxprune datasets`` (and the analysis commands).

Every command is a thin layer over the library: parse flags into a config, call one function,
write JSON next to the checkpoints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from jaxprune import __version__


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="mnist5k", help="data set name (see `jaxprune datasets`) or csv:PATH; default mnist5k"
    )
    p.add_argument("--data-dir", default=None, help="TFDS data dir for --dataset mnist")
    p.add_argument(
        "--download", action="store_true", help="allow downloading a data set that is not on disk (needs internet)"
    )
    p.add_argument("--csv-delimiter", default=None, help="csv: data sets: field separator, one character (default ,)")
    p.add_argument(
        "--csv-label-column",
        default=None,
        help="csv: data sets: label column index (0 first, -1 last) or header name (default 0)",
    )
    p.add_argument(
        "--csv-header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="csv: data sets: the first row is (not) a header (default: detected)",
    )


def _csv_options(args) -> dict:
    """The load_csv options given on the command line; an error for a non-csv data set."""
    opts = {}
    if args.csv_delimiter is not None:
        opts["delimiter"] = args.csv_delimiter.replace("\\t", "\t")
    if args.csv_label_column is not None:
        col = args.csv_label_column
        opts["label_column"] = int(col) if col.lstrip("-").isdigit() else col
    if args.csv_header is not None:
        opts["header"] = args.csv_header
    if opts and not args.dataset.startswith("csv:"):
        raise ValueError(f"--csv-* options apply to csv:PATH data sets, not {args.dataset!r}")
    return opts


def _load(args, seed: int):
    from jaxprune.data import load_dataset

    return load_dataset(args.dataset, seed=seed, data_dir=args.data_dir, download=args.download, **_csv_options(args))


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from jaxprune.train import CONFIGS

    p.add_argument(
        "--config",
        default="original_mnist",
        choices=sorted(CONFIGS),
        help="named base config (default: the original MNIST setup)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's)")
    p.add_argument("--seed", type=int, default=0, help="fixes split, init and batch order")
    p.add_argument("--hidden", type=_int_tuple, default=None, help="hidden widths, e.g. 50,30")
    p.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default=None)
    p.add_argument("--loss", choices=("mse", "cross_entropy"), default=None)
    p.add_argument("--optimizer", default=None, help="any optax optimizer name (sgd, adam, ...)")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--window", type=int, default=None, help="window length in steps")
    p.add_argument("--stride", type=int, default=None, help="window stride in steps")
    p.add_argument(
        "--risk", choices=("train", "batch"), default=None, help="accuracy behind the risk series (default train split)"
    )


def _config_from_args(args):
    from jaxprune.train import CONFIGS

    changes = {
        "epochs": args.epochs,
        "seed": args.seed,
        "hidden": args.hidden,
        "activation": args.activation,
        "loss": args.loss,
        "optimizer": args.optimizer,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "window": args.window,
        "stride": args.stride,
        "risk": args.risk,
    }
    return CONFIGS[args.config].replace(**{k: v for k, v in changes.items() if v is not None})


def _cmd_datasets(args) -> int:
    from jaxprune.data import list_datasets

    for info in list_datasets():
        flag = " (download)" if info.needs_download else ""
        print(f"{info.name:15s}{flag:11s} {info.description}")
    return 0


def _enable_x64_for(le_mode: str) -> None:
    """The CLI's one global x64 switch (`jaxprune train --le-mode parity`: the LE of each
    completed window is float64); the library scopes its own (`jaxprune.pipeline.x64_scope`)."""
    if le_mode == "parity":  # TISEAN parity is float64
        import jax

        jax.config.update("jax_enable_x64", True)


# What `jaxprune train` writes; --overwrite removes these.
TRAIN_OUTPUTS = (
    "run.json",
    "metrics.json",
    "windows.npz",
    "params.npz",
    "trajectory.npy",
    "checkpoints",
    "analysis.npz",
    "analysis.json",
)


def _cmd_train(args) -> int:
    from jaxprune import rundir
    from jaxprune.distributed import process_out_dir
    from jaxprune.train import Trainer, save_metrics, save_params

    config = _config_from_args(args)
    out = rundir.check_writable(process_out_dir(args.out))  # process i > 0: OUT.process<i>
    data = _load(args, config.seed)
    # epochs is left out: `--resume --epochs N` extends a run to what an uninterrupted N-epoch
    # run gives; every other setting must match the checkpoints'.
    fp_config = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    fp_config["le_mode"] = args.le_mode
    fingerprint = rundir.make_fingerprint(fp_config, [config.seed], data, kind="train")
    print(
        rundir.check_run_dir(
            out, fingerprint, resume=args.resume, overwrite=args.overwrite, names=TRAIN_OUTPUTS, pattern=None
        ),
        flush=True,
    )
    print(f"{data!r}\nconfig: {config}", flush=True)
    window_fn = None
    if args.le_mode != "none":
        from jaxprune.pipeline import LegcnetConfig, le_window_fn

        _enable_x64_for(args.le_mode)
        window_fn = le_window_fn(LegcnetConfig(train=config, le_mode=args.le_mode), np.arange(0))
    trainer = Trainer(
        config,
        data.x_train,
        data.y_train,
        n_classes=data.n_classes,
        x_test=data.x_test,
        y_test=data.y_test,
        window_fn=window_fn,
        keep_trajectory=out / "trajectory.npy" if args.keep_trajectory else None,
        checkpoint_dir=out / "checkpoints",
    )
    t0 = time.perf_counter()
    result = trainer.fit(resume=args.resume, progress=not args.no_progress)
    metrics = {"dataset": data.name, **result.metrics(), "wall_seconds": time.perf_counter() - t0}
    save_metrics(out / "metrics.json", metrics)
    windows = dict(end_steps=result.window_end_steps, risk=result.risk)
    if window_fn is not None and result.window_outputs is not None:
        windows.update(le=result.window_outputs["le"], le_status=result.window_outputs["status"])
    np.savez(out / "windows.npz", **windows)
    save_params(out / "params.npz", result.params, result.init_params)
    print(
        f"train accuracy {result.train_accuracy:.4f}  test accuracy {result.test_accuracy:.4f}  "
        f"epochs {result.epochs}  steps {result.steps}  weights {result.n_weights}  "
        f"windows {len(result.window_end_steps)}\nwrote {out / 'metrics.json'}"
    )
    return 0


def _add_analysis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--le-mode",
        dest="analysis_le_mode",
        choices=("parity", "fast"),
        default=None,
        help="Lyapunov precision: parity (float64, TISEAN-exact) or fast (float32)",
    )
    p.add_argument("--maxlag", type=int, default=None, help="Granger maxlag (default 14)")
    p.add_argument("--test", default=None, choices=("ssr_chi2test", "ssr_ftest", "lrtest", "params_ftest"))
    p.add_argument("--alpha", type=float, default=None, help="significance level (0.05)")
    p.add_argument(
        "--untestable",
        choices=("keep", "prune"),
        default=None,
        help="weights whose test is impossible (e.g. never moved): keep (original) or prune",
    )
    p.add_argument(
        "--correction", default=None, help="none, bonferroni, holm (over lags), bh (over weights), or e.g. holm+bh"
    )
    p.add_argument(
        "--layers",
        type=_int_tuple,
        default=None,
        help="analyse only these layers, e.g. -2,-1 (the original's last two)",
    )
    p.add_argument("--pt-windows", type=int, default=None, help="LEGCNet-PT windows (25)")
    p.add_argument(
        "--stationarity",
        action="store_true",
        help="difference series whose ADF p > 0.05 before the test (original notebook)",
    )
    p.add_argument(
        "--round-pvalues",
        type=int,
        default=None,
        help="round p-values to this many decimals first (the original used 4)",
    )


def _legcnet_config(args, base):
    """Apply the analysis flags to a LegcnetConfig."""
    corr = args.correction
    if corr is not None and "+" in corr:
        corr = tuple(corr.split("+"))
    changes = {
        "le_mode": args.analysis_le_mode,
        "maxlag": args.maxlag,
        "test": args.test,
        "alpha": args.alpha,
        "untestable": args.untestable,
        "correction": corr,
        "layers": args.layers,
        "pt_windows": args.pt_windows,
        "round_pvalues": args.round_pvalues,
        "target_accuracy": getattr(args, "target_accuracy", None),
        "max_retrain_epochs": getattr(args, "max_retrain_epochs", None),
    }
    if args.stationarity:
        changes["stationarity"] = True
    return base.replace(**{k: v for k, v in changes.items() if v is not None})


def _null_controls(text: str) -> tuple[str, ...]:
    from jaxprune.nulls import parse_controls

    try:
        return parse_controls(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _sparsities(text: str) -> tuple[float, ...]:
    from jaxprune.curves import parse_sparsities

    try:
        return parse_sparsities(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _null_config(args):
    """The NullConfig of the run flags (None = no null controls)."""
    from jaxprune.nulls import QUICK_MAX_PER_LAYER, NullConfig

    controls = NullConfig().controls if args.null is None else args.null
    if not controls:
        return None
    max_per_layer = args.null_max_per_layer
    if max_per_layer is None and getattr(args, "quick", False):
        max_per_layer = QUICK_MAX_PER_LAYER  # quick runs sample fewer weights for the nulls
    changes = {"draws": args.null_draws, "max_per_layer": max_per_layer}
    return NullConfig(controls=controls, **{k: v for k, v in changes.items() if v is not None})


def _cmd_run(args) -> int:
    from jaxprune import rundir
    from jaxprune.pipeline import preset, run

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1 (the number of seeds 0..K-1), got {args.seeds}")

    cfg = preset(args.dataset, quick=args.quick)
    train_changes = {
        "epochs": args.epochs,
        "hidden": args.hidden,
        "activation": args.activation,
        "loss": args.loss,
        "optimizer": args.optimizer,
        "learning_rate": args.lr,
        "batch_size": args.batch_size,
        "window": args.window,
        "stride": args.stride,
        "risk": args.risk,
    }
    cfg = cfg.replace(train=cfg.train.replace(**{k: v for k, v in train_changes.items() if v is not None}))
    cfg = _legcnet_config(args, cfg)
    rundir.check_writable(args.out)  # before any compute
    # no global x64 switch: `run` scopes parity mode's float64 in a jax.enable_x64 block
    load = lambda seed: _load(args, seed)  # noqa: E731
    nulls = _null_config(args)  # bad draw counts fail before any training
    load(0)  # fail fast on a missing or malformed data set
    print(f"config: {cfg}", flush=True)
    t0 = time.perf_counter()
    results = run(
        load,
        cfg,
        range(args.seeds),
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        log=lambda note: print(note, flush=True),
        nulls=nulls,
        sparsities=args.sparsities,
    )
    from jaxprune.report import summary_table

    for row in summary_table(results["runs"]):
        print(
            f"{row['method']:26s} test acc {row['test_accuracy']:>18s}  "
            f"macro F1 {row['macro_f1']:>18s}  sparsity {row['sparsity']:>18s}"
        )
    print(
        f"{time.perf_counter() - t0:.1f} s; wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'report.md'}"
    )
    return 0


def _cmd_analyze(args) -> int:
    from jaxprune.pipeline import analyze_train_dir

    summary = analyze_train_dir(args.run_dir, lambda base: _legcnet_config(args, base))
    print(f"LE series: {summary['le_source']}")
    for method, sm in summary["summaries"].items():
        print(
            f"{method}: {sm['n_windows']} windows, maxlag {sm['maxlag_used']}: pruned "
            f"{sm['pruned_total']} of {sum(sm['n_weights'])} (per layer {sm['pruned']}); "
            f"untestable {sum(sm['untestable'])} (pruned if keep / prune: "
            f"{sm['pruned_if_keep']} / {sm['pruned_if_prune']})"
        )
    print(f"wrote {Path(args.run_dir) / 'analysis.npz'} and {Path(args.run_dir) / 'analysis.json'}")
    return 0


def _cmd_verify(args) -> int:
    from jaxprune.rundir import write_json
    from jaxprune.verify import verify_run

    if args.sample is not None and args.sample < 1:
        raise ValueError(f"--sample must be >= 1 weights per seed, got {args.sample}")
    report = verify_run(args.run_dir, sample=args.sample, seed=args.seed)
    write_json(Path(args.run_dir) / "verify.json", report)
    print(
        f"LE max |diff| vs the NumPy loop: {report['le_max_abs_diff']:.3g} "
        f"({report['le_mode']} mode); p-value max rel diff vs statsmodels: "
        f"{report['pvalue_max_rel_diff']:.3g} end to end, "
        f"{report['granger_pvalue_max_rel_diff']:.3g} on the run's own LE series; "
        f"mask decisions that flip: "
        f"{report['decision_flips']}; NaN on one side only: {report['nan_mismatches']}; "
        f"wrote {Path(args.run_dir) / 'verify.json'}"
    )
    return 0 if report["decision_flips"] == 0 and report["nan_mismatches"] == 0 else 1


def _cmd_export(args) -> int:
    from jaxprune.export import export_run

    try:
        m = export_run(
            args.run_dir,
            args.method,
            args.out,
            seed=args.seed,
            data_dir=args.data_dir,
            repeats=args.repeats,
            progress=lambda msg: print(msg, flush=True),
        )
    except ImportError as err:  # e.g. flatbuffers, which jax.export needs to write the model
        raise ValueError(str(err)) from err
    lat, b, c = m["latency_ms"], m["bytes"], m["check"]
    widths = lambda w: "-".join(map(str, w))
    print(
        f"{m['method']} seed {m['seed']}: widths {widths(m['original_widths'])} -> "
        f"{widths(m['compact_widths'])}; kept weights {m['parameters']['kept_weights']}; "
        f"bytes dense {b['dense']}, compact {b['compact']}, sparse {b['sparse']}"
    )
    print(
        "latency ms (dense -> exported): "
        + ", ".join(
            f"batch {k.split('_')[1]} {lat['dense'][k]:.3f} -> {lat['exported'][k]:.3f}"
            for k in ("batch_1", "batch_1024")
        )
    )
    verdict = "predictions match" if m["predictions_match"] else "predictions DIFFER"
    print(
        f"test accuracy {c['test_accuracy']:.4f}; {verdict} (max |score diff| "
        f"{c['scores_max_abs_diff']:.2g}, labels differing {c['labels_mismatched']} of "
        f"{c['n_test']}); wrote {Path(args.out) / 'manifest.json'}"
    )
    return 0 if m["predictions_match"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxprune",
        description="LEGCNet pruning in JAX: train a dense net while recording every weight, "
        "estimate windowed Lyapunov exponents, Granger-test them against the risk, prune.",
    )
    parser.add_argument("--version", action="version", version=f"jaxprune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("datasets", help="list the data sets and where they come from")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train", help="train a dense net, recording its weight trajectory")
    _add_data_flags(p)
    _add_train_flags(p)
    p.add_argument("--out", required=True, help="output directory (metrics.json, checkpoints/)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint (same settings; --epochs may grow)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run in --out (its files are deleted first)"
    )
    p.add_argument(
        "--keep-trajectory",
        action="store_true",
        help="also write the full trajectory to OUT/trajectory.npy (memory-mapped)",
    )
    p.add_argument(
        "--le-mode",
        choices=("none", "parity", "fast"),
        default="none",
        help="also run the Lyapunov kernel on every window during training and save "
        "the LE series to OUT/windows.npz (for `jaxprune analyze`)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("analyze", help="LE + Granger + masks from a `jaxprune train` directory")
    p.add_argument("run_dir", help="a directory written by `jaxprune train`")
    _add_analysis_flags(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "run",
        help="the whole LEGCNet pipeline over seeds (dense, FT, PT, random, magnitude) -> results.json and report.md",
    )
    _add_data_flags(p)
    _add_train_flags(p)
    _add_analysis_flags(p)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0..K-1)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run (minutes on a 2-core CPU): fast LE mode, FT baselines only, null controls on 1,024 "
        "sampled weights per layer (mnist: also fewer epochs)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue a killed run in --out (refused unless run.json matches)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --out: its stages and every seed_K/ are deleted first",
    )
    p.add_argument(
        "--target-accuracy",
        type=float,
        default=None,
        help="retraining stops at this training accuracy (default: the data set's)",
    )
    p.add_argument("--max-retrain-epochs", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--null",
        type=_null_controls,
        default=None,
        help="null controls: a comma list of shuffle,surrogate,crossseed (default all) or none",
    )
    p.add_argument(
        "--null-draws",
        type=int,
        default=None,
        help="draws per null control (default 19; crossseed: one per other seed)",
    )
    p.add_argument(
        "--null-max-per-layer",
        type=int,
        default=None,
        help="sampled weights per layer for the nulls (default 4096; --quick: 1024)",
    )
    p.add_argument(
        "--sparsities",
        type=_sparsities,
        default=(),
        help="accuracy-vs-sparsity curves at these targets, e.g. 0.2,0.5,0.8 (default none)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "verify",
        help="recheck a finished run with statsmodels and the NumPy Lyapunov loop on a random sample of weights",
    )
    p.add_argument("run_dir")
    p.add_argument("--sample", type=int, default=None, help="weights per seed (default: all kept)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "export",
        help="a pruned net of a run as a smaller deployable model "
        "(compact widths, sparse form, jax.export StableHLO, manifest.json)",
    )
    p.add_argument("run_dir", help="a directory written by `jaxprune run`")
    p.add_argument(
        "--method", required=True, help="legcnet_ft, legcnet_pt, magnitude, random or dense (or *_pt baselines)"
    )
    p.add_argument("--seed", type=int, default=None, help="which seed's net (default: the first)")
    p.add_argument("--out", required=True, help="export directory")
    p.add_argument(
        "--repeats", type=int, default=100, help="timed calls per latency figure at batch 1024 (4x at batch 1)"
    )
    p.add_argument("--data-dir", default=None, help="TFDS data dir when the run used mnist")
    p.set_defaults(func=_cmd_export)

    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--layers -2,-1`` -> ``--layers=-2,-1``: argparse takes a value starting with '-' that
    is not a plain number for an option."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if (
            a in ("--layers", "--csv-label-column")
            and i + 1 < len(argv)
            and argv[i + 1].startswith("-")
            and argv[i + 1][1:2].isdigit()
        ):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from jaxprune import compile_cache, distributed
    from jaxprune.data import DataFormatError, DatasetNotAvailableError

    compile_cache.enable()  # later runs reuse this one's compiled programs (docs/scaling.md)
    try:
        if distributed.initialize_from_env() and args.command not in ("run", "train"):
            raise ValueError(
                f"`jaxprune {args.command}` runs in one process: unset "
                "JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID "
                "and JAXPRUNE_DISTRIBUTED (only run and train take several)"
            )
        return int(args.func(args) or 0)
    except (DatasetNotAvailableError, DataFormatError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"jaxprune: error: {err}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
