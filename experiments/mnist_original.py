"""The original LEGCNet MNIST experiment: 784-50-30-10, sigmoid, MSE on one-hot targets, SGD lr
0.5, batch 128, 50 epochs, 5 seeds, 70/30 split (`pipeline.preset("mnist")`), on full MNIST
from TensorFlow Datasets when it is in the TFDS data dir, otherwise on the embedded 5,000-image
``mnist5k`` (sized by steps: 400 epochs = the original's ~11,000 steps, threshold 75 %; the
report says which was used).

Two analyses of the same dense runs: all 41,000 weights (``OUT/all_weights``), and the
original's last two layers only (``OUT/last_two_layers``, 1,800 weights; the dense stage is
reused, only the Granger analysis and the retraining run again). ``OUT/report.md`` compares them.

Runtime on this project's 2-core CPU (jax 0.10.2, idle, cold compilation cache): mnist5k
``--quick --seeds 5`` takes 767 s (12.8 min; 1,065 s user): all weights 435 s (dense population
57 s, retraining population of 25 nets 78 s, 75 curve nets 196 s for 27,647 net-epochs, null
controls), last two layers 328 s (the dense stage reused). The two analyses retrain 200 nets,
~75,000 net-epochs of ~1.2 GFLOP each: ~88 TFLOP, 7.4 min even at this CPU's best matmul rate
(~200 GFLOP/s), so 3 min is out of reach on it. The full config (parity LE, PT baselines, 5 seeds, 19 null
draws, curves at 0.1..0.9: ``docs/example_mnist5k``) took 73 min with the CPU shared with other
jobs. Full MNIST (50 epochs of 383 steps on 49,000 training images) wants a GPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from experiments import common
from jaxprune import pipeline
from jaxprune.data import DatasetNotAvailableError, load_dataset

CONFIG = {
    "dataset": "mnist",  # falls back to "mnist5k" when TFDS MNIST is not on disk
    "fallback": "mnist5k",
    "seeds": 5,
    "quick_seeds": 3,
    "last_two_layers": (-2, -1),
    "sparsities": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "quick_sparsities": (0.2, 0.5, 0.8),
    "null_draws": 19,
    "cfg_overrides": {},
    "train_overrides": {},
}


def pick_dataset(log=print) -> tuple[str, str]:
    name = CONFIG["dataset"]
    try:
        load_dataset(name, seed=0)
        return name, f"{name}: found locally."
    except (DatasetNotAvailableError, ImportError, FileNotFoundError) as e:
        fb = CONFIG["fallback"]
        note = (
            f"Full MNIST is not available offline ({type(e).__name__}); this run uses "
            f"`{fb}` (5,000 real MNIST digits, 3,500 for training) with the original net, "
            "sized by steps. Numbers are not comparable one to one with the paper's "
            "full-MNIST figures."
        )
        log(note)
        return fb, note


def main(argv=None) -> int:
    p = common.base_parser(__doc__, "runs/mnist_original", CONFIG["seeds"])
    p.add_argument("--skip-last-two", action="store_true", help="only the all-weights analysis")
    args = p.parse_args(argv)
    nulls, sparsities = common.controls_from_args(args, CONFIG)
    n_seeds = args.seeds or (CONFIG["quick_seeds"] if args.quick else CONFIG["seeds"])
    seeds = list(range(n_seeds))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name, note = pick_dataset()
    cfg = common.apply_overrides(pipeline.preset(name, quick=args.quick), CONFIG)
    ds = lambda seed: load_dataset(name, seed=seed)  # noqa: E731
    t0 = time.perf_counter()
    studies = [
        common.run_study(
            f"{name} all weights",
            ds,
            cfg,
            seeds,
            out / "all_weights",
            artifacts=True,
            resume=args.resume,
            overwrite=not args.resume,
            nulls=nulls,
            sparsities=sparsities,
        )
    ]
    if not args.skip_last_two:
        # Reuse the dense stage (dense.npz) of every seed: the training is the same.
        sub = out / "last_two_layers"
        cfg2 = cfg.replace(layers=tuple(CONFIG["last_two_layers"]))
        studies.append(
            common.run_study(
                f"{name} last two layers",
                ds,
                cfg2,
                seeds,
                sub,
                artifacts=True,
                resume=args.resume,
                overwrite=not args.resume,
                reuse_dense_from=out / "all_weights",
                nulls=nulls,
                sparsities=sparsities,
            )
        )
    if args.no_artifacts:
        for st in studies:
            common.prune_artifacts(st["out"])
    text = [f"# The original MNIST setup on {name}", "", note, ""]
    from jaxprune.report import _markdown_table

    rows = []
    for st in studies:
        h = common.headline(st)
        a, sp = h["acc"], h["sparsity"]
        fm = h["stability"].get("legcnet_ft|magnitude")
        rows.append(
            [
                f"[{st['name']}]({Path(st['out']).name}/report.md)",
                h["seeds"],
                *(
                    f"{a.get(k, float('nan')):.3f}"
                    for k in ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude")
                ),
                f"{sp.get('legcnet_ft', float('nan')):.3f} / {sp.get('legcnet_pt', float('nan')):.3f}",
                "n/a" if fm is None else f"{fm['iou']:.2f} ({fm['chance']:.2f})",
            ]
        )
    text.append(
        _markdown_table(
            [
                "analysis",
                "seeds",
                "dense",
                "FT",
                "PT",
                "random (FT)",
                "magnitude (FT)",
                "sparsity FT / PT",
                "IoU FT-magnitude (chance)",
            ],
            rows,
        )
    )
    text += [
        "",
        "Sparsity is over all 41,000 kernel weights in both rows (the last-two-layers "
        "analysis can prune at most 1,800).",
        "",
        "## Verdicts",
        "",
    ]
    for st in studies:
        text += [f"**{st['name']}**", ""]
        text += [f"* {c['verdict']}" for c in st["extras"].get("comparisons", [])]
        h = common.headline(st)
        text += [f"* Null control: {v}" for v in h["null_verdicts"]]
        text += [f"* {v}" for v in h["curve_verdicts"]]
        text.append("")
    text.append(
        f"Wall time {time.perf_counter() - t0:.0f} s ({'quick' if args.quick else 'full'} config, {len(seeds)} seeds)."
    )
    (out / "report.md").write_text("\n".join(text) + "\n")
    print(out / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
