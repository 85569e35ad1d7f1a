"""jaxprune: LEGCNet pruning by chaos and causality, in JAX.

Stages, one module each: `data` -> `models` / `train` (trajectory windows, risk) -> `lyapunov`
-> `granger` -> `select` (tests -> masks: `multitest`, `prune`) -> retraining (`optim`,
`population`) -> `report`; `pipeline` runs them and `rundir` holds every file read and write of
a run directory (docs/architecture.md). The public names below are re-exported here lazily (a
module ``__getattr__``), so that ``import jaxprune`` (and ``jaxprune --help``) stays fast: the
submodule, and JAX with it, is imported on first access. ``docs/method.md`` describes the method.

Renamed names keep a deprecated alias for one release: ``masked`` (use ``masked_optimizer``) and
``windowed_le_update`` (use ``window_le``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> (module, attribute there)
_EXPORTS = {
    # data and model
    "load_dataset": ("jaxprune.data", "load_dataset"),
    "list_datasets": ("jaxprune.data", "list_datasets"),
    "load_csv": ("jaxprune.data", "load_csv"),
    "Dataset": ("jaxprune.data", "Dataset"),
    "DatasetNotAvailableError": ("jaxprune.data", "DatasetNotAvailableError"),
    "DataFormatError": ("jaxprune.data", "DataFormatError"),
    "MLP": ("jaxprune.models", "MLP"),
    # training
    "TrainConfig": ("jaxprune.train", "TrainConfig"),
    "Trainer": ("jaxprune.train", "Trainer"),
    "TrainResult": ("jaxprune.train", "TrainResult"),
    "CONFIGS": ("jaxprune.train", "CONFIGS"),
    # Lyapunov exponents
    "LyapunovParams": ("jaxprune.lyapunov", "LyapunovParams"),
    "LEStatus": ("jaxprune.lyapunov", "Status"),
    "LyapResult": ("jaxprune.lyapunov", "LyapResult"),
    "WindowedLE": ("jaxprune.lyapunov", "WindowedLE"),
    "lyap_r": ("jaxprune.lyapunov", "lyap_r"),
    "windowed_le": ("jaxprune.lyapunov", "windowed_le"),
    "window_le": ("jaxprune.lyapunov", "window_le"),
    "windowed_le_update": ("jaxprune.lyapunov", "windowed_le_update"),  # deprecated: window_le
    "LyapunovStream": ("jaxprune.lyapunov", "LyapunovStream"),
    "lyap_r_numpy": ("jaxprune.lyapunov_reference", "lyap_r_numpy"),
    # Granger tests
    "GrangerParams": ("jaxprune.granger", "GrangerParams"),
    "GrangerStatus": ("jaxprune.granger", "Status"),
    "GrangerResult": ("jaxprune.granger", "GrangerResult"),
    "TestResult": ("jaxprune.granger", "TestResult"),
    "granger_tests": ("jaxprune.granger", "granger_tests"),
    "min_pvalue": ("jaxprune.granger", "min_pvalue"),
    "fill_nan": ("jaxprune.granger", "fill_nan"),
    "adfuller": ("jaxprune.stationarity", "adfuller"),
    "make_stationary": ("jaxprune.stationarity", "make_stationary"),
    # masks and the masked optimizer
    "causal_mask": ("jaxprune.prune", "causal_mask"),
    "random_mask": ("jaxprune.prune", "random_mask"),
    "magnitude_mask": ("jaxprune.prune", "magnitude_mask"),
    "masked_optimizer": ("jaxprune.optim", "masked_optimizer"),
    "masked": ("jaxprune.optim", "masked"),  # deprecated: masked_optimizer
    "MaskedState": ("jaxprune.optim", "MaskedState"),
    "apply_mask": ("jaxprune.prune", "apply_mask"),
    "mask_summary": ("jaxprune.mask_stats", "mask_summary"),
    "MaskSummary": ("jaxprune.mask_stats", "MaskSummary"),
    "Flops": ("jaxprune.mask_stats", "Flops"),
    "dense_flops": ("jaxprune.mask_stats", "dense_flops"),
    "sparse_flops": ("jaxprune.mask_stats", "sparse_flops"),
    "pruned_iou": ("jaxprune.mask_stats", "pruned_iou"),
    "classification_metrics": ("jaxprune.metrics", "classification_metrics"),
    "precision_recall_f1": ("jaxprune.metrics", "precision_recall_f1"),
    # the whole pipeline
    "LegcnetConfig": ("jaxprune.config", "LegcnetConfig"),
    "LyapunovConfig": ("jaxprune.config", "LyapunovConfig"),
    "GrangerConfig": ("jaxprune.config", "GrangerConfig"),
    "SelectionConfig": ("jaxprune.config", "SelectionConfig"),
    "RetrainConfig": ("jaxprune.config", "RetrainConfig"),
    "preset": ("jaxprune.config", "preset"),
    "analyze": ("jaxprune.select", "analyze"),
    "Analysis": ("jaxprune.select", "Analysis"),
    "DenseRun": ("jaxprune.stages", "DenseRun"),
    "Retrained": ("jaxprune.stages", "Retrained"),
    "RunData": ("jaxprune.rundir", "RunData"),
    "load_run_data": ("jaxprune.rundir", "load_run_data"),
    "run": ("jaxprune.pipeline", "run"),
    "verify_run": ("jaxprune.verify", "verify_run"),
    # weight layout
    "flatten_kernels": ("jaxprune.weights", "flatten_kernels"),
    "unflatten_kernels": ("jaxprune.weights", "unflatten_kernels"),
    "weight_index": ("jaxprune.weights", "weight_index"),
    "kernel_layout": ("jaxprune.weights", "kernel_layout"),
}

# the same names as _EXPORTS, spelled out for static analysers (tests/test_api.py checks this)
__all__ = [
    "__version__",
    "load_dataset",
    "list_datasets",
    "load_csv",
    "Dataset",
    "DatasetNotAvailableError",
    "DataFormatError",
    "MLP",
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "CONFIGS",
    "LyapunovParams",
    "LEStatus",
    "LyapResult",
    "WindowedLE",
    "lyap_r",
    "windowed_le",
    "window_le",
    "windowed_le_update",
    "LyapunovStream",
    "lyap_r_numpy",
    "GrangerParams",
    "GrangerStatus",
    "GrangerResult",
    "TestResult",
    "granger_tests",
    "min_pvalue",
    "fill_nan",
    "adfuller",
    "make_stationary",
    "causal_mask",
    "random_mask",
    "magnitude_mask",
    "masked_optimizer",
    "masked",
    "MaskedState",
    "apply_mask",
    "mask_summary",
    "MaskSummary",
    "Flops",
    "dense_flops",
    "sparse_flops",
    "pruned_iou",
    "classification_metrics",
    "precision_recall_f1",
    "LegcnetConfig",
    "LyapunovConfig",
    "GrangerConfig",
    "SelectionConfig",
    "RetrainConfig",
    "preset",
    "analyze",
    "Analysis",
    "DenseRun",
    "Retrained",
    "RunData",
    "load_run_data",
    "run",
    "verify_run",
    "flatten_kernels",
    "unflatten_kernels",
    "weight_index",
    "kernel_layout",
]

if TYPE_CHECKING:  # static analysers and IDEs see the real objects (never executed at runtime)
    from jaxprune.config import (
        GrangerConfig,
        LegcnetConfig,
        LyapunovConfig,
        RetrainConfig,
        SelectionConfig,
        preset,
    )
    from jaxprune.data import (
        DataFormatError,
        Dataset,
        DatasetNotAvailableError,
        list_datasets,
        load_csv,
        load_dataset,
    )
    from jaxprune.granger import GrangerParams, GrangerResult, TestResult, fill_nan, granger_tests, min_pvalue
    from jaxprune.granger import Status as GrangerStatus
    from jaxprune.lyapunov import (
        LyapResult,
        LyapunovParams,
        LyapunovStream,
        WindowedLE,
        lyap_r,
        window_le,
        windowed_le,
        windowed_le_update,
    )
    from jaxprune.lyapunov import Status as LEStatus
    from jaxprune.lyapunov_reference import lyap_r_numpy
    from jaxprune.mask_stats import Flops, MaskSummary, dense_flops, mask_summary, pruned_iou, sparse_flops
    from jaxprune.metrics import classification_metrics, precision_recall_f1
    from jaxprune.models import MLP
    from jaxprune.optim import MaskedState, masked, masked_optimizer
    from jaxprune.pipeline import run
    from jaxprune.prune import apply_mask, causal_mask, magnitude_mask, random_mask
    from jaxprune.rundir import RunData, load_run_data
    from jaxprune.select import Analysis, analyze
    from jaxprune.stages import DenseRun, Retrained
    from jaxprune.stationarity import adfuller, make_stationary
    from jaxprune.train import CONFIGS, TrainConfig, Trainer, TrainResult
    from jaxprune.verify import verify_run
    from jaxprune.weights import flatten_kernels, kernel_layout, unflatten_kernels, weight_index


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")
    module, attr = target
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
