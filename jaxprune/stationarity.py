"""Vectorized augmented Dickey-Fuller test (statsmodels ``adfuller`` defaults) and the original
notebook's stationarity step.

``adfuller(x)`` matches ``statsmodels.tsa.stattools.adfuller(x)`` with its defaults:
regression "c", autolag "AIC", maxlag = min(n // 2 - 2, ceil(12 * (n / 100) ** (1 / 4))).
With d_t = x_t - x_{t-1}:

1. lag search: for k = 0..maxlag, OLS of d_t on [1, x_{t-1}, d_{t-1..t-k}] over the *common*
   sample t = maxlag + 1 .. n - 1; AIC = N (log(2 pi ssr / N) + 1) + 2 (k + 2), smallest wins
   (first on ties, like statsmodels' ``min`` over (aic, k)). The regressions are nested, so one
   Cholesky factor of the augmented Gram gives every ssr_k.
2. final regression with the chosen k on its own, larger sample t = k + 1 .. n - 1; the
   statistic is the t-value of x_{t-1}, read off a Cholesky factor with x_{t-1} ordered last
   (unused lag columns are masked out, so the program has one static shape).
3. p-value: MacKinnon (1994) response surface, ``statsmodels.tsa.adfvalues.mackinnonp`` (N = 1,
   regression "c"), coefficients ported below.

Series are centred and scaled first (the t statistic and the AIC argmin are invariant).
Cost: O(n * maxlag^2) per series (explicit Gram), chunked over series; this step is optional and
not the hot path. Degenerate series (constant, non-finite) get NaN with ``status`` != 0.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

from jaxprune._linalg import cholesky_bm

__all__ = ["ADFResult", "adfuller", "adf_default_maxlag", "mackinnonp", "make_stationary", "StationaryPair"]

# statsmodels.tsa.adfvalues, regression "c", N = 1 (MacKinnon 1994), scaled as statsmodels does
_TAU_MAX_C = 2.74
_TAU_MIN_C = -18.83
_TAU_STAR_C = -1.61
_TAU_C_SMALLP = (2.1659, 1.4412, 0.038269)  # ascending powers, already * (1, 1, 1e-2)
_TAU_C_LARGEP = (1.7339, 0.93202, -0.12745, -0.010368)  # * (1, 1e-1, 1e-1, 1e-2)

# status codes (same meaning as jaxprune.granger.Status)
OK, NONFINITE, CONSTANT = 0, 1, 2


class ADFResult(NamedTuple):
    """statistic, pvalue (...) float; usedlag (...) int32; nobs (...) int32; status (...) int8."""

    statistic: jax.Array
    pvalue: jax.Array
    usedlag: jax.Array
    nobs: jax.Array
    status: jax.Array


def adf_default_maxlag(n):
    """statsmodels' default for regression "c": min(n // 2 - 2, ceil(12 * (n / 100) ** 0.25))."""
    maxlag = int(np.ceil(12.0 * np.power(n / 100.0, 1 / 4.0)))
    return min(n // 2 - 1 - 1, maxlag)


def _polyval_asc(coef, t):
    out = jnp.zeros_like(t)
    for c in coef[::-1]:
        out = out * t + c
    return out


def mackinnonp(stat):
    """MacKinnon's approximate p-value of an ADF t statistic (regression "c", N = 1)."""
    stat = jnp.asarray(stat)
    small = ndtr(_polyval_asc(_TAU_C_SMALLP, stat))
    large = ndtr(_polyval_asc(_TAU_C_LARGEP, stat))
    p = jnp.where(stat <= _TAU_STAR_C, small, large)
    p = jnp.where(stat > _TAU_MAX_C, 1.0, jnp.where(stat < _TAU_MIN_C, 0.0, p))
    return jnp.where(jnp.isnan(stat), jnp.nan, p)


def _adf_chunk(x, maxlag):
    """x: (B, n) finite. Returns (stat, usedlag) (B,)."""
    b, n = x.shape
    K = maxlag
    m = n - 1
    dt = x.dtype
    mu = jnp.mean(x, -1, keepdims=True)
    sd = jnp.std(x, -1, keepdims=True)
    sd = jnp.where(sd > 0, sd, 1)
    lev = (x - mu) / sd  # level x_{t-1} at index tau = t - 1
    d = jnp.diff(x, axis=-1)
    d = (d - jnp.mean(d, -1, keepdims=True)) / sd
    tau = np.arange(m)
    lagidx = tau[:, None] - np.arange(1, K + 1)[None, :]  # (m, K)
    dl = jnp.where(lagidx >= 0, d[:, np.maximum(lagidx, 0)], 0)  # (B, m, K)
    one = jnp.ones((b, m, 1), dt)
    levc = lev[:, :m, None]
    tgt = d[:, :, None]

    # 1. AIC search on the common sample tau = K..m-1: order [1, level, d_1..d_K, target]
    v = jnp.concatenate([one, levc, dl, tgt], -1)[:, K:]  # (B, N_a, K+3)
    na = m - K
    gram = jnp.einsum("bti,btj->ijb", v, v)
    l, _ = cholesky_bm(gram)
    last = l[K + 2, :]  # (K+3, B), target row
    sq = last * last
    # ssr with the first q regressors = sum_{i >= q} last_i^2; q = k + 2
    tail = jnp.cumsum(sq[::-1], 0)[::-1]  # tail[q] = sum_{i>=q}
    ks = np.arange(K + 1)
    ssr = tail[ks + 2]  # (K+1, B)
    aic = na * (jnp.log(2 * np.pi * ssr / na) + 1) + 2 * (ks[:, None] + 2)
    usedlag = jnp.argmin(aic, 0).astype(jnp.int32)  # first minimum, as statsmodels

    # 2. final regression, sample tau = k..m-1, order [1, d_1..d_K (masked > k), level, target]
    w = (tau[None, :] >= usedlag[:, None]).astype(dt)  # (B, m) row weights
    v2 = jnp.concatenate([one, dl, levc, tgt], -1) * w[:, :, None]
    g2 = jnp.einsum("bti,btj->ijb", v2, v2)  # rows are 0/1 weighted: w^2 = w
    active = jnp.concatenate(
        [jnp.ones((1, b), bool), (np.arange(1, K + 1)[:, None] <= usedlag[None, :]), jnp.ones((2, b), bool)], 0
    )  # (K+3, B)
    both = active[:, None] & active[None, :]
    eye = jnp.eye(K + 3, dtype=dt)[:, :, None]
    g2 = jnp.where(both, g2, 0) + jnp.where(active[None, :] | ~jnp.eye(K + 3, dtype=bool)[:, :, None], 0, eye)
    l2, _ = cholesky_bm(g2)
    nk = (m - usedlag).astype(dt)
    dof = nk - (usedlag.astype(dt) + 2)
    s = l2[K + 2, K + 2] / jnp.sqrt(dof)
    stat = l2[K + 2, K + 1] / s
    return stat, usedlag


@functools.partial(jax.jit, static_argnames=("maxlag", "chunk_size"))
def _adf_jit(x, maxlag, chunk_size):
    # float32 matmuls at full precision: GPUs default to TF32 / bf16 passes (H200: 18 %
    # statistic errors); float64 is unaffected
    with jax.default_matmul_precision("highest"):
        return _adf_jit_body(x, maxlag, chunk_size)


def _adf_jit_body(x, maxlag, chunk_size):
    b, n = x.shape
    fin = jnp.all(jnp.isfinite(x), -1)
    x0 = jnp.where(jnp.isfinite(x), x, 0)
    const = jnp.all(x0 == x0[:, :1], -1)
    nchunks = -(-b // chunk_size)
    pad = nchunks * chunk_size - b
    xp = jnp.pad(x0, ((0, pad), (0, 0)), mode="edge").reshape(nchunks, chunk_size, n)
    stat, used = lax.map(lambda c: _adf_chunk(c, maxlag), xp)
    stat = stat.reshape(-1)[:b]
    used = used.reshape(-1)[:b]
    status = jnp.where(~fin, jnp.int8(NONFINITE), jnp.where(const, jnp.int8(CONSTANT), jnp.int8(OK)))
    ok = status == OK
    stat = jnp.where(ok, stat, jnp.nan)
    return ADFResult(
        statistic=stat,
        pvalue=mackinnonp(stat),
        usedlag=jnp.where(ok, used, -1),
        nobs=jnp.where(ok, n - 1 - used, -1).astype(jnp.int32),
        status=status,
    )


def adfuller(x, *, maxlag=None, chunk_size=1024):
    """Vectorized ``statsmodels.tsa.stattools.adfuller(x)`` (regression "c", autolag "AIC").

    Args:
      x: (..., n) float series.
      maxlag: static int, default statsmodels' :func:`adf_default_maxlag`; must be <= n//2 - 2.
      chunk_size: series per chunk (memory bound), results do not depend on it.

    Returns:
      :class:`ADFResult` with leading shape (...). Constant or non-finite series: NaN statistic
      and p-value, usedlag -1, status CONSTANT (2) / NONFINITE (1) (statsmodels raises).
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim < 1:
        raise ValueError(f"x must have a time axis, got shape {x.shape}")
    n = x.shape[-1]
    if maxlag is None:
        maxlag = adf_default_maxlag(n)
        if maxlag < 0:
            raise ValueError(f"series too short for the ADF test: n={n}")
    elif maxlag > n // 2 - 2 or maxlag < 0:
        raise ValueError(f"maxlag={maxlag} must be in 0..n//2 - 2 = {n // 2 - 2} (n={n})")
    batch = x.shape[:-1]
    xb = x.reshape((-1, n))
    chunk = int(max(1, min(chunk_size, xb.shape[0])))
    r = _adf_jit(xb, maxlag=int(maxlag), chunk_size=chunk)
    return ADFResult(*(a.reshape(batch) for a in r))


class StationaryPair(NamedTuple):
    """Output of :func:`make_stationary`.

    y: (n - 1,) or (..., n - 1); x: (..., n - 1); y_differenced () / (...) bool;
    x_differenced (...) bool; adf_y, adf_x: the :class:`ADFResult` of the inputs.
    """

    y: jax.Array
    x: jax.Array
    y_differenced: jax.Array
    x_differenced: jax.Array
    adf_y: ADFResult
    adf_x: ADFResult


def make_stationary(y, x, *, alpha=0.05, maxlag=None):
    """The original notebook's stationarity step: difference once each series with ADF p > alpha.

    Alignment (static shapes in a batch): every output series has n - 1 points and entry k
    belongs to original time k + 1: a differenced series gives u[k+1] - u[k], an undifferenced
    one u[k+1] (its first observation is dropped). So y and x stay aligned whether either, both
    or neither was differenced. Series whose ADF failed (status != 0, p NaN) are not differenced.
    """
    y = jnp.asarray(y)
    x = jnp.asarray(x)
    ay = adfuller(y, maxlag=maxlag)
    ax = adfuller(x, maxlag=maxlag)
    dy = ay.pvalue > alpha
    dx = ax.pvalue > alpha
    ys = jnp.where(dy[..., None], jnp.diff(y, axis=-1), y[..., 1:])
    xs = jnp.where(dx[..., None], jnp.diff(x, axis=-1), x[..., 1:])
    return StationaryPair(ys, xs, dy, dx, ay, ax)
