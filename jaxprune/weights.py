"""The flat weight index: how every kernel weight of a params pytree maps to one integer.

Every later stage (trajectory recording, Lyapunov and Granger kernels, masks) works on a flat
axis of `n_weights` kernel weights. This module is the one place that defines that axis:

* kernel leaves are the leaves whose last key is ``"kernel"`` (biases and other leaves are never
  recorded or pruned), taken in the pytree's flattening order (for the MLP: layer 0, 1, ...);
* inside a kernel of shape ``(fan_in, fan_out)`` weights are taken row-major, so flat index
  ``offset[layer] + row * fan_out + col`` is the weight from input unit ``row`` to output unit
  ``col`` of that layer.

`weight_index` returns the ``(layer, row, col)`` triple of every flat position.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

KERNEL_NAME = "kernel"


def key_name(key: Any) -> Any:
    """The plain name of one jax key-path entry (DictKey, GetAttrKey, SequenceKey...)."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key


def is_kernel_path(path: tuple) -> bool:
    """True when a leaf's key path names a kernel (its last named key is ``"kernel"``).

    nnx ``State`` paths end in ``GetAttrKey('value')`` after the variable name; plain dicts end
    in the name itself. Both are recognised.
    """
    names = [key_name(k) for k in path]
    if names and names[-1] == "value":
        names = names[:-1]
    return bool(names) and names[-1] == KERNEL_NAME


class KernelLayout(NamedTuple):
    """Where each kernel leaf sits on the flat weight axis.

    Attributes:
      paths: key paths of the kernel leaves, in flat order.
      shapes: their shapes, ``(fan_in, fan_out)`` for dense layers.
      offsets: start of each kernel on the flat axis; ``offsets[-1] == n_weights``.
    """

    paths: tuple
    shapes: tuple
    offsets: tuple

    @property
    def n_weights(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_layers(self) -> int:
        return len(self.shapes)

    def layer_slice(self, layer: int) -> slice:
        """The slice of the flat axis that holds `layer`'s kernel."""
        return slice(self.offsets[layer], self.offsets[layer + 1])


def kernel_layout(params: PyTree) -> KernelLayout:
    """The `KernelLayout` of a params pytree (nnx State or nested dict of arrays)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    paths, shapes, offsets = [], [], [0]
    for path, leaf in leaves:
        if is_kernel_path(path):
            paths.append(path)
            shapes.append(tuple(np.shape(leaf)))
            offsets.append(offsets[-1] + int(np.prod(np.shape(leaf))))
    if not paths:
        raise ValueError("params hold no leaf named 'kernel': nothing to record or prune")
    return KernelLayout(tuple(paths), tuple(shapes), tuple(offsets))


def flatten_kernels(params: PyTree) -> jax.Array:
    """All kernel weights as one vector of shape ``(n_weights,)`` in the flat order.

    Traceable: use it inside jitted training steps to record the weights.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    parts = [jnp.ravel(leaf) for path, leaf in leaves if is_kernel_path(path)]
    if not parts:
        raise ValueError("params hold no leaf named 'kernel': nothing to record or prune")
    return jnp.concatenate(parts)


def unflatten_kernels(flat: jax.Array, like: PyTree, *, other: Any = None) -> PyTree:
    """Build a pytree shaped like `like` whose kernels come from `flat` (``(n_weights,)``).

    Non-kernel leaves become ``jnp.full_like(leaf, other, dtype=flat.dtype)`` when `other` is
    given, else they are copied from `like`. With ``other=True`` and a boolean `flat` this turns
    per-weight decisions into a mask pytree (biases always kept); no leaf is ever None.
    """
    flat = jnp.asarray(flat)
    layout = kernel_layout(like)
    if flat.shape != (layout.n_weights,):
        raise ValueError(f"flat has shape {flat.shape}, expected ({layout.n_weights},) for these params")
    kernel_iter = iter(range(layout.n_layers))

    def build(path, leaf):
        if is_kernel_path(path):
            i = next(kernel_iter)
            return flat[layout.offsets[i] : layout.offsets[i + 1]].reshape(layout.shapes[i])
        if other is None:
            return leaf
        return jnp.full(np.shape(leaf), other, dtype=flat.dtype)

    return jax.tree_util.tree_map_with_path(build, like)


def weight_index(params_or_layout: PyTree | KernelLayout) -> np.ndarray:
    """The ``(layer, row, col)`` of every flat weight: int array of shape ``(n_weights, 3)``."""
    layout = params_or_layout if isinstance(params_or_layout, KernelLayout) else kernel_layout(params_or_layout)
    rows = []
    for layer, shape in enumerate(layout.shapes):
        if len(shape) != 2:
            raise ValueError(f"kernel {layer} has shape {shape}; only 2-D dense kernels are indexed")
        r, c = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        rows.append(np.stack([np.full(r.size, layer), r.ravel(), c.ravel()], axis=1))
    return np.concatenate(rows).astype(np.int64)
