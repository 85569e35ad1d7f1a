"""Reading a run directory written by `jaxprune.pipeline.run` (and the extras of
``experiments/``), for the report, the figures and the analyses.

Layout (pipeline): ``results.json``, ``config.json``, ``report.md`` and per seed ``seed_K/``
with ``dense.npz`` (``le``, ``risk``, ``train_accuracy_history``, ``params_i`` / ``init_i``
leaves...), ``analysis.npz`` (``mask_<name>`` flat keep arrays, ``pmin_<method>``...),
``retrain_<name>.json`` and ``retrained_<name>.npz`` (written by `save_retrained`: the
retrained sparse net's kernels ``kernel_<layer>``, biases ``bias_<layer>`` (runs from before
they were saved lack them; `jaxprune.export` needs them) and its per-epoch
``train_accuracy_history`` / ``loss_history``; runs from before it was written lack the file).

Every loader returns None (or skips) when a file is missing, so reports degrade gracefully.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune.weights import flatten_kernels, kernel_layout, key_name


def load_results(run_dir) -> dict | None:
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def layer_sizes(results: dict) -> list[int]:
    """Kernel weights per layer, from the first run record (kept + pruned)."""
    r = results["runs"][0]
    return [int(k) + int(p) for k, p in zip(r["kept_per_layer"], r["pruned_per_layer"])]


def layer_offsets(results: dict) -> list[int]:
    return [0] + [int(v) for v in np.cumsum(layer_sizes(results))]


def analysed_per_layer(results: dict) -> list[int]:
    """Analysed (prunable) weights per layer under the config's layer filter."""
    sizes = layer_sizes(results)
    layers = results["config"].get("layers")
    if layers is None:
        return sizes
    chosen = {int(i) % len(sizes) for i in layers}
    return [s if i in chosen else 0 for i, s in enumerate(sizes)]


def seed_dir(run_dir, seed: int) -> Path:
    return Path(run_dir) / f"seed_{int(seed)}"


def load_npz(path) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_dense(run_dir, seed: int, keys=None) -> dict | None:
    """``seed_K/dense.npz`` as a dict (only `keys` when given)."""
    path = seed_dir(run_dir, seed) / "dense.npz"
    if not path.exists():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files if keys is None or k in keys}


def load_analysis(run_dir, seed: int) -> dict | None:
    return load_npz(seed_dir(run_dir, seed) / "analysis.npz")


def load_masks(run_dir, seeds) -> dict[int, dict[str, np.ndarray]]:
    """``{seed: {name: flat keep array}}`` for the seeds that have ``analysis.npz``."""
    out = {}
    for s in seeds:
        a = load_analysis(run_dir, s)
        if a is not None:
            out[int(s)] = {k[len("mask_"):]: np.asarray(v, bool) for k, v in a.items()
                           if k.startswith("mask_")}
    return out


def kernels_from_leaves(arrays: dict, prefix: str, sizes) -> list[np.ndarray] | None:
    """The 2-D leaves ``<prefix>_i`` in leaf order, checked against the layer sizes."""
    idx = sorted(int(k[len(prefix) + 1:]) for k in arrays
                 if k.startswith(prefix + "_") and k[len(prefix) + 1:].isdigit())
    kernels = [np.asarray(arrays[f"{prefix}_{i}"]) for i in idx
               if np.ndim(arrays[f"{prefix}_{i}"]) == 2]
    if [k.size for k in kernels] != list(sizes):
        return None
    return kernels


def dense_kernels(run_dir, seed: int, sizes, prefix: str = "params") -> list[np.ndarray] | None:
    """The trained dense net's kernels (or the initial ones with ``prefix="init"``)."""
    d = load_dense(run_dir, seed)
    return None if d is None else kernels_from_leaves(d, prefix, sizes)


def retrained_path(run_dir, seed: int, name: str) -> Path:
    return seed_dir(run_dir, seed) / f"retrained_{name}.npz"


def _plain_names(path) -> tuple:
    names = tuple(key_name(k) for k in path)
    return names[:-1] if names and names[-1] == "value" else names


def bias_arrays(params: Any) -> list[np.ndarray | None]:
    """The bias next to each kernel (same key path with ``"bias"`` for ``"kernel"``), in the
    flat-axis layer order; None for a layer without one. Shapes ``(fan_out,)``."""
    leaves = {_plain_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    return [None if (b := leaves.get(_plain_names(k)[:-1] + ("bias",))) is None else np.asarray(b)
            for k in kernel_layout(params).paths]


def save_retrained(run_dir, seed: int, name: str, params: Any, history: dict,
                   record: dict | None = None) -> Path:
    """Write ``seed_K/retrained_<name>.npz``: kernels (``kernel_<l>``, ``(fan_in, fan_out)``,
    in the flat-axis layer order) and biases (``bias_<l>``, ``(fan_out,)``) of the retrained net
    and its per-epoch training history."""
    layout = kernel_layout(params)
    flat = np.asarray(flatten_kernels(params))
    arrays = {f"kernel_{i}": flat[layout.layer_slice(i)].reshape(shape)
              for i, shape in enumerate(layout.shapes)}
    for i, b in enumerate(bias_arrays(params)):
        if b is not None:
            arrays[f"bias_{i}"] = b
    arrays["train_accuracy_history"] = np.asarray(history.get("train_accuracy", []), float)
    arrays["loss_history"] = np.asarray(history.get("loss", []), float)
    if record is not None:
        arrays["test_accuracy"] = np.float64(record["test_accuracy"])
    path = retrained_path(run_dir, seed, name)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load_retrained(run_dir, seed: int, name: str) -> dict | None:
    """``{"kernels": [...], "biases": [...] or None, "train_accuracy_history": ..., ...}`` or
    None when not saved; ``biases`` is None for runs saved before biases were (and a layer
    without a bias has None in the list)."""
    d = load_npz(retrained_path(run_dir, seed, name))
    if d is None:
        return None
    n = sum(1 for k in d if k.startswith("kernel_"))
    out = {k: v for k, v in d.items() if not k.startswith(("kernel_", "bias_"))}
    out["kernels"] = [d[f"kernel_{i}"] for i in range(n)]
    has_bias = any(k.startswith("bias_") for k in d)
    out["biases"] = [d.get(f"bias_{i}") for i in range(n)] if has_bias else None
    return out


def run_names(results: dict) -> list[str]:
    """The run names present (``dense``, ``legcnet_ft``, ``random_pt``...) in a stable order."""
    order = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt",
             "magnitude_pt")
    names = {r.get("name", r["method"]) for r in results["runs"]}
    return [n for n in order if n in names] + sorted(names - set(order))
