"""The flat weight axis of a mask: which layer each weight is in, layer filters, mask <-> flat.

Shared by `jaxprune.prune` (building masks) and `jaxprune.mask_stats` (describing them); kept in
its own module so that neither has to import the other. The public names are re-exported by
`jaxprune.prune`, their documented home.

A mask is a pytree with the structure of the params whose leaves are boolean arrays of the
leaves' shapes (True = keep); its *flat* form is the ``(n_weights,)`` bool array of the kernel
entries in `jaxprune.weights` order (layer by layer, row-major inside a kernel).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.weights import KernelLayout, flatten_kernels, kernel_layout, unflatten_kernels

PyTree = Any


def _as_layout(params_or_layout: PyTree | KernelLayout) -> KernelLayout:
    if isinstance(params_or_layout, KernelLayout):
        return params_or_layout
    return kernel_layout(params_or_layout)


def layer_ids(layout: KernelLayout) -> np.ndarray:
    """The layer of every flat weight: int64 array of shape ``(n_weights,)``."""
    sizes = np.diff(np.asarray(layout.offsets))
    return np.repeat(np.arange(layout.n_layers), sizes)


def _normalise_layers(layers: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    """Layer filter -> sorted tuple of non-negative layer indices (None = all layers)."""
    if layers is None:
        return tuple(range(n_layers))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    out = set()
    for layer in layers:
        layer = int(layer)
        if not -n_layers <= layer < n_layers:
            raise ValueError(f"layer {layer} out of range for a net with {n_layers} kernels")
        out.add(layer % n_layers)
    return tuple(sorted(out))


def analysed_weights(layout: KernelLayout, layers: Sequence[int] | None = None) -> np.ndarray:
    """Which flat weights a layer filter selects: bool ``(n_weights,)`` (None = all)."""
    return np.isin(layer_ids(layout), _normalise_layers(layers, layout.n_layers))


def per_layer_counts(flags: np.ndarray, layout: KernelLayout) -> np.ndarray:
    """True entries of a flat bool ``(n_weights,)`` per layer: int64 ``(n_layers,)``."""
    flags = np.asarray(flags, dtype=bool)
    return np.array([int(flags[layout.layer_slice(i)].sum()) for i in range(layout.n_layers)])


def mask_from_flat(keep: np.ndarray | jax.Array, params: PyTree) -> PyTree:
    """Flat keep decisions ``(n_weights,)`` bool -> mask pytree shaped like `params`.

    Kernel leaves get the decisions (reshaped to the kernel's shape); every other leaf (biases)
    is all True. Leaves are ``jnp`` bool arrays; no leaf is None.
    """
    return unflatten_kernels(jnp.asarray(keep, dtype=bool), params, other=True)


def flat_keep(mask: PyTree) -> np.ndarray:
    """The kernel entries of a mask pytree on the flat axis: NumPy bool ``(n_weights,)``."""
    return np.asarray(flatten_kernels(mask)).astype(bool)
