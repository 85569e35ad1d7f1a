"""The ``jaxprune`` command: ``jaxprune train``, ``jaxprune datasets`` (and the analysis commands).

Every command is a thin layer over the library: parse flags into a config, call one function,
write JSON next to the checkpoints.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jaxprune import __version__


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="mnist5k",
                   help="data set name (see `jaxprune datasets`) or csv:PATH; default mnist5k")
    p.add_argument("--data-dir", default=None, help="TFDS data dir for --dataset mnist")
    p.add_argument("--download", action="store_true",
                   help="allow downloading a data set that is not on disk (needs internet)")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    from jaxprune.train import CONFIGS

    p.add_argument("--config", default="original_mnist", choices=sorted(CONFIGS),
                   help="named base config (default: the original MNIST setup)")
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
    p.add_argument("--risk", choices=("train", "batch"), default=None,
                   help="accuracy behind the risk series (default train split)")


def _config_from_args(args):
    from jaxprune.train import CONFIGS

    changes = {
        "epochs": args.epochs, "seed": args.seed, "hidden": args.hidden,
        "activation": args.activation, "loss": args.loss, "optimizer": args.optimizer,
        "learning_rate": args.lr, "batch_size": args.batch_size, "window": args.window,
        "stride": args.stride, "risk": args.risk,
    }
    return CONFIGS[args.config].replace(**{k: v for k, v in changes.items() if v is not None})


def _cmd_datasets(args) -> int:
    from jaxprune.data import list_datasets

    for info in list_datasets():
        flag = " (download)" if info.needs_download else ""
        print(f"{info.name:15s}{flag:11s} {info.description}")
    return 0


def _cmd_train(args) -> int:
    from jaxprune.data import load_dataset
    from jaxprune.train import Trainer, save_metrics

    config = _config_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.dataset, seed=config.seed, data_dir=args.data_dir,
                        download=args.download)
    print(f"{data!r}\nconfig: {config}", flush=True)
    trainer = Trainer(
        config, data.x_train, data.y_train, n_classes=data.n_classes,
        x_test=data.x_test, y_test=data.y_test,
        keep_trajectory=out / "trajectory.npy" if args.keep_trajectory else None,
        checkpoint_dir=out / "checkpoints",
    )
    t0 = time.perf_counter()
    result = trainer.fit(resume=args.resume, progress=not args.no_progress)
    metrics = {"dataset": data.name, **result.metrics(), "wall_seconds": time.perf_counter() - t0}
    save_metrics(out / "metrics.json", metrics)
    import numpy as np

    np.savez(out / "windows.npz", end_steps=result.window_end_steps, risk=result.risk)
    print(
        f"train accuracy {result.train_accuracy:.4f}  test accuracy {result.test_accuracy:.4f}  "
        f"epochs {result.epochs}  steps {result.steps}  weights {result.n_weights}  "
        f"windows {len(result.window_end_steps)}\nwrote {out / 'metrics.json'}"
    )
    return 0


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
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--keep-trajectory", action="store_true",
                   help="also write the full trajectory to OUT/trajectory.npy (memory-mapped)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from jaxprune.data import DataFormatError, DatasetNotAvailableError

    try:
        return int(args.func(args) or 0)
    except (DatasetNotAvailableError, DataFormatError, KeyError, ValueError) as err:
        print(f"jaxprune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
