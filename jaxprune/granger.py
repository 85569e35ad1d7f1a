"""Vectorized Granger causality tests, statsmodels-exact, for all weights at once.

For each lag p = 1..maxlag and each candidate cause x (one per weight), on the n - p rows that
have all lags (statsmodels ``lagmat2ds(..., trim="both")``, a separate sample per p):

- restricted model   y_t ~ [1, y_{t-1..t-p}]                 residual sum of squares ssr_r
- unrestricted model y_t ~ [1, y_{t-1..t-p}, x_{t-1..t-p}]   ssr_u, df_u = n - p - 2p - 1

and the four statistics of ``statsmodels.tsa.stattools.grangercausalitytests`` (see
spec/granger.md): ``ssr_ftest``, ``ssr_chi2test``, ``lrtest``, ``params_ftest``.

Numerical method (why it is fast)
---------------------------------
1. Every series is centred and scaled by its full-sample mean / std. All four statistics are
   invariant to this (the constant is in both models), and it keeps the cross products below
   well scaled.
2. Cross products of lagged copies, built once per series (:func:`jaxprune._linalg.lagged_gram`):
   Toeplitz structure gives every sum_t u_{t-i} v_{t-j} over the lag-``maxlag`` sample from
   2 * maxlag + 1 dot products plus head / tail corrections. Lag p's sample (rows p..n-1) adds the
   ``maxlag - p`` head rows back as a small outer product.
3. y is shared by all weights, so the restricted design Z = [1, y lags] is shared: its Gram is
   factored once per lag (W = chol(Z'Z)^-1). Frisch-Waugh-Lovell: per weight only the Schur
   complement G = X'X - (W Z'X)'(W Z'X) (p x p) and h = X'y - (W Z'X)' W Z'y remain, and
   ssr_r - ssr_u = h' G^-1 h is read off one unrolled Cholesky of [[G, h], [h', ssr_r]].
   ssr_r - ssr_u is computed directly (not as a difference), so small F are accurate.
4. No LAPACK: the tiny Cholesky factors are a fori_loop of plain jnp ops, batch axis last (see jaxprune/_linalg.py
   for the deadlock this avoids).

Conditioning: the method works on cross products (normal equations of the *projected* x-lags),
so its relative error grows like eps * cond([Z, X])^2 where statsmodels' (SVD) grows like
eps * cond. After centring and scaling, random-walk causes and AR(0.9) risk series stay far
inside float64's range (agreement ~1e-11 in the tests); a series whose x-lags are collinear with
[1, y-lags] to a relative pivot below ``collinear_tol`` (default 1e-10 in float64, 1e-4 in
float32) is reported as COLLINEAR with NaN statistics rather than a number of unknown accuracy.

Memory: per weight the kernel holds the series (n), three (maxlag+1)^2 cross-product blocks and
per-lag temporaries of O(maxlag^2): about 8 * (n + 4 * (maxlag + 1)^2) bytes in float64, ~9 KB
for n = 254, maxlag = 14 (XLA temporaries add a small multiple). Weights are processed in chunks
of ``chunk_size`` (``lax.map``), so peak memory is bounded by the chunk, not by the batch.

Degenerate input (per series, never an exception inside a batch): see :class:`Status`.
"""
from __future__ import annotations

import enum
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import betainc, gammaincc

from jaxprune._linalg import cholesky_bm, lagged_gram, tri_inv_lower_bm

__all__ = [
    "Status",
    "TestResult",
    "GrangerResult",
    "granger_tests",
    "min_pvalue",
    "fill_nan",
    "f_sf",
    "chi2_sf",
]

TESTS = ("ssr_ftest", "ssr_chi2test", "lrtest", "params_ftest")


class Status(enum.IntEnum):
    """Per-series outcome of :func:`granger_tests` (statistics are NaN unless OK).

    OK: all lags computed.
    NONFINITE: x (or a batched y) contains NaN or inf. Fill explicitly with :func:`fill_nan`
      first if that is the intended semantics (the original pipeline filled with 0).
    CONSTANT: some lag column of x (or of y, or y's target) is constant over its sample for some
      lag; statsmodels raises ``InfeasibleTestError`` for the whole call (exact equality test, as
      statsmodels' ``max == min``).
    COLLINEAR: the x-lags are (numerically) linearly dependent on [1, y-lags] and each other: a
      relative Cholesky pivot below ``collinear_tol``. statsmodels would fit a rank-deficient
      model by pinv and change df; we return NaN instead.
    PERFECT_FIT: the unrestricted model fits exactly (ssr_u < 256 eps max(tss, ssr_r));
      statsmodels raises ``InfeasibleTestError``.
    """

    OK = 0
    NONFINITE = 1
    CONSTANT = 2
    COLLINEAR = 3
    PERFECT_FIT = 4


class TestResult(NamedTuple):
    """One test for every series and lag.

    statistic, pvalue: (..., maxlag), lag 1 first.
    df_num: (maxlag,) int, numerator df (= the lag p) for F tests, the chi2 df for chi2 tests.
    df_denom: (maxlag,) int, denominator df n - 3p - 1 for F tests; None for chi2 tests.
    """

    statistic: jax.Array
    pvalue: jax.Array
    df_num: jax.Array
    df_denom: jax.Array | None


class GrangerResult(NamedTuple):
    """All four statsmodels tests; ``status`` (...) int8 of :class:`Status`; ``nobs`` (maxlag,)."""

    ssr_ftest: TestResult
    ssr_chi2test: TestResult
    lrtest: TestResult
    params_ftest: TestResult
    status: jax.Array
    nobs: jax.Array


# --------------------------------------------------------------------------------------------
# p-values (jax's betainc / gammaincc are accurate to ~1e-13 relative deep into the tails in
# float64: tested against scipy down to 1e-300; the complementary forms below avoid 1 - x).
# --------------------------------------------------------------------------------------------


def f_sf(f, dfn, dfd):
    """F(dfn, dfd) survival function: I_{dfd / (dfd + dfn f)}(dfd / 2, dfn / 2)."""
    f = jnp.asarray(f)
    dfn = jnp.asarray(dfn, f.dtype)
    dfd = jnp.asarray(dfd, f.dtype)
    x = dfd / (dfd + dfn * jnp.maximum(f, 0))
    return jnp.where(jnp.isnan(f), jnp.nan, betainc(dfd / 2, dfn / 2, x))


def chi2_sf(c, df):
    """Chi-square(df) survival function: Q(df / 2, c / 2)."""
    c = jnp.asarray(c)
    df = jnp.asarray(df, c.dtype)
    return jnp.where(jnp.isnan(c), jnp.nan, gammaincc(df / 2, jnp.maximum(c, 0) / 2))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def fill_nan(x, value=0.0):
    """Replace non-finite entries (windows with no Lyapunov estimate) by ``value``.

    The original pipeline filled missing LE windows with 0; making it explicit keeps
    :func:`granger_tests` honest (it reports NONFINITE for series that still hold NaN).
    Note a series that is entirely NaN becomes constant and is reported as CONSTANT.
    """
    x = jnp.asarray(x)
    return jnp.where(jnp.isfinite(x), x, jnp.asarray(value, x.dtype))


def _standardize(u):
    """Centre and scale each series (..., n) -> (..., n); a constant series is only centred."""
    mu = jnp.mean(u, -1, keepdims=True)
    c = u - mu
    sd = jnp.sqrt(jnp.mean(c * c, -1, keepdims=True))
    return c / jnp.where(sd > 0, sd, jnp.ones_like(sd))


def _constant_window(u, maxlag, with_target):
    """True where u is exactly constant on a window statsmodels uses as a lag column.

    Lag column j of lag p covers u[p-j : n-j]; every such window contains one of the lag-maxlag
    columns u[a : a + n - maxlag], a = 0..maxlag-1, so those are the ones to check. With
    ``with_target`` also the target window u[maxlag:] (tss == 0 in statsmodels).
    u: (..., n) -> (...) bool.
    """
    n = u.shape[-1]
    nz = (u[..., 1:] != u[..., :-1]).astype(jnp.int32)
    cs = jnp.concatenate([jnp.zeros(nz.shape[:-1] + (1,), jnp.int32), jnp.cumsum(nz, -1)], -1)
    w = n - maxlag - 1  # diffs inside a window of n - maxlag points
    starts = np.arange(maxlag)
    counts = cs[..., starts + w] - cs[..., starts]
    const = jnp.any(counts == 0, -1)
    if with_target:
        const = const | (cs[..., n - 1] - cs[..., maxlag] == 0)
    return const


def _einsum_shared(spec_shared, spec_batched, a, b):
    """einsum where ``a`` may carry a size-1 (shared) leading batch axis: then use a real dot."""
    if a.shape[0] == 1:
        return jnp.einsum(spec_shared, a[0], b)
    return jnp.einsum(spec_batched, a, b)


# --------------------------------------------------------------------------------------------
# the kernel on one chunk
# --------------------------------------------------------------------------------------------


def _bm(a):
    """(batch, ...) -> (..., batch): matrix axes first, batch last (contiguous vectors)."""
    return jnp.moveaxis(a, 0, -1)


def _lag_sums(u, lags, start):
    """S[..., j] = sum_{t=start}^{n-1} u[..., t - j], j = 0..lags, from one prefix sum."""
    n = u.shape[-1]
    cs = jnp.concatenate([jnp.zeros(u.shape[:-1] + (1,), u.dtype), jnp.cumsum(u, -1)], -1)
    j = np.arange(lags + 1)
    return cs[..., n - j] - cs[..., start - j]


def _heads(u, lags):
    """H[t, i, ...] = u[..., t - i] for head rows t = 0..lags-1, lags i = 0..lags (0 if t < i).

    Returns (lags, lags + 1, batch) batch-minor. Lag p's sample adds rows t = p..lags-1 of it,
    where every used entry (i <= p <= t) is a real value.
    """
    t = np.arange(lags)[:, None] - np.arange(lags + 1)[None, :]
    h = jnp.where(t >= 0, u[..., np.maximum(t, 0)], 0)
    return jnp.moveaxis(h, 0, -1)


def _chunk_kernel(y, x, maxlag, tol):
    """Statistics for one chunk.

    y: (1, n) shared or (B, n) batched, standardized, finite. x: (B, n) standardized, finite.
    Returns (delta, ssr_r, ssr_u, collinear, badfit): delta = ssr_r - ssr_u, ssr_r, ssr_u
    (B, maxlag); flags (B,) bool. Inside, matrices are batch-minor: (rows, cols, B).
    """
    n = x.shape[-1]
    L = maxlag
    dt = x.dtype
    eps = jnp.finfo(dt).eps
    nb = x.shape[0]
    # cross products over the common sample t = L..n-1, lags 0..L (index 0 = y_t, the target)
    tyy = _bm(lagged_gram(y, y, L, L))  # (L+1, L+1, By), shared when By == 1
    tyx = _bm(lagged_gram(y, x, L, L))  # (L+1, L+1, B)
    txx = _bm(lagged_gram(x, x, L, L))  # (L+1, L+1, B)
    s1y = _bm(_lag_sums(y, L, L))  # (L+1, By)
    s1x = _bm(_lag_sums(x, L, L))  # (L+1, B)
    yhd = _heads(y, L)  # (L, L+1, By)
    xhd = _heads(x, L)  # (L, L+1, B)

    deltas, ssrrs, ssrus = [], [], []
    collinear = jnp.zeros((nb,), bool)
    badfit = jnp.zeros((nb,), bool)
    for p in range(1, L + 1):
        nobs = n - p
        k = p + 1
        # lag p's sample is t = p..n-1: add head rows t = p..L-1 to the common-sample sums
        yh = yhd[p:, :k]
        xh = xhd[p:, :k]
        yy = tyy[:k, :k] + jnp.einsum("tib,tjb->ijb", yh, yh)
        s1y_p = s1y[:k] + jnp.sum(yh, 0)
        yx = tyx[:k, :k] + jnp.einsum("tib,tjb->ijb", yh, xh)
        s1x_p = s1x[:k] + jnp.sum(xh, 0)
        xx = txx[1:k, 1:k] + jnp.einsum("tib,tjb->ijb", xh[:, 1:], xh[:, 1:])

        # shared restricted design Z = [1, y_{t-1..t-p}]: Gram a, Z'y_t, factor once
        n_ = jnp.full((1, 1) + yy.shape[2:], float(nobs), dt)
        a = jnp.concatenate(
            [
                jnp.concatenate([n_, s1y_p[None, 1:]], 1),
                jnp.concatenate([s1y_p[1:, None], yy[1:, 1:]], 1),
            ],
            0,
        )  # (k, k, By)
        zy = jnp.concatenate([s1y_p[:1], yy[1:, 0]], 0)  # (k, By)
        la, _ = cholesky_bm(a)
        w = tri_inv_lower_bm(la)  # W Z'Z W' = I, so W Z' = Q'
        zt = jnp.sum(w * zy[None], 1)  # Q'y_t (k, By)
        ssr_r = yy[0, 0] - jnp.sum(zt * zt, 0)  # (By,)
        tss = yy[0, 0] - s1y_p[0] ** 2 / nobs

        # per weight (Frisch-Waugh-Lovell): Q'X, then the x-lag block projected off Z
        c = jnp.concatenate([s1x_p[None, 1:], yx[1:, 1:]], 0)  # Z'X (k, p, B)
        e = yx[0, 1:]  # X'y_t (p, B)
        if w.shape[-1] == 1:
            ct = jnp.einsum("ij,jqb->iqb", w[..., 0], c)
        else:
            ct = jnp.einsum("ijb,jqb->iqb", w, c)
        g = xx - jnp.einsum("ipb,iqb->pqb", ct, ct)  # X' M_Z X (p, p, B)
        h = e - jnp.sum(ct * zt[:, None], 0)  # X' M_Z y_t (p, B)
        ssr_rb = jnp.broadcast_to(ssr_r, (nb,))
        aug = jnp.concatenate(
            [
                jnp.concatenate([g, h[:, None]], 1),
                jnp.concatenate([h[None, :], ssr_rb[None, None]], 1),
            ],
            0,
        )  # (k, k, B)
        l, piv = cholesky_bm(aug)
        wv = l[p, :p]  # G^{-1/2} h
        delta = jnp.sum(wv * wv, 0)  # ssr_r - ssr_u, no cancellation
        ssr_u = ssr_rb - delta
        # relative pivot: share of each x-lag column not explained by [1, y-lags, earlier x-lags]
        rel = piv[:p] / jnp.diagonal(xx, axis1=0, axis2=1).T
        collinear = collinear | jnp.any(~(rel > tol), 0)
        # statsmodels: ssr_u / tss < eps. Our ssr_u = ssr_r - delta carries ~eps * ssr_r of
        # rounding, so an exact fit shows up as ssr_u within a few hundred eps of ssr_r's scale.
        badfit = badfit | ~(ssr_u > 256 * eps * jnp.broadcast_to(jnp.maximum(tss, ssr_r), (nb,)))
        deltas.append(delta)
        ssrrs.append(ssr_rb)
        ssrus.append(ssr_u)
    return jnp.stack(deltas, -1), jnp.stack(ssrrs, -1), jnp.stack(ssrus, -1), collinear, badfit


@functools.partial(jax.jit, static_argnames=("maxlag", "chunk_size", "tol"))
def _granger_jit(y, x, maxlag, chunk_size, tol):
    """y: (1, n) or (B, n); x: (B, n). Returns GrangerResult with leading axis B."""
    b, n = x.shape
    dt = x.dtype
    L = maxlag
    xfin = jnp.all(jnp.isfinite(x), -1)
    yfin = jnp.all(jnp.isfinite(y), -1)
    x0 = jnp.where(jnp.isfinite(x), x, 0)
    y0 = jnp.where(jnp.isfinite(y), y, 0)
    const = _constant_window(x0, L, False) | _constant_window(y0, L, True)
    xs = _standardize(x0)
    ys = _standardize(y0)

    nchunks = -(-b // chunk_size)
    pad = nchunks * chunk_size - b
    xs_p = jnp.pad(xs, ((0, pad), (0, 0))).reshape(nchunks, chunk_size, n)
    if ys.shape[0] == 1:
        fn = lambda xc: _chunk_kernel(ys, xc, L, tol)
        outs = lax.map(fn, xs_p)
    else:
        ys_p = jnp.pad(ys, ((0, pad), (0, 0))).reshape(nchunks, chunk_size, n)
        outs = lax.map(lambda a: _chunk_kernel(a[0], a[1], L, tol), (ys_p, xs_p))
    delta, ssr_r, ssr_u, collinear, badfit = (o.reshape((nchunks * chunk_size,) + o.shape[2:])[:b] for o in outs)

    status = jnp.full((b,), Status.OK, jnp.int8)
    status = jnp.where(badfit, jnp.int8(Status.PERFECT_FIT), status)
    status = jnp.where(collinear, jnp.int8(Status.COLLINEAR), status)
    status = jnp.where(const, jnp.int8(Status.CONSTANT), status)
    status = jnp.where(~(xfin & yfin), jnp.int8(Status.NONFINITE), status)
    ok = (status == Status.OK)[:, None]

    lagsi = np.arange(1, L + 1)
    nobs = n - lagsi
    dfd = nobs - 2 * lagsi - 1
    lags_f = jnp.asarray(lagsi, dt)
    nan = jnp.asarray(jnp.nan, dt)
    delta = jnp.where(ok, delta, nan)
    ssr_u = jnp.where(ok, ssr_u, nan)
    ssr_r = jnp.where(ok, ssr_r, nan)
    fstat = delta / ssr_u / lags_f * jnp.asarray(dfd, dt)
    chi2 = jnp.asarray(nobs, dt) * delta / ssr_u
    lr = -jnp.asarray(nobs, dt) * jnp.log1p(-delta / ssr_r)
    fp = f_sf(fstat, lags_f, jnp.asarray(dfd, dt))
    lagsj = jnp.asarray(lagsi)
    dfdj = jnp.asarray(dfd)
    ftest = TestResult(fstat, fp, lagsj, dfdj)
    return GrangerResult(
        ssr_ftest=ftest,
        ssr_chi2test=TestResult(chi2, chi2_sf(chi2, lags_f), lagsj, None),
        lrtest=TestResult(lr, chi2_sf(lr, lags_f), lagsj, None),
        # equal to ssr_ftest in exact arithmetic (Wald F of the x-lag block under OLS); we
        # report the more accurate ssr form for both, see tests for the statsmodels comparison
        params_ftest=ftest,
        status=status,
        nobs=jnp.asarray(nobs),
    )


def _is_concrete(a):
    return not isinstance(a, jax.core.Tracer)


def granger_tests(y, x, *, maxlag, chunk_size=256, collinear_tol=None):
    """Granger non-causality tests "x does not cause y" for a batch of candidate causes.

    Equivalent, per series, to ``statsmodels.tsa.stattools.grangercausalitytests(
    np.column_stack([y, x]), maxlag)`` (statistics, p-values and df for lags 1..maxlag).

    Args:
      y: the caused series (risk), shape (n,) shared by every x (the usual case), or (..., n)
        with the same leading shape as x. Must be finite (ValueError when concrete).
      x: the candidate causes (LE series, one per weight), shape (..., n).
      maxlag: static int >= 1 with n > 3 * maxlag + 1 (statsmodels' limit, df_u >= 1 at the
        largest lag); checked before any device work.
      chunk_size: weights per chunk (static); bounds memory, results do not depend on it.
      collinear_tol: relative pivot threshold for COLLINEAR; default 1e-10 (float64),
        1e-4 (float32).

    Returns:
      :class:`GrangerResult`; statistics and p-values (..., maxlag) in the input float dtype,
      ``status`` (...) int8 (:class:`Status`), NaN statistics where status != OK.

    jit: traceable with static ``maxlag`` / ``chunk_size``; value checks (finite y) are only
    done on concrete inputs, inside a trace a non-finite y gives status NONFINITE instead.
    """
    if isinstance(maxlag, bool) or not isinstance(maxlag, (int, np.integer)):
        raise TypeError(f"maxlag must be an int, got {type(maxlag).__name__}")
    maxlag = int(maxlag)
    if maxlag < 1:
        raise ValueError(f"maxlag must be >= 1, got {maxlag}")
    x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
    y = jnp.asarray(y) if not isinstance(y, jax.Array) else y
    for name, a in (("x", x), ("y", y)):
        if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)):
            raise TypeError(f"{name} must be real (float or int), got dtype {a.dtype}")
        if a.ndim < 1:
            raise ValueError(f"{name} must have a time axis, got shape {a.shape}")
    dt = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.float32
    x = x.astype(dt)
    y = y.astype(dt)
    n = x.shape[-1]
    if y.shape[-1] != n:
        raise ValueError(f"y and x must have the same length, got y {y.shape} and x {x.shape}")
    if y.ndim > 1 and y.shape != x.shape:
        raise ValueError(f"batched y must have x's shape {x.shape}, got {y.shape}")
    if n <= 3 * maxlag + 1:
        raise ValueError(
            f"series too short for maxlag={maxlag}: n={n} gives df_u = n - 3*maxlag - 1 = "
            f"{n - 3 * maxlag - 1} <= 0 at the largest lag; need n > 3*maxlag + 1 "
            f"(maxlag <= {(n - 2) // 3})"
        )
    if _is_concrete(y) and not bool(jnp.all(jnp.isfinite(y))):
        raise ValueError("y (the caused / risk series) contains NaN or inf")
    if collinear_tol is None:
        collinear_tol = 1e-10 if dt == jnp.float64 else 1e-4
    batch = x.shape[:-1]
    xb = x.reshape((-1, n))
    yb = y.reshape((1, n)) if y.ndim == 1 else y.reshape((-1, n))
    b = xb.shape[0]
    if b == 0:
        raise ValueError("x has an empty batch")
    chunk = int(max(1, min(chunk_size, b)))
    res = _granger_jit(yb, xb, maxlag=maxlag, chunk_size=chunk, tol=float(collinear_tol))
    return _reshape_result(res, batch)


def _reshape_result(res, batch):
    def fix(t):
        return t._replace(
            statistic=t.statistic.reshape(batch + t.statistic.shape[-1:]),
            pvalue=t.pvalue.reshape(batch + t.pvalue.shape[-1:]),
        )

    return GrangerResult(
        ssr_ftest=fix(res.ssr_ftest),
        ssr_chi2test=fix(res.ssr_chi2test),
        lrtest=fix(res.lrtest),
        params_ftest=fix(res.params_ftest),
        status=res.status.reshape(batch),
        nobs=res.nobs,
    )


def min_pvalue(result, test="ssr_chi2test", *, round_decimals=None, invalid=None):
    """The paper's decision statistic: the minimum p-value over lags, per series.

    Args:
      result: :class:`GrangerResult`.
      test: one of "ssr_ftest", "ssr_chi2test" (the paper's), "lrtest", "params_ftest".
      round_decimals: e.g. 4 to round p-values before the minimum as the original notebook did
        (reproduction only; it turns p < 5e-5 into 0).
      invalid: None keeps NaN for series whose status is not OK (policy-neutral); a float fills
        them (0.0 reproduces the original "keep the weight when the test fails", 1.0 "prune").

    Returns:
      (pmin, lag): pmin (...) float, lag (...) int32 the 1-based lag attaining it (0 if invalid).
    """
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    p = getattr(result, test).pvalue
    if round_decimals is not None:
        p = jnp.round(p, round_decimals)
    ok = result.status == Status.OK
    safe = jnp.where(ok[..., None], p, jnp.inf)
    lag = jnp.where(ok, jnp.argmin(safe, -1).astype(jnp.int32) + 1, 0)
    pmin = jnp.where(ok, jnp.min(safe, -1), jnp.nan)
    if invalid is not None:
        pmin = jnp.where(ok, pmin, jnp.asarray(invalid, pmin.dtype))
    return pmin, lag
