"""What a run reports about masks: kept / pruned counts, FLOPs, and the IoU of pruned sets.

Pure functions of mask pytrees (bool leaves, True = keep; see `jaxprune.prune`) or of flat
``(n_weights,)`` bool arrays. `iou` is the one intersection-over-union implementation:
`pruned_iou` (mask pytrees, optional layer filter) and ``jaxprune.analysis.iou`` (flat pruned
sets) are both built on it, and `chance_iou` is the IoU two random sets of given sizes have on
average. Every name here is also importable from `jaxprune.prune` (and `iou` / `chance_iou`
from `jaxprune.analysis`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxprune._flat_axis import _as_layout, analysed_weights, flat_keep, per_layer_counts
from jaxprune.weights import KernelLayout, kernel_layout, key_name

PyTree = Any


@dataclasses.dataclass(frozen=True)
class MaskSummary:
    """Kept and pruned kernel weights per layer (tuples of length ``n_layers``) and in total."""

    kept: tuple[int, ...]
    pruned: tuple[int, ...]

    @property
    def total(self) -> tuple[int, ...]:
        return tuple(k + p for k, p in zip(self.kept, self.pruned))

    @property
    def kept_total(self) -> int:
        return int(sum(self.kept))

    @property
    def pruned_total(self) -> int:
        return int(sum(self.pruned))

    @property
    def sparsity(self) -> float:
        return self.pruned_total / max(self.kept_total + self.pruned_total, 1)

    def as_dict(self) -> dict:
        return dict(
            kept=self.kept,
            pruned=self.pruned,
            total=self.total,
            kept_total=self.kept_total,
            pruned_total=self.pruned_total,
            sparsity=self.sparsity,
        )


def mask_summary(mask: PyTree) -> MaskSummary:
    """Kept / pruned kernel weights per layer of a mask pytree (biases are not counted)."""
    layout = kernel_layout(mask)
    keep = flat_keep(mask)
    kept = per_layer_counts(keep, layout)
    pruned = per_layer_counts(~keep, layout)
    return MaskSummary(tuple(int(k) for k in kept), tuple(int(p) for p in pruned))


@dataclasses.dataclass(frozen=True)
class Flops:
    """Forward-pass cost of one example through the dense layers, per layer and in total.

    Convention: one multiply-add per kept kernel weight (``macs``), counted as 2 FLOPs, plus one
    add per bias entry; activations, softmax and the loss are not counted. Biases are never
    pruned, so a unit whose incoming weights are all pruned still costs its bias add. Multiply by
    the batch size for a batch. This is the arithmetic a sparse kernel would need, not what a
    dense matmul with zeros executes.
    """

    flops: tuple[int, ...]
    macs: tuple[int, ...]

    @property
    def total(self) -> int:
        return int(sum(self.flops))

    @property
    def total_macs(self) -> int:
        return int(sum(self.macs))

    def as_dict(self) -> dict:
        return dict(flops=self.flops, macs=self.macs, total=self.total, total_macs=self.total_macs)


def _bias_sizes(tree: PyTree, layout: KernelLayout) -> tuple[int, ...]:
    """Size of the bias next to each kernel (same path with ``"bias"`` for ``"kernel"``), 0 if
    the layer has none."""
    sizes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = tuple(key_name(k) for k in path)
        if names and names[-1] == "value":
            names = names[:-1]
        sizes[names] = int(np.size(leaf))
    out = []
    for kpath in layout.paths:
        names = tuple(key_name(k) for k in kpath)
        if names[-1] == "value":
            names = names[:-1]
        out.append(sizes.get(names[:-1] + ("bias",), 0))
    return tuple(out)


def dense_flops(params_or_layout: PyTree | KernelLayout, *, bias: bool | None = None) -> Flops:
    """FLOPs of the dense forward pass per example (see `Flops` for the convention).

    Args:
      params_or_layout: params (or a mask) pytree, or a `KernelLayout`.
      bias: count bias adds. None (default): from the pytree, each layer's bias leaf if it has
        one; for a bare `KernelLayout`, assume every layer has a ``fan_out`` bias.
    """
    layout = _as_layout(params_or_layout)
    if bias is None:
        if isinstance(params_or_layout, KernelLayout):
            biases = tuple(int(s[-1]) for s in layout.shapes)
        else:
            biases = _bias_sizes(params_or_layout, layout)
    else:
        biases = tuple(int(s[-1]) if bias else 0 for s in layout.shapes)
    macs = tuple(int(np.prod(s)) for s in layout.shapes)
    return Flops(tuple(2 * m + b for m, b in zip(macs, biases)), macs)


def sparse_flops(mask: PyTree, *, bias: bool | None = None) -> Flops:
    """FLOPs of the sparse forward pass per example: 2 per kept kernel weight + bias adds.

    `bias` as in `dense_flops` (None: the bias leaves found in the mask pytree).
    """
    layout = kernel_layout(mask)
    keep = flat_keep(mask)
    macs = tuple(int(k) for k in per_layer_counts(keep, layout))
    if bias is None:
        biases = _bias_sizes(mask, layout)
    else:
        biases = tuple(int(s[-1]) if bias else 0 for s in layout.shapes)
    return Flops(tuple(2 * m + b for m, b in zip(macs, biases)), macs)


def iou(pruned_a: np.ndarray, pruned_b: np.ndarray) -> float:
    """Intersection over union of two boolean *pruned* sets (True = pruned), in [0, 1].

    Args:
      pruned_a, pruned_b: bool arrays of the same shape (e.g. ``(n_weights,)``).

    Two empty sets are identical: IoU 1.0 (as ``1 - scipy.spatial.distance.jaccard``).
    """
    a = np.asarray(pruned_a, bool)
    b = np.asarray(pruned_b, bool)
    if a.shape != b.shape:
        raise ValueError(f"sets have shapes {a.shape} and {b.shape}")
    union = int(np.sum(a | b))
    return 1.0 if union == 0 else int(np.sum(a & b)) / union


def chance_iou(k_a: Sequence[int] | int, k_b: Sequence[int] | int, n: Sequence[int] | int) -> float:
    """Approximate expected IoU of two independent uniformly random sets of sizes ``k_a`` and
    ``k_b`` (per layer, when sequences of equal length) out of ``n`` (per layer):
    ``E|A&B| = sum k_a k_b / n``, IoU ~ ``E|A&B| / (|A| + |B| - E|A&B|)``. 1.0 when both are
    empty."""
    ka, kb, nn = (np.atleast_1d(np.asarray(v, float)) for v in (k_a, k_b, n))
    inter = float(np.sum(np.where(nn > 0, ka * kb / np.maximum(nn, 1), 0.0)))
    union = float(ka.sum() + kb.sum()) - inter
    return 1.0 if union <= 0 else inter / union


def pruned_iou(mask_a: PyTree, mask_b: PyTree, *, layers: Sequence[int] | None = None) -> float:
    """Intersection over union of the *pruned* kernel weights of two mask pytrees, in [0, 1].

    Restricted to `layers` (kernel indices, negatives from the end) if given. Two masks that
    prune nothing are identical: IoU 1.0. `iou` on the flat pruned sets.
    """
    a, b = ~flat_keep(mask_a), ~flat_keep(mask_b)
    if a.shape != b.shape:
        raise ValueError(f"masks have {a.size} and {b.size} kernel weights")
    sel = analysed_weights(kernel_layout(mask_a), layers)
    return iou(a & sel, b & sel)
