"""Frozen results of the pipeline's training stages (`jaxprune.pipeline`).

`DenseRun` is what the dense stage (`jaxprune.pipeline.fit_dense`, cached by `train_dense`)
returns and what ``seed_K/dense.npz`` holds (`jaxprune.rundir.save_dense` / `load_dense_run`); `Retrained` is
one mask's retraining (`jaxprune.pipeline.retrain_mask`). Only NumPy here: no JAX, no files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["DenseRun", "Retrained"]

# dense.npz's arrays besides the init_i / params_i leaves, in the order they are written
_DENSE_KEYS = (
    "le",
    "le_status",
    "sample_windows",
    "sample_idx",
    "risk",
    "end_steps",
    "train_accuracy_history",
    "loss_history",
    "epoch_seconds",
    "seconds",
    "train_accuracy",
    "test_accuracy",
    "dense_epochs_to_threshold",
    "steps",
    "epochs",
)


def _leaves(arrays: Mapping[str, Any], prefix: str) -> tuple[np.ndarray, ...]:
    idx = sorted(
        int(k[len(prefix) + 1 :]) for k in arrays if k.startswith(prefix + "_") and k[len(prefix) + 1 :].isdigit()
    )
    return tuple(arrays[f"{prefix}_{i}"] for i in idx)


@dataclasses.dataclass(frozen=True, eq=False)
class DenseRun:
    """The dense stage of one seed: training with the Lyapunov kernel on every window as it completes.

    le: ``(n_windows, n_weights)`` float LE per window and weight (NaN: no estimate);
    le_status: ``(n_windows, n_weights)`` int8 `jaxprune.lyapunov.Status`;
    sample_windows: ``(n_windows, window, n_sample)`` float32 raw windows of the verify sample;
    sample_idx: ``(n_sample,)`` flat indices of those weights; risk: ``(n_windows,)``;
    end_steps: ``(n_windows,)`` step at which each window ends;
    train_accuracy_history, loss_history, epoch_seconds: ``(epochs,)``;
    seconds, train_accuracy, test_accuracy: scalars; dense_epochs_to_threshold: first epoch at
    the target accuracy (-1: never); steps, epochs: ints;
    init_leaves / param_leaves: the initial / trained params' leaves in pytree order;
    run_digest: the stage digest it was computed under (None: none recorded);
    extras: any other arrays of a loaded file (kept, so a load-save round trip loses nothing).

    Read-only mapping access (``dense["le"]``, ``"init_0" in dense``) gives dense.npz's keys,
    as the dict this stage returned before; `jaxprune.train.load_params` accepts it.
    """

    le: np.ndarray
    le_status: np.ndarray
    sample_windows: np.ndarray
    sample_idx: np.ndarray
    risk: np.ndarray
    end_steps: np.ndarray
    train_accuracy_history: np.ndarray
    loss_history: np.ndarray
    epoch_seconds: np.ndarray
    seconds: float
    train_accuracy: float
    test_accuracy: float
    dense_epochs_to_threshold: int
    steps: int
    epochs: int
    init_leaves: tuple[np.ndarray, ...] = ()
    param_leaves: tuple[np.ndarray, ...] = ()
    run_digest: str | None = None
    extras: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        return int(len(self.risk))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """dense.npz's arrays, keys and dtypes as written since the first release."""
        arrays = dict(
            le=self.le,
            le_status=self.le_status,
            sample_windows=self.sample_windows,
            sample_idx=self.sample_idx,
            risk=self.risk,
            end_steps=self.end_steps,
            train_accuracy_history=self.train_accuracy_history,
            loss_history=self.loss_history,
            epoch_seconds=self.epoch_seconds,
            seconds=np.float64(self.seconds),
            train_accuracy=np.float64(self.train_accuracy),
            test_accuracy=np.float64(self.test_accuracy),
            dense_epochs_to_threshold=np.int64(self.dense_epochs_to_threshold),
            steps=np.int64(self.steps),
            epochs=np.int64(self.epochs),
            **{f"init_{i}": a for i, a in enumerate(self.init_leaves)},
            **{f"params_{i}": a for i, a in enumerate(self.param_leaves)},
        )
        arrays.update(self.extras)
        if self.run_digest is not None:
            arrays["run_digest"] = np.asarray(self.run_digest)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> DenseRun:
        """From dense.npz's arrays (`to_arrays`; files of earlier versions load too: a key
        they lack gets an empty array / -1)."""
        a = dict(arrays)
        risk = np.asarray(a.pop("risk"))
        le = np.asarray(a.pop("le"))
        empty = np.zeros((0,))

        def take(key, default):
            return a.pop(key) if key in a else default

        kwargs = dict(
            le=le,
            risk=risk,
            le_status=take("le_status", np.zeros(le.shape, np.int8)),
            sample_windows=take("sample_windows", np.zeros((len(risk), 0, 0), np.float32)),
            sample_idx=take("sample_idx", np.zeros((0,), np.int64)),
            end_steps=take("end_steps", empty),
            train_accuracy_history=take("train_accuracy_history", empty),
            loss_history=take("loss_history", empty),
            epoch_seconds=take("epoch_seconds", empty),
            seconds=float(take("seconds", np.nan)),
            train_accuracy=float(take("train_accuracy", np.nan)),
            test_accuracy=float(take("test_accuracy", np.nan)),
            dense_epochs_to_threshold=int(take("dense_epochs_to_threshold", -1)),
            steps=int(take("steps", -1)),
            epochs=int(take("epochs", -1)),
            init_leaves=_leaves(a, "init"),
            param_leaves=_leaves(a, "params"),
        )
        digest = a.pop("run_digest", None)
        kwargs["run_digest"] = None if digest is None else str(np.asarray(digest))
        extras = {
            k: v for k, v in a.items() if not (k.startswith(("init_", "params_")) and k.split("_", 1)[1].isdigit())
        }
        return cls(**kwargs, extras=extras)

    # read-only mapping over dense.npz's keys (the dict interface of earlier versions)
    def __getitem__(self, key: str):
        return self.to_arrays()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.to_arrays()

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_arrays())

    def keys(self):
        return self.to_arrays().keys()

    def get(self, key: str, default=None):
        return self.to_arrays().get(key, default)


@dataclasses.dataclass(frozen=True, eq=False)
class Retrained:
    """One mask's retraining from the dense init.

    record: the ``retrain_<name>.json`` fields (test metrics, sparsity, FLOPs, epochs, steps,
    threshold, seconds); params: the retrained sparse net (pytree); history: per-epoch
    ``train_accuracy`` / ``loss`` lists and ``reached_target``.
    """

    record: dict
    params: Any
    history: dict

    def __iter__(self):
        # unpacks as (record, params, history), as `pipeline.retrain` returns
        return iter((self.record, self.params, self.history))
