"""Sparse (re)training with any optax optimizer: `masked_optimizer` keeps pruned weights at 0.

The mask is a pytree with the structure of the params and boolean leaves (True = keep), as
`jaxprune.prune.causal_mask`, `random_mask` and `magnitude_mask` return it; start from params
that are 0 at the pruned positions (`jaxprune.prune.apply_mask`). Every name here is also
importable from `jaxprune.prune`; ``masked`` is the deprecated name of `masked_optimizer`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any


def _check_same_structure(mask: PyTree, tree: PyTree, what: str) -> None:
    ms, ts = jax.tree.structure(mask), jax.tree.structure(tree)
    if ms != ts:
        raise ValueError(
            f"mask and {what} have different tree structures:\n  mask: {ms}\n  {what}: {ts}\n"
            "build the mask from the same kind of pytree (plain dict vs nnx.State)"
        )


def _zero_where_pruned(tree: PyTree, mask: PyTree) -> PyTree:
    # jnp.where, not multiplication: a NaN/inf gradient at a pruned position must not leak through
    return jax.tree.map(lambda x, m: jnp.where(m, x, jnp.zeros_like(x)), tree, mask)


class MaskedState(NamedTuple):
    """State of `masked_optimizer`: the inner optimizer's state and the mask (bool pytree, True = keep).

    The mask lives in the state so that a checkpoint of the optimizer state restores it with the
    sparse run, and so that a jitted step takes it as an ordinary array argument: changing the
    mask (same shapes) reuses the compiled step instead of recompiling.
    """

    inner_state: optax.OptState
    mask: PyTree


def masked_optimizer(inner: optax.GradientTransformation, mask: PyTree) -> optax.GradientTransformationExtraArgs:
    """Wrap any optax optimizer so that pruned weights stay exactly 0 (jaxpruner-style).

    ``update`` zeros the incoming gradients at pruned positions *before* the inner transform, so
    momentum / Adam moments never accumulate there, and zeros the outgoing updates at pruned
    positions, so nothing the inner transform adds (weight decay, noise, ...) moves a pruned
    weight. With params that are 0 at the pruned positions (`apply_mask`), ``optax.apply_updates``
    therefore leaves them at exactly 0 for every step. Where the mask is True the inner
    updates pass through unchanged (bit-identical to the unwrapped optimizer for an all-True mask).

    This is not ``optax.masked``: that one selects *which leaves* the inner transform runs on and
    passes the other leaves' updates (raw gradients) through untouched, with a per-leaf mask. Here
    the mask is per element, the inner transform runs on every leaf, and masked-out elements get
    a zero update.

    Args:
      inner: any ``optax.GradientTransformation`` (extra args are forwarded if it takes them).
      mask: bool pytree with the structure of the params (e.g. from `causal_mask`); stored in
        the state by ``init`` (see `MaskedState`).

    Returns:
      an ``optax.GradientTransformationExtraArgs``; jit-able.
    """
    inner = optax.with_extra_args_support(inner)
    mask = jax.tree.map(lambda m: jnp.asarray(m, dtype=bool), mask)

    def init_fn(params):
        _check_same_structure(mask, params, "params")
        # a copy per state: a train step may donate its state (GPU/TPU), which deletes the
        # buffers it holds, and the caller's mask must outlive that
        return MaskedState(inner_state=inner.init(params), mask=jax.tree.map(jnp.copy, mask))

    def update_fn(updates, state, params=None, **extra_args):
        grads = _zero_where_pruned(updates, state.mask)
        new_updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        new_updates = _zero_where_pruned(new_updates, state.mask)
        return new_updates, MaskedState(inner_state=inner_state, mask=state.mask)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# Deprecated name of `masked_optimizer`, kept for one release (a plain alias: the package's own
# call sites still use it, so a warning here would fire on every run).
masked = masked_optimizer
