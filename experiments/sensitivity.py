"""How LEGCNet's masks and accuracies move with its free parameters: window length, window
overlap, Granger maxlag, alpha and the number of PT windows, one at a time around the base
config (iris preset by default).

Window and overlap change the LE series, so they retrain the dense net; maxlag, alpha and the
PT window count only change the Granger analysis and reuse the base dense run. For every
setting and seed: FT / PT sparsity, IoU of the FT / PT pruned sets with the base setting's, and
the test accuracy of the retrained FT / PT nets and of random / magnitude pruning at FT
sparsity. Writes ``OUT/report.md``, ``OUT/sensitivity.json`` and ``OUT/figures/*.png``.

Runtime on this project's 2-core CPU (jax 0.10.2, shared with other jobs): ``--quick`` (iris,
2 seeds, 60 epochs, the reduced grid: 3 dense runs per seed, 9 settings) 283 s measured; the
full grid with 3 seeds roughly 6x that.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from experiments import common
from jaxprune import analysis as an
from jaxprune import pipeline, prune
from jaxprune.data import load_dataset
from jaxprune.train import load_params

CONFIG = {
    "dataset": "iris",
    "seeds": 3,
    "quick_seeds": 2,
    "quick_epochs": 60,
    "grid": {
        "window": (80, 120, 160, 240),
        "overlap": (0.0, 0.1, 0.25, 0.5),
        "maxlag": (3, 5, 10, 14, 20),
        "alpha": (0.01, 0.05, 0.1, 0.2),
        "pt_windows": (10, 15, 25, 40),
    },
    "quick_grid": {
        "window": (80, 160),
        "overlap": (0.1, 0.5),
        "maxlag": (5, 14),
        "alpha": (0.01, 0.05, 0.2),
        "pt_windows": (10, 25),
    },
    # nets retrained per setting (baselines at FT sparsity)
    "retrain": ("legcnet_ft", "legcnet_pt", "random", "magnitude"),
    "cfg_overrides": {},
    "train_overrides": {},
}


def _stride(window: int, overlap: float) -> int:
    return max(1, window - int(round(window * overlap)))


def variant(base: pipeline.LegcnetConfig, param: str, value) -> pipeline.LegcnetConfig:
    t = base.train
    overlap = 1 - t.stride / t.window
    if param == "window":
        return base.replace(train=t.replace(window=int(value), stride=_stride(int(value), overlap)))
    if param == "overlap":
        return base.replace(train=t.replace(stride=_stride(t.window, float(value))))
    return base.replace(**{param: type(getattr(base, param))(value)})


def run_setting(data, cfg, seed, dense_dir: Path) -> dict:
    """Dense (cached per window/stride) -> masks -> retraining of CONFIG["retrain"]."""
    with pipeline.x64_scope(cfg):  # as pipeline.run does: the parity kernel is float64
        return _run_setting(data, cfg, seed, dense_dir)


def _run_setting(data, cfg, seed, dense_dir: Path) -> dict:
    dense = pipeline.train_dense(data, cfg, seed, dense_dir, resume=True, progress=False, checkpoint_every_s=1e9)
    _, like = pipeline._init_params(data, cfg, seed)
    ana = pipeline.analyze_dense(dense, like, cfg, seed)
    init = load_params(dense, like, "init")
    out = {
        "keep": {k: prune.flat_keep(m) for k, m in ana["masks"].items()},
        "n_windows": int(len(dense["risk"])),
        "acc": {},
        "sparsity": {},
    }
    for name in CONFIG["retrain"]:
        rec, _, _ = pipeline.retrain(data, cfg, init, ana["masks"][name], seed=seed)
        out["acc"][name] = rec["test_accuracy"]
        out["sparsity"][name] = rec["sparsity"]
    return out


def main(argv=None) -> int:
    p = common.base_parser(__doc__, "runs/sensitivity", CONFIG["seeds"])
    p.add_argument("--dataset", default=CONFIG["dataset"])
    args = p.parse_args(argv)
    n_seeds = args.seeds or (CONFIG["quick_seeds"] if args.quick else CONFIG["seeds"])
    seeds = list(range(n_seeds))
    grid = CONFIG["quick_grid"] if args.quick else CONFIG["grid"]
    out = Path(args.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    base = pipeline.preset(args.dataset, quick=args.quick)
    if args.quick:
        base = base.replace(train=base.train.replace(epochs=CONFIG["quick_epochs"]))
    base = common.apply_overrides(base, CONFIG)
    t0 = time.perf_counter()
    rows = []
    base_keep = {}
    for seed in seeds:
        data = load_dataset(args.dataset, seed=seed)
        t = base.train
        res = run_setting(data, base, seed, out / "dense" / f"w{t.window}_s{t.stride}_seed{seed}")
        base_keep[seed] = res["keep"]
        rows.append({"param": "base", "value": None, "seed": seed, **_row(res, res, base)})
        for param, values in grid.items():
            for value in values:
                cfg = variant(base, param, value)
                if cfg == base:
                    continue
                t = cfg.train
                try:
                    r = run_setting(data, cfg, seed, out / "dense" / f"w{t.window}_s{t.stride}_seed{seed}")
                except ValueError as e:  # e.g. too few windows for the Granger test
                    rows.append({"param": param, "value": value, "seed": seed, "error": str(e)})
                    continue
                rows.append({"param": param, "value": value, "seed": seed, **_row(r, res, cfg)})
    seconds = time.perf_counter() - t0
    common.write_json(
        out / "sensitivity.json",
        {"config": base.to_dict(), "grid": grid, "seeds": seeds, "rows": rows, "seconds": seconds},
    )
    figs = _figures(rows, base, grid, out / "figures")
    (out / "report.md").write_text(_report(rows, base, grid, seeds, seconds, figs, args))
    if args.no_artifacts:
        common.prune_artifacts(out)
    print(out / "report.md")
    return 0


def _row(r: dict, base_res: dict, cfg) -> dict:
    out = {
        "n_windows": r["n_windows"],
        "sparsity_ft": r["sparsity"].get("legcnet_ft"),
        "sparsity_pt": r["sparsity"].get("legcnet_pt"),
    }
    for m in ("legcnet_ft", "legcnet_pt"):
        out[f"iou_base_{m}"] = an.iou(~r["keep"][m], ~base_res["keep"][m])
    out["iou_ft_magnitude"] = an.iou(~r["keep"]["legcnet_ft"], ~r["keep"]["magnitude"])
    out.update({f"acc_{k}": v for k, v in r["acc"].items()})
    return out


def _base_value(base, param):
    if param == "window":
        return base.train.window
    if param == "overlap":
        return round(1 - base.train.stride / base.train.window, 3)
    return getattr(base, param)


def _agg(rows, param, value, key):
    vals = [r[key] for r in rows if r["param"] == param and r.get("value") == value and key in r and r[key] is not None]
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (np.nan, np.nan)


def _series(rows, base, grid, param, key):
    bv = _base_value(base, param)
    xs = sorted(set(grid[param]) | {bv})
    ys = [_agg(rows, "base", None, key) if x == bv else _agg(rows, param, x, key) for x in xs]
    return xs, ys


def _figures(rows, base, grid, fig_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = list(grid)
    fig, axes = plt.subplots(2, len(params), figsize=(3.2 * len(params), 5.6), squeeze=False)
    for j, param in enumerate(params):
        for key, lab, c in (
            ("sparsity_ft", "FT", "tab:blue"),
            ("sparsity_pt", "PT", "tab:cyan"),
            ("iou_base_legcnet_ft", "IoU(FT, base FT)", "tab:purple"),
        ):
            xs, ys = _series(rows, base, grid, param, key)
            axes[0, j].errorbar(xs, [y[0] for y in ys], [y[1] for y in ys], marker="o", capsize=2, label=lab, color=c)
        for key, lab, c in (
            ("acc_legcnet_ft", "FT", "tab:blue"),
            ("acc_legcnet_pt", "PT", "tab:cyan"),
            ("acc_random", "random (FT sp.)", "tab:red"),
            ("acc_magnitude", "magnitude (FT sp.)", "tab:orange"),
        ):
            xs, ys = _series(rows, base, grid, param, key)
            axes[1, j].errorbar(xs, [y[0] for y in ys], [y[1] for y in ys], marker="o", capsize=2, label=lab, color=c)
        for i in range(2):
            axes[i, j].axvline(_base_value(base, param), color="k", ls=":", lw=0.8)
            axes[i, j].set_xlabel(param)
        if param == "alpha":
            axes[0, j].set_xscale("log")
            axes[1, j].set_xscale("log")
    axes[0, 0].set_ylabel("sparsity / IoU")
    axes[1, 0].set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=6)
    axes[1, 0].legend(fontsize=6)
    fig.suptitle("Sensitivity (dotted: base setting; mean ± sd over seeds)", fontsize=10)
    path = fig_dir / "sensitivity.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return {"sensitivity": "figures/sensitivity.png"}


def _report(rows, base, grid, seeds, seconds, figs, args) -> str:
    from jaxprune.report import _markdown_table

    t = base.train
    out = [
        f"# LEGCNet sensitivity on {args.dataset}",
        "",
        f"Base: hidden {t.hidden}, lr {t.learning_rate}, batch {t.batch_size}, {t.epochs} "
        f"epochs, window {t.window} / stride {t.stride}, maxlag {base.maxlag}, alpha "
        f"{base.alpha}, PT {base.pt_windows} windows, LE mode {base.le_mode}. Seeds {seeds}. "
        "One parameter varied at a time; mean ± sd over seeds. IoU: pruned sets vs the base "
        "setting's (same seed).",
        "",
    ]
    header = [
        "parameter",
        "value",
        "windows",
        "sparsity FT",
        "sparsity PT",
        "IoU FT vs base",
        "IoU PT vs base",
        "IoU FT vs magnitude",
        "acc FT",
        "acc PT",
        "acc random",
        "acc magnitude",
    ]
    keys = [
        "n_windows",
        "sparsity_ft",
        "sparsity_pt",
        "iou_base_legcnet_ft",
        "iou_base_legcnet_pt",
        "iou_ft_magnitude",
        "acc_legcnet_ft",
        "acc_legcnet_pt",
        "acc_random",
        "acc_magnitude",
    ]
    table = []
    for param in grid:
        bv = _base_value(base, param)
        for x in sorted(set(grid[param]) | {bv}):
            src = ("base", None) if x == bv else (param, x)
            cells = []
            for k in keys:
                m, s = _agg(rows, *src, k)
                cells.append("n/a" if np.isnan(m) else (f"{m:.0f}" if k == "n_windows" else f"{m:.3f} ± {s:.3f}"))
            table.append([param, f"{x}" + (" (base)" if x == bv else "")] + cells)
    out.append(_markdown_table(header, table))
    errors = [r for r in rows if "error" in r]
    if errors:
        out += ["", "Settings that could not run:", ""]
        out += [f"* {r['param']}={r['value']} seed {r['seed']}: {r['error']}" for r in errors]
    for k, v in figs.items():
        out += ["", f"![{k}]({v})"]
    out += ["", f"Wall time {seconds:.0f} s."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
