"""Small dense linear algebra in plain ``jnp`` ops, batched over leading axes.

Why not ``jnp.linalg``: one jitted program holding many independent *batched* LAPACK calls
(``cholesky`` / ``solve_triangular`` per Granger lag) deadlocked on the 2-thread CPU pool once the
batch reached ~500 series (spec/granger.md, "Measured traps"). The matrices here are tiny
(at most ~20 x 20) and the batch is huge, so a Cholesky looping over columns in elementwise ops is
both safe (no LAPACK custom call at all) and vectorizes well.

Also: lagged cross products (:func:`lagged_gram`), built once per series and shared by every lag.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


def cholesky_bm(a):
    """Cholesky with the matrix axes first ("batch-minor"): a (k, k, *batch), lower triangle read.

    Batch-minor keeps every elementwise op a contiguous vector over the batch (the batch is the
    large axis), and a column update only writes one (k, *batch) slice. One ``fori_loop`` over
    columns keeps the compiled program small. Returns (l, piv):
    ``l`` (k, k, *batch), ``piv`` (k, *batch) raw pivots, a pivot <= 0 replaced by 1 in ``l``.
    """
    k = a.shape[0]
    rows = np.arange(k).reshape((k,) + (1,) * (a.ndim - 2))

    def body(j, carry):
        l, piv = carry
        lj = lax.dynamic_index_in_dim(l, j, axis=0, keepdims=True)  # row j: cols < j filled
        aj = lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)  # (k, *batch)
        c = aj - jnp.sum(l * lj, 1)
        pj = lax.dynamic_index_in_dim(c, j, axis=0, keepdims=True)
        safe = jnp.where(pj > 0, pj, jnp.ones_like(pj))
        col = jnp.where(rows >= j, c / jnp.sqrt(safe), jnp.zeros_like(c))
        l = lax.dynamic_update_index_in_dim(l, col, j, axis=1)
        piv = lax.dynamic_update_index_in_dim(piv, pj, j, axis=0)
        return l, piv

    init = (jnp.zeros_like(a), jnp.zeros(a.shape[1:], a.dtype))
    return lax.fori_loop(0, k, body, init)


def tri_inv_lower_bm(l):
    """Inverse of lower-triangular matrices, matrix axes first: l (k, k, *batch)."""
    k = l.shape[0]
    eye = jnp.eye(k, dtype=l.dtype).reshape((k, k) + (1,) * (l.ndim - 2))

    def body(i, w):
        li = lax.dynamic_index_in_dim(l, i, axis=0, keepdims=False)  # (k, *batch)
        ei = lax.dynamic_index_in_dim(eye, i, axis=0, keepdims=False)
        lii = lax.dynamic_index_in_dim(li, i, axis=0, keepdims=True)
        # rows >= i of w are still zero, so the full sum only runs over rows < i
        r = (ei - jnp.sum(li[:, None] * w, 0)) / lii
        return lax.dynamic_update_index_in_dim(w, r, i, axis=0)

    return lax.fori_loop(0, k, body, jnp.zeros_like(l))


def _diag_prefix_sum(k):
    """Inclusive prefix sum along the main-diagonal direction of (..., m, m) arrays.

    out[i, j] = sum_{s >= 0} k[i - s, j - s]; Hillis-Steele doubling, log2(m) shifted adds.
    """
    m = k.shape[-1]
    s = 1
    while s < m:
        shifted = jnp.pad(k[..., : m - s, : m - s], [(0, 0)] * (k.ndim - 2) + [(s, 0), (s, 0)])
        k = k + shifted
        s *= 2
    return k


def lagged_gram(u, v, lags, start):
    """Cross products of lagged copies of two series over a common sample.

    T[..., i, j] = sum_{t=start}^{n-1} u[..., t - i] * v[..., t - j]   for i, j in 0..lags.

    Only the first row and column are full dot products (2 * lags + 1 of them); the rest follows
    from T[i+1, j+1] = T[i, j] + u[start-1-i] v[start-1-j] - u[n-1-i] v[n-1-j] (one row enters at
    the head, one leaves at the tail), accumulated along diagonals. Cost O(n * lags + lags^2)
    per pair instead of O(n * lags^2).

    Args:
      u, v: (..., n) arrays, broadcastable against each other in the leading axes.
      lags: static int L >= 0.
      start: static int, first sample row, start >= L.

    Returns:
      (..., L + 1, L + 1) array.
    """
    n = u.shape[-1]
    assert v.shape[-1] == n and start >= lags
    width = n - start
    row0 = [jnp.sum(u[..., start:] * v[..., start - d : start - d + width], -1) for d in range(lags + 1)]
    col0 = [jnp.sum(u[..., start - d : start - d + width] * v[..., start:], -1) for d in range(lags + 1)]
    # rc[L + d] = T[0, d] (d >= 0), rc[L - d] = T[d, 0]
    rc = jnp.stack(col0[:0:-1] + row0, axis=-1)
    idx = np.arange(lags + 1)
    base = rc[..., lags + idx[None, :] - idx[:, None]]
    if lags == 0:
        return base
    # K[i, j] for i, j in 0..L-1, placed at [i+1, j+1]: change from T[i, j] to T[i+1, j+1]
    uh = u[..., start - 1 - np.arange(lags)]
    vh = v[..., start - 1 - np.arange(lags)]
    ut = u[..., n - 1 - np.arange(lags)]
    vt = v[..., n - 1 - np.arange(lags)]
    kk = uh[..., :, None] * vh[..., None, :] - ut[..., :, None] * vt[..., None, :]
    kk = jnp.pad(kk, [(0, 0)] * (kk.ndim - 2) + [(1, 0), (1, 0)])
    return base + _diag_prefix_sum(kk)
