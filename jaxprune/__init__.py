"""jaxprune: LEGCNet pruning by chaos and causality, in JAX.

Stages, one module each: `data` -> `models` / `train` (trajectory windows, risk) -> `lyapunov`
-> `granger` -> `prune` -> `pipeline`. Public names are re-exported here lazily, so that
``import jaxprune`` (and ``jaxprune --help``) stays fast.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_dataset": "jaxprune.data",
    "list_datasets": "jaxprune.data",
    "load_csv": "jaxprune.data",
    "Dataset": "jaxprune.data",
    "MLP": "jaxprune.models",
    "TrainConfig": "jaxprune.train",
    "Trainer": "jaxprune.train",
    "CONFIGS": "jaxprune.train",
    "DatasetNotAvailableError": "jaxprune.data",
    "DataFormatError": "jaxprune.data",
    "causal_mask": "jaxprune.prune",
    "random_mask": "jaxprune.prune",
    "magnitude_mask": "jaxprune.prune",
    "masked": "jaxprune.prune",
    "apply_mask": "jaxprune.prune",
    "mask_summary": "jaxprune.prune",
    "dense_flops": "jaxprune.prune",
    "sparse_flops": "jaxprune.prune",
    "pruned_iou": "jaxprune.prune",
    "classification_metrics": "jaxprune.metrics",
    "precision_recall_f1": "jaxprune.metrics",
    "lyap_r": "jaxprune.lyapunov",
    "windowed_le": "jaxprune.lyapunov",
    "windowed_le_update": "jaxprune.lyapunov",
    "LyapunovStream": "jaxprune.lyapunov",
    "lyap_r_numpy": "jaxprune.lyapunov_reference",
    "granger_tests": "jaxprune.granger",
    "min_pvalue": "jaxprune.granger",
    "fill_nan": "jaxprune.granger",
    "adfuller": "jaxprune.stationarity",
    "make_stationary": "jaxprune.stationarity",
    "LegcnetConfig": "jaxprune.pipeline",
    "preset": "jaxprune.pipeline",
    "run": "jaxprune.pipeline",
    "verify_run": "jaxprune.verify",
    "flatten_kernels": "jaxprune.weights",
    "unflatten_kernels": "jaxprune.weights",
    "weight_index": "jaxprune.weights",
    "kernel_layout": "jaxprune.weights",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
