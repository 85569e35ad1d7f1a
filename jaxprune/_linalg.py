"""Small dense linear algebra in plain ``jnp`` ops, batched over leading axes.

Why not ``jnp.linalg``: one jitted program holding many independent *batched* LAPACK calls
(``cholesky`` / ``solve_triangular`` per Granger lag) deadlocked on the 2-thread CPU pool once the
batch reached ~500 series (docs/granger.md, "Numerical method"). The matrices here are tiny
(at most ~20 x 20) and the batch is huge, so a Cholesky looping over columns in elementwise ops is
both safe (no LAPACK custom call at all) and vectorizes well.

Also: lagged cross products (:func:`lagged_gram`), built once per series and shared by every lag.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax


def cholesky_bm(a, ncols=None):
    """Cholesky with the matrix axes first ("batch-minor"): a (k, k, *batch), lower triangle read.

    Batch-minor keeps every elementwise op a contiguous vector over the batch (the batch is the
    large axis), and a column update only writes one (k, *batch) slice. One ``fori_loop`` over
    columns keeps the compiled program small. Returns (l, piv):
    ``l`` (k, k, *batch), ``piv`` (k, *batch) raw pivots, a pivot <= 0 replaced by 1 in ``l``.

    ``ncols`` (a static or traced int <= k, default k): factor only the first ``ncols`` columns
    (rows below are still updated, so ``l[ncols:, :ncols]`` holds the solved off-diagonal block
    and columns >= ncols stay 0). With a traced ``ncols`` the loop has a dynamic trip count, so
    one compiled program serves every lag of a padded system.
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
    return lax.fori_loop(0, k if ncols is None else ncols, body, init)


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


def qr_r_bm(a, active=None):
    """R factor of a thin QR, by classical Gram-Schmidt with one reorthogonalization (CGS2).

    a: (m, k, *batch) (rows, columns first, batch last). CGS2 gives a Q orthonormal to working
    precision and a backward-stable R (no squaring of the condition number, unlike a Cholesky of
    a'a), so it is used for the *shared* restricted design of the Granger tests, where cost does
    not matter. ``active`` (k,) bool (optional, may be traced): an inactive column must be zero
    in ``a``; it gets R[j, j] = 1 and a zero Q column, so padded systems keep a fixed shape and
    R's inverse is the identity on the padding. A column with zero residual gets R[j, j] = 1 too
    (statsmodels would use a pseudo-inverse; such designs are flagged by the caller).
    Returns r (k, k, *batch), upper triangular.
    """
    m, k = a.shape[:2]
    bshape = a.shape[2:]
    if active is None:
        active = jnp.ones((k,), bool)

    def body(j, carry):
        q, r = carry
        v = lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)  # (m, *batch)
        c = jnp.sum(q * v[:, None], 0)  # (k, *batch); columns >= j of q are zero
        v = v - jnp.sum(q * c[None], 1)
        c2 = jnp.sum(q * v[:, None], 0)
        v = v - jnp.sum(q * c2[None], 1)
        c = c + c2
        nrm = jnp.sqrt(jnp.sum(v * v, 0))
        act = active[j]
        ok = act & (nrm > 0)
        safe = jnp.where(ok, nrm, jnp.ones_like(nrm))
        qj = jnp.where(ok, v / safe, jnp.zeros_like(v))
        ej = (np.arange(k) == j).reshape((k,) + (1,) * len(bshape))
        col = jnp.where(ej, safe, jnp.where(act, c, jnp.zeros_like(c)))
        q = lax.dynamic_update_index_in_dim(q, qj, j, axis=1)
        r = lax.dynamic_update_index_in_dim(r, col, j, axis=1)
        return q, r

    init = (jnp.zeros_like(a), jnp.zeros((k, k) + bshape, a.dtype))
    return lax.fori_loop(0, k, body, init)[1]


def lagged_gram_bl(u, v, lags, start):
    """:func:`lagged_gram` with time first and batch last: u (n, *bu), v (n, *bv) -> (L+1, L+1, *b).

    T[i, j, ...] = sum_{t=start}^{n-1} u[t - i, ...] * v[t - j, ...]; the batch axes broadcast
    (a shared series has size-1 batch axes). Same Toeplitz recurrence as :func:`lagged_gram`:
    2 * lags + 1 dot products over time (reductions over the leading axis, contiguous in the
    batch) plus O(lags^2) head / tail corrections.
    """
    n = u.shape[0]
    assert v.shape[0] == n and start >= lags
    d = np.arange(lags + 1)
    us, vs = u[start:], v[start:]
    row0 = jnp.stack([jnp.sum(us * v[start - k : n - k], 0) for k in d])  # T[0, d]
    col0 = jnp.stack([jnp.sum(u[start - k : n - k] * vs, 0) for k in d])  # T[d, 0]
    rc = jnp.concatenate([col0[:0:-1], row0], 0)  # rc[L + d] = T[0, d], rc[L - d] = T[d, 0]
    base = rc[lags + d[None, :] - d[:, None]]
    if lags == 0:
        return base
    uh = u[start - 1 - np.arange(lags)]
    vh = v[start - 1 - np.arange(lags)]
    ut = u[n - 1 - np.arange(lags)]
    vt = v[n - 1 - np.arange(lags)]
    kk = uh[:, None] * vh[None, :] - ut[:, None] * vt[None, :]
    kk = jnp.pad(kk, [(1, 0), (1, 0)] + [(0, 0)] * (kk.ndim - 2))
    # inclusive prefix sum along the main diagonal (Hillis-Steele doubling)
    m = kk.shape[0]
    s = 1
    while s < m:
        kk = kk + jnp.pad(kk[: m - s, : m - s], [(s, 0), (s, 0)] + [(0, 0)] * (kk.ndim - 2))
        s *= 2
    return base + kk


def cholesky_unrolled_bm(a):
    """:func:`cholesky_bm` of all k columns, unrolled at trace time: a (k, k, *batch).

    Column j only sums over the j columns already factored (static slices), so the work is the
    triangular k^3 / 6 per matrix and there is no loop to dispatch; meant for k <~ 20.
    Returns (l, piv) as :func:`cholesky_bm` (a pivot <= 0 replaced by 1 in ``l``).
    """
    k = a.shape[0]
    cols, pivs = [], []
    for j in range(k):
        c = a[j:, j]  # (k - j, *batch), rows >= j
        if j:
            lj = jnp.stack([col[j - i] for i, col in enumerate(cols)], 0)  # l[j, :j], (j, *batch)
            lo = jnp.stack([col[j - i :] for i, col in enumerate(cols)], 0)  # l[j:, :j] (j, k-j, ...)
            c = c - jnp.sum(lo * lj[:, None], 0)
        pj = c[0]
        safe = jnp.where(pj > 0, pj, jnp.ones_like(pj))
        cols.append(c / jnp.sqrt(safe))  # column j, rows j..k-1
        pivs.append(pj)
    l = jnp.stack([jnp.concatenate([jnp.zeros((j,) + a.shape[2:], a.dtype), col], 0) for j, col in enumerate(cols)], 1)
    return l, jnp.stack(pivs, 0)
