"""Vectorized Granger causality tests, statsmodels-exact, for all weights at once.

:func:`granger_tests` ``(y (n,) or (..., n), x (..., n))`` -> :class:`GrangerResult`: for every
series and lag ``p = 1..maxlag`` the four statistics of
``statsmodels.tsa.stattools.grangercausalitytests(np.column_stack([y, x]), maxlag)``
(``ssr_ftest``, ``ssr_chi2test``, ``lrtest``, ``params_ftest``; statistic and p-value
``(..., maxlag)``), with a per-series :class:`Status` (``jaxprune.GrangerStatus``) instead of an
exception mid-batch. :class:`GrangerParams` holds ``maxlag`` and the decision ``test`` as one
hashable value (``params=`` instead of ``maxlag=`` / ``test=``). :func:`min_pvalue` is the paper's
decision statistic (minimum p over lags), :func:`fill_nan` the explicit NaN fill.

How it is fast and accurate (shared restricted QR per lag, Toeplitz cross products,
Frisch-Waugh-Lovell with one unrolled Cholesky per weight and lag, lags padded only to their
group's largest lag with one compiled scan body per group, no LAPACK, closed-form p-values and a
continued fraction for odd-lag F p-values), its conditioning, and the status codes: docs/granger.md. Memory
(about ``8 * (n + 4 * (maxlag + 1)**2)`` bytes per weight, bounded by ``chunk_size``):
docs/scaling.md.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import betainc, gammaincc
from jax.typing import ArrayLike

from jaxprune._linalg import cholesky_unrolled_bm, lagged_gram_bl, qr_r_bm, tri_inv_lower_bm

__all__ = [
    "Status",
    "GrangerParams",
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


@dataclasses.dataclass(frozen=True)
class GrangerParams:
    """The Granger settings as one hashable value (usable as one static ``jax.jit`` argument).

    maxlag: lags 1..maxlag are tested (int >= 1; :func:`granger_tests` also needs the series
      length n > 3 * maxlag + 1). Default 14, the paper's.
    test: the statistic whose minimum p-value over lags decides (:func:`min_pvalue`), one of
      ``TESTS``; default "ssr_chi2test", the paper's.

    :func:`granger_tests` takes ``params=GrangerParams(...)`` as an alternative to ``maxlag=``
    (giving both is an error); :func:`min_pvalue` takes it as an alternative to ``test=``.
    """

    maxlag: int = 14
    test: str = "ssr_chi2test"

    def __post_init__(self):
        if isinstance(self.maxlag, bool) or not isinstance(self.maxlag, (int, np.integer)):
            raise TypeError(f"maxlag must be an int, got {type(self.maxlag).__name__}")
        if self.maxlag < 1:
            raise ValueError(f"maxlag must be >= 1, got {self.maxlag}")
        if self.test not in TESTS:
            raise ValueError(f"test must be one of {TESTS}, got {self.test!r}")


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


def f_sf(f: ArrayLike, dfn: ArrayLike, dfd: ArrayLike) -> jax.Array:
    """F(dfn, dfd) survival function: I_{dfd / (dfd + dfn f)}(dfd / 2, dfn / 2).

    Args:
      f: F statistics, any shape; NaN stays NaN.
      dfn, dfd: numerator / denominator degrees of freedom, broadcastable to ``f``.

    Returns:
      ``P(F > f)`` in the broadcast shape of the arguments.
    """
    f = jnp.asarray(f)
    dfn = jnp.asarray(dfn, f.dtype)
    dfd = jnp.asarray(dfd, f.dtype)
    x = dfd / (dfd + dfn * jnp.maximum(f, 0))
    return jnp.where(jnp.isnan(f), jnp.nan, betainc(dfd / 2, dfn / 2, x))


def chi2_sf(c: ArrayLike, df: ArrayLike) -> jax.Array:
    """Chi-square(df) survival function: Q(df / 2, c / 2).

    Args:
      c: chi-square statistics, any shape; NaN stays NaN.
      df: degrees of freedom, broadcastable to ``c``.

    Returns:
      ``P(X > c)`` in the broadcast shape of the arguments.
    """
    c = jnp.asarray(c)
    df = jnp.asarray(df, c.dtype)
    return jnp.where(jnp.isnan(c), jnp.nan, gammaincc(df / 2, jnp.maximum(c, 0) / 2))


def _chi2_sf_int(c, df):
    """chi2_sf for static integer df per last-axis column (df: numpy ints, shape (m,)).

    Closed forms (a finite sum of positive terms, no cancellation, no iteration):
    df = 2k:     Q = sum_{j<k} e^{-z} z^j / j!,  z = c / 2;
    df = 2k + 1: Q = erfc(sqrt z) + sum_{j<k} e^{-z} z^{j+1/2} / Gamma(j + 3/2).
    Each term is exp of a sum evaluated in float, so the relative error is ~eps * (z + j |log z|)
    (~1e-13 at p ~ 1e-300). Much cheaper than gammaincc's continued fraction.
    """
    c = jnp.asarray(c)
    df = np.asarray(df, np.int64)
    half = (df % 2) * 0.5  # 0 (even) or 1/2 (odd)
    k = df // 2
    jmax = int(max(1, k.max()))
    j = np.arange(jmax)
    lg = np.array([[math.lgamma(jj + h + 1) for jj in j] for h in half])  # (m, J)
    live = j[None, :] < k[:, None]
    z = jnp.maximum(c, 0) / 2
    pos = z > 0
    logz = jnp.log(jnp.where(pos, z, 1))[..., None]
    dt = c.dtype
    expo = -z[..., None] + jnp.asarray(j[None, :] + half[:, None], dt) * logz - jnp.asarray(lg, dt)
    terms = jnp.where(live & (pos[..., None] | ((j == 0)[None, :] & (half == 0)[:, None])), jnp.exp(expo), 0)
    q = jnp.sum(terms, -1) + jnp.where(half > 0, lax.erfc(jnp.sqrt(z)), jnp.zeros((), dt))
    q = jnp.where(pos, q, 1)
    q = jnp.where(jnp.isposinf(c), 0, q)
    return jnp.where(jnp.isnan(c), jnp.nan, q)


def _f_sf_cf(f, dfn, dfd, max_iter=300):
    """F survival function I_x(dfd / 2, dfn / 2) by its continued fraction (DLMF 8.17.22).

    f: (..., m) finite or not, >= 0; dfn, dfd: numpy ints (m,) (static, per last-axis column).
    Modified Lentz as ``jax.scipy.special.betainc``, but (i) both x = dfd / (dfd + dfn f) and
    1 - x = dfn f / (dfd + dfn f) are formed without cancellation, (ii) log B(a, b) is a numpy
    constant per column, and (iii) each element stops (keeps its value) once |step - 1| <= 4 eps,
    so its p-value does not depend on the rest of the batch; the loop ends when every element
    has stopped (``betainc`` asks for < eps / 2, which a step rounding to 1 +- eps never meets, so it runs
    its full 600 iterations: 5 us per value, most of the Granger p-value time). NaN elements do
    not hold the loop. Where x > (a + 1) / (a + b + 2) the symmetric form 1 - I_{1-x}(b, a) is
    used (the fraction converges fast there; the result is >~ 0.4, so no cancellation).
    """
    dt = f.dtype
    eps = float(jnp.finfo(dt).eps)
    tiny = float(jnp.finfo(dt).tiny) * 1e10
    n1 = jnp.asarray(dfn, dt)
    n2 = jnp.asarray(dfd, dt)
    u = n1 * f
    den = n2 + u
    x = n2 / den
    xc = u / den
    logx = -jnp.log1p(u / n2)
    logxc = jnp.log(u) - jnp.log(den)  # -inf at f = 0 (then the swap gives sf = 1)
    a0 = jnp.asarray(dfd / 2.0, dt)
    b0 = jnp.asarray(dfn / 2.0, dt)
    lb = [math.lgamma(d2 / 2) + math.lgamma(d1 / 2) - math.lgamma((d1 + d2) / 2) for d1, d2 in zip(dfn, dfd)]
    lbeta = jnp.asarray(lb, dt)
    swap = x > (a0 + 1) / (a0 + b0 + 2)
    a = jnp.where(swap, b0, a0)
    b = jnp.where(swap, a0, b0)
    xx = jnp.where(swap, xc, x)
    front = jnp.exp(a0 * logx + b0 * logxc - lbeta) / a  # x^a (1-x)^b / (a B), either way round
    live0 = ~jnp.isnan(f)

    def clamp(v):
        return jnp.where(jnp.abs(v) < tiny, tiny, v)

    c = jnp.ones_like(xx)
    d = 1 / clamp(1 - (a + b) * xx / (a + 1))
    h = d

    def cond(carry):
        m, _, _, _, live = carry
        return (m <= max_iter) & jnp.any(live)

    def body(carry):
        m, c0, d0, h0, live = carry
        mf = m.astype(dt)
        num = mf * (b - mf) * xx / ((a + 2 * mf - 1) * (a + 2 * mf))
        d = 1 / clamp(1 + num * d0)
        c = clamp(1 + num / c0)
        h = h0 * d * c
        num = -(a + mf) * (a + b + mf) * xx / ((a + 2 * mf) * (a + 2 * mf + 1))
        d = 1 / clamp(1 + num * d)
        c = clamp(1 + num / c)
        step = d * c
        h = h * step
        # a converged element keeps its value: its result never depends on how long the other
        # elements of the batch keep the loop running
        keep = lambda new, old: jnp.where(live, new, old)  # noqa: E731
        return m + 1, keep(c, c0), keep(d, d0), keep(h, h0), live & (jnp.abs(step - 1) > 4 * eps)

    h = lax.while_loop(cond, body, (jnp.asarray(1), c, d, h, live0))[3]
    ib = front * h
    return jnp.where(swap, 1 - ib, ib)


def _f_sf_int(f, dfn, dfd):
    """f_sf for static integer (dfn, dfd) per last-axis column (numpy ints, shape (m,)).

    Even dfn = 2k (Abramowitz & Stegun 26.6.4), a finite sum of positive terms:
    Q = sum_{j<k} Gamma(a + j) / (Gamma(a) j!) x^a (1 - x)^j, a = dfd / 2, x = dfd / (dfd + dfn f),
    log x and log(1 - x) taken without cancellation. Odd dfn: the continued fraction
    :func:`_f_sf_cf` on those columns only.
    """
    f = jnp.asarray(f)
    dfn = np.asarray(dfn, np.int64)
    dfd = np.asarray(dfd, np.int64)
    out = jnp.zeros_like(f)
    ev = np.nonzero(dfn % 2 == 0)[0]
    od = np.nonzero(dfn % 2 == 1)[0]
    fc = jnp.maximum(f, 0)
    if od.size:
        out = out.at[..., od].set(_f_sf_cf(fc[..., od], dfn[od], dfd[od]))
    if ev.size:
        fe = fc[..., ev]
        a = dfd[ev] / 2.0
        k = dfn[ev] // 2
        jmax = int(k.max())
        j = np.arange(jmax)
        lc = np.array([[math.lgamma(aa + jj) - math.lgamma(aa) - math.lgamma(jj + 1) for jj in j] for aa in a])
        live = j[None, :] < k[:, None]
        n1 = jnp.asarray(dfn[ev], f.dtype)
        n2 = jnp.asarray(dfd[ev], f.dtype)
        u = n1 * fe
        pos = u > 0
        logx = -jnp.log1p(u / n2)
        log1mx = jnp.log(jnp.where(pos, u, 1)) - jnp.log(n2 + u)
        expo = (jnp.asarray(a, f.dtype) * logx)[..., None] + jnp.asarray(j, f.dtype) * log1mx[..., None]
        expo = expo + jnp.asarray(lc, f.dtype)
        terms = jnp.where(live & (pos[..., None] | (j == 0)), jnp.exp(jnp.where(live, expo, -jnp.inf)), 0)
        out = out.at[..., ev].set(jnp.where(pos, jnp.sum(terms, -1), 1))
    out = jnp.where(jnp.isposinf(f), 0, out)
    return jnp.where(jnp.isnan(f), jnp.nan, out)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def fill_nan(x: ArrayLike, value: float = 0.0) -> jax.Array:
    """Replace non-finite entries (windows with no Lyapunov estimate) by ``value``.

    The original pipeline filled missing LE windows with 0; making it explicit keeps
    :func:`granger_tests` honest (it reports NONFINITE for series that still hold NaN).
    Note a series that is entirely NaN becomes constant and is reported as CONSTANT.

    Args:
      x: any shape, e.g. LE series ``(n_weights, n_windows)``.
      value: the fill, cast to x's dtype.

    Returns:
      x's shape and dtype, every NaN / inf replaced.
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


# --------------------------------------------------------------------------------------------
# the kernel on one chunk
# --------------------------------------------------------------------------------------------


def _restricted(y, maxlag):
    """Shared restricted fits for every lag, from the data (not from cross products).

    y: (n, By) standardized, batch last. For lag p the design is [1, y_{t-1..t-p}] with target
    y_t on rows t = p..n-1, padded to maxlag + 1 columns: rows t < p and y-lag columns > p are
    zero (inactive). One CGS2 QR of [Z, y_t] (:func:`jaxprune._linalg.qr_r_bm`) per lag gives
    R (Z = Q R, identity on the padding), Q'y_t = R[:, -1] and ssr_r = R[-1, -1]^2, with errors
    ~ eps * cond(Z) rather than the eps * cond(Z)^2 of a Cholesky of Z'Z.

    Returns, stacked over lags p = 1..maxlag (leading axis): rinvt (L, L+1, L+1, By) = R^-T
    (lower triangular), zt (L, L+1, By), ssr_r (L, By), tss (L, By).
    """
    n = y.shape[0]
    L = maxlag
    t = np.arange(n)
    lidx = t[:, None] - np.arange(L + 1)[None, :]  # (n, L+1): y[t - i]
    ylag = jnp.where((lidx >= 0)[..., None], y[np.maximum(lidx, 0)], 0)  # (n, L+1, By)
    ones = jnp.ones((n, 1) + y.shape[1:], y.dtype)
    base = jnp.concatenate([ones, ylag[:, 1:], ylag[:, :1]], 1)  # (n, L+2, By): [1, y lags, y_t]

    def one(p):
        rows = (t >= p).astype(y.dtype).reshape((n, 1) + (1,) * (y.ndim - 1))
        cols = np.arange(L + 2)
        active = (cols <= p) | (cols == L + 1)
        a = base * rows * active.astype(y.dtype).reshape((1, L + 2) + (1,) * (y.ndim - 1))
        r = qr_r_bm(a, active)
        rz = r[: L + 1, : L + 1]
        rinvt = tri_inv_lower_bm(jnp.swapaxes(rz, 0, 1))
        yt = y * rows[:, 0]
        nobs = (n - p).astype(y.dtype)
        mu = jnp.sum(yt, 0) / nobs
        tss = jnp.sum(rows[:, 0] * (y - mu) ** 2, 0)
        return rinvt, r[: L + 1, L + 1], r[L + 1, L + 1] ** 2, tss

    return lax.map(one, jnp.arange(1, L + 1))


def _lag_groups(maxlag, ngroups=4):
    """Lags L..1 split into up to ``ngroups`` descending runs [(hi, lo), ...], hi_k = ceil(k L / G).

    Each run is padded to its largest lag hi only: the per-lag work is O(hi^3) per weight, so
    for L = 14 the groups (14..12, 11..8, 7..5, 4..1) do ~2.6x less work than padding every lag
    to L, at the price of one compiled scan body per group.
    """
    g = min(ngroups, maxlag)
    his = sorted({-(-k * maxlag // g) for k in range(1, g + 1)}, reverse=True)
    los = his[1:] + [0]
    return [(hi, lo + 1) for hi, lo in zip(his, los)]


def _chunk_kernel(y, x, shared, maxlag, tol):
    """Statistics for one chunk, batch last.

    y: (n, By) standardized (By = 1: shared by the chunk). x: (n, B) standardized, finite.
    shared: :func:`_restricted` output for this y (By = 1) or None (computed here, batched y).
    Returns (delta, ssr_r, ssr_u) (L, B) lag 1 first, collinear, badfit (B,) bool.

    Lags are padded to their group's largest lag P (:func:`_lag_groups`): lag p's x-lag block is
    P x P with the columns > p replaced by identity, so one ``lax.scan`` body per group (compiled
    once) serves every lag of the group.
    The scan runs p = L..1; lag p's sample (rows p..n-1) is lag p+1's plus head row t = p, a
    rank-one update of the running cross products.
    """
    n, b = x.shape
    L = maxlag
    dt = x.dtype
    eps = jnp.finfo(dt).eps
    if shared is None:
        shared = _restricted(y, L)
    rinvt, zt, ssr_r, tss = shared
    # cross products over the common sample t = L..n-1 (lag L's rows)
    xx0 = lagged_gram_bl(x[:-1], x[:-1], L - 1, L - 1)  # x_{t-1-i} x_{t-1-j}, (L, L, B)
    yx0 = lagged_gram_bl(y, x, L, L)[:, 1:]  # y_{t-i} x_{t-j}, i = 0..L, j = 1..L
    cs = jnp.concatenate([jnp.zeros((1, b), dt), jnp.cumsum(x, 0)], 0)
    jj = np.arange(1, L + 1)
    sx0 = cs[n - jj] - cs[L - jj]  # sum_t x_{t-j}, (L, B)
    xpad = jnp.concatenate([jnp.zeros((L, b), dt), x], 0)
    ypad = jnp.concatenate([jnp.zeros((L,) + y.shape[1:], dt), y], 0)
    lagi = np.arange(1, L + 1)
    shared_y = y.shape[1] == 1

    def step(carry, p, P):
        """Lag p (traced) in a group whose largest lag is P (static): systems padded to P, not L."""
        xx, yx, sx, coll, bad = carry
        # add head row t = p (lag p's sample is lag p+1's plus row p); nothing at p = L
        w = (p < L).astype(dt)
        xh = lax.dynamic_slice_in_dim(xpad, p, L, 0)[::-1]  # x_{p-1..p-L} (L, B), 0 before t=0
        yh = lax.dynamic_slice_in_dim(ypad, p, L + 1, 0)[::-1]  # y_{p..p-L} (L+1, By)
        xhw = w * xh
        xx = xx + xhw[:, None] * xh[None, :]
        yx = yx + yh[:, None] * xhw[None, :]
        sx = sx + xhw
        carry_out = (xx, yx, sx)
        # lags > P are inactive in this group: work on the leading P x-lags / P + 1 Z columns
        xx, yx, sx = xx[:P, :P], yx[: P + 1, :P], sx[:P]
        m = lagi[:P] <= p  # active x-lag columns, (P,)
        mz = jnp.concatenate([jnp.ones((1,), bool), m])  # active rows of Z = [1, y lags]
        mm = (m[:, None] & m[None, :])[..., None]
        q = p - 1
        # R^-T is the identity on Z's inactive columns, so its leading (P+1) block is lag p's
        rt = lax.dynamic_index_in_dim(rinvt, q, 0, keepdims=False)[: P + 1, : P + 1]
        ztp = lax.dynamic_index_in_dim(zt, q, 0, keepdims=False)[: P + 1]
        ssr_rp = lax.dynamic_index_in_dim(ssr_r, q, 0, keepdims=False)
        tssp = lax.dynamic_index_in_dim(tss, q, 0, keepdims=False)
        zx = jnp.concatenate([sx[None], yx[1:]], 0)  # Z'X (P+1, P, B)
        zx = jnp.where(mz[:, None, None] & m[None, :, None], zx, 0)
        if shared_y:  # Q'X = R^-T Z'X: one BLAS matmul for the whole chunk
            c = (rt[..., 0] @ zx.reshape(P + 1, P * b)).reshape(P + 1, P, b)
        else:
            c = jnp.einsum("ikb,kjb->ijb", rt, zx)
        xxp = jnp.where(mm, xx, 0)
        g = xxp - jnp.einsum("ipb,iqb->pqb", c, c) + jnp.where(mm, 0, np.eye(P, dtype=bool)[..., None])
        hv = jnp.where(m[:, None], yx[0], 0) - jnp.sum(c * ztp[:, None], 0)  # X' M_Z y_t (P, B)
        ssr_rb = jnp.broadcast_to(ssr_rp, (b,))
        aug = jnp.concatenate(
            [
                jnp.concatenate([g, hv[:, None]], 1),
                jnp.concatenate([hv[None, :], ssr_rb[None, None]], 1),
            ],
            0,
        )  # (P+1, P+1, B)
        l, piv = cholesky_unrolled_bm(aug)
        wv = l[P, :P]  # G^{-1/2} h (zero beyond p)
        delta = jnp.sum(wv * wv, 0)  # ssr_r - ssr_u, no cancellation
        ssr_u = ssr_rb - delta
        diag = jnp.diagonal(xx, axis1=0, axis2=1).T  # (P, B)
        rel = piv[:P] / diag
        coll = coll | jnp.any(m[:, None] & ~(rel > tol), 0)
        # statsmodels: ssr_u / tss < eps. Our ssr_u = ssr_r - delta carries ~eps * ssr_r of
        # rounding, so an exact fit shows up as ssr_u within a few hundred eps of ssr_r's scale.
        bad = bad | ~(ssr_u > 256 * eps * jnp.broadcast_to(jnp.maximum(tssp, ssr_rp), (b,)))
        return carry_out + (coll, bad), (delta, ssr_rb, ssr_u)

    carry = (xx0, yx0, sx0, jnp.zeros((b,), bool), jnp.zeros((b,), bool))
    outs = []
    for hi, lo in _lag_groups(L):  # descending lags; one scan (one compiled body) per group
        carry, o = lax.scan(functools.partial(step, P=hi), carry, jnp.arange(hi, lo - 1, -1))
        outs.append(o)
    coll, bad = carry[3:]
    delta, ssr_rb, ssr_u = (jnp.concatenate(z, 0) for z in zip(*outs))
    return delta[::-1], ssr_rb[::-1], ssr_u[::-1], coll, bad


@functools.partial(jax.jit, static_argnames=("maxlag", "chunk_size", "tol"))
def _granger_jit(y, x, maxlag, chunk_size, tol):
    # float32 matmuls at full precision: GPUs default to TF32 / bf16 passes (H200: 18 %
    # statistic errors); float64 is unaffected
    with jax.default_matmul_precision("highest"):
        return _granger_jit_body(y, x, maxlag, chunk_size, tol)


def _granger_jit_body(y, x, maxlag, chunk_size, tol):
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
    # batch last inside the kernel: (nchunks, n, chunk)
    xs_p = jnp.pad(xs, ((0, pad), (0, 0))).reshape(nchunks, chunk_size, n).transpose(0, 2, 1)
    if ys.shape[0] == 1:
        yt = ys.T  # (n, 1)
        shared = _restricted(yt, L)
        outs = lax.map(lambda xc: _chunk_kernel(yt, xc, shared, L, tol), xs_p)
    else:
        ys_p = jnp.pad(ys, ((0, pad), (0, 0))).reshape(nchunks, chunk_size, n).transpose(0, 2, 1)
        outs = lax.map(lambda a: _chunk_kernel(a[0], a[1], None, L, tol), (ys_p, xs_p))
    delta, ssr_r, ssr_u = (o.transpose(0, 2, 1).reshape(nchunks * chunk_size, L)[:b] for o in outs[:3])
    collinear, badfit = (o.reshape(nchunks * chunk_size)[:b] for o in outs[3:])

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
    fp = _f_sf_int(fstat, lagsi, dfd)
    # chi2 and lr share the df: one evaluation
    cp = _chi2_sf_int(jnp.concatenate([chi2, lr], -1), np.concatenate([lagsi, lagsi]))
    lagsj = jnp.asarray(lagsi)
    dfdj = jnp.asarray(dfd)
    ftest = TestResult(fstat, fp, lagsj, dfdj)
    return GrangerResult(
        ssr_ftest=ftest,
        ssr_chi2test=TestResult(chi2, cp[:, :L], lagsj, None),
        lrtest=TestResult(lr, cp[:, L:], lagsj, None),
        # equal to ssr_ftest in exact arithmetic (Wald F of the x-lag block under OLS); we
        # report the more accurate ssr form for both, see tests for the statsmodels comparison
        params_ftest=ftest,
        status=status,
        nobs=jnp.asarray(nobs),
    )


def _is_concrete(a):
    return not isinstance(a, jax.core.Tracer)


def _from_params(params, field: str, value, where: str):
    """`value` (a keyword argument), or `field` of `params` when given (not both)."""
    if params is None:
        return value
    if not isinstance(params, GrangerParams):
        raise TypeError(f"params must be a GrangerParams, got {type(params).__name__}")
    if value is not None:
        raise TypeError(f"{where}: give either params= or {field}=, not both")
    return getattr(params, field)


def granger_tests(
    y: ArrayLike,
    x: ArrayLike,
    *,
    maxlag: int | None = None,
    chunk_size: int = 256,
    collinear_tol: float | None = None,
    params: GrangerParams | None = None,
) -> GrangerResult:
    """Granger non-causality tests "x does not cause y" for a batch of candidate causes.

    Equivalent, per series, to ``statsmodels.tsa.stattools.grangercausalitytests(
    np.column_stack([y, x]), maxlag)`` (statistics, p-values and df for lags 1..maxlag).

    Args:
      y: the caused series (risk), shape (n,) shared by every x (the usual case), or (..., n)
        with the same leading shape as x. Must be finite (ValueError when concrete).
      x: the candidate causes (LE series, one per weight), shape (..., n).
      maxlag: static int >= 1 with n > 3 * maxlag + 1 (statsmodels' limit, df_u >= 1 at the
        largest lag); checked before any device work. Required unless ``params`` is given.
      chunk_size: weights per chunk (static); bounds memory, results do not depend on it.
      collinear_tol: relative pivot threshold for COLLINEAR; default 1e-10 (float64),
        1e-4 (float32).
      params: a :class:`GrangerParams` instead of ``maxlag`` (its ``test`` is not used here).

    Returns:
      :class:`GrangerResult`; statistics and p-values (..., maxlag) in the input float dtype,
      ``status`` (...) int8 (:class:`Status`), NaN statistics where status != OK.

    jit: traceable with static ``maxlag`` / ``chunk_size``; value checks (finite y) are only
    done on concrete inputs, inside a trace a non-finite y gives status NONFINITE instead.
    """
    maxlag = _from_params(params, "maxlag", maxlag, "granger_tests")
    if maxlag is None:
        raise TypeError("granger_tests: maxlag= (or params=GrangerParams(...)) is required")
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
    chunk_size = int(max(1, chunk_size))
    if b > chunk_size * BLOCK_CHUNKS and _is_concrete(xb) and _is_concrete(yb):
        res = _granger_blocked(yb, xb, maxlag, chunk_size, float(collinear_tol))
    else:
        # one call: inside a trace (the caller's program holds it), or a batch of at most one
        # block (its own program; the same numbers as the weight-sharded path, `jaxprune.
        # sharding`, whose shards are single calls)
        res = _granger_jit(yb, xb, maxlag=maxlag, chunk_size=min(chunk_size, b), tol=float(collinear_tol))
    return _reshape_result(res, batch)


# Lanes (weights) per compiled call of `granger_tests` outside a trace, in chunks: a batch of
# more than this many chunks is cut into blocks of this size, so the compiled program depends on
# the series length, maxlag and dtype but not on the batch size: the FT series, the null
# controls' stacked draws and a user's own large batch share one program (each new shape costs
# ~6 s of compilation on a 2-core CPU). A smaller batch is one call of its own shape.
BLOCK_CHUNKS = 8


@functools.partial(jax.jit, static_argnames=("rows",))
def _rows(a, start, *, rows):
    """Rows ``[start, start + rows)`` of a (B, n) array (start traced: one program per shape)."""
    return lax.dynamic_slice_in_dim(a, start, rows, axis=0)


def _granger_blocked(yb, xb, maxlag: int, chunk_size: int, tol: float) -> GrangerResult:
    """`_granger_jit` over fixed-size blocks of a batch longer than one block (`BLOCK_CHUNKS`
    chunks), the last block starting at ``b - block`` (overlapping the one before it, no
    padding). Every lane goes through the same chunk kernel as in one call, and no lane's
    result depends on the other lanes (the odd-lag F continued fraction stops per lane): the
    results equal one call over the whole batch bit for bit (test)."""
    b = xb.shape[0]
    block = chunk_size * BLOCK_CHUNKS
    shared = yb.shape[0] == 1
    run = functools.partial(_granger_jit, maxlag=maxlag, chunk_size=chunk_size, tol=tol)
    parts = []
    for b0 in range(0, b, block):
        a = min(b0, b - block)
        start = jnp.int32(a)
        res = run(yb if shared else _rows(yb, start, rows=block), _rows(xb, start, rows=block))
        parts.append(_take_lanes(res, slice(b0 - a, block)))
    return _concat_lanes(parts)


def _take_lanes(res: GrangerResult, sl: slice) -> GrangerResult:
    t = lambda r: r._replace(statistic=r.statistic[sl], pvalue=r.pvalue[sl])  # noqa: E731
    return res._replace(
        ssr_ftest=t(res.ssr_ftest),
        ssr_chi2test=t(res.ssr_chi2test),
        lrtest=t(res.lrtest),
        params_ftest=t(res.params_ftest),
        status=res.status[sl],
    )


def _concat_lanes(parts: list) -> GrangerResult:
    def cat(name):
        first = getattr(parts[0], name)
        return first._replace(
            statistic=jnp.concatenate([getattr(p, name).statistic for p in parts]),
            pvalue=jnp.concatenate([getattr(p, name).pvalue for p in parts]),
        )

    return parts[0]._replace(
        ssr_ftest=cat("ssr_ftest"),
        ssr_chi2test=cat("ssr_chi2test"),
        lrtest=cat("lrtest"),
        params_ftest=cat("params_ftest"),
        status=jnp.concatenate([p.status for p in parts]),
    )


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


def min_pvalue(
    result: GrangerResult,
    test: str | None = None,
    *,
    round_decimals: int | None = None,
    invalid: float | None = None,
    params: GrangerParams | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The paper's decision statistic: the minimum p-value over lags, per series.

    Args:
      result: :class:`GrangerResult`.
      test: one of "ssr_ftest", "ssr_chi2test" (the paper's, the default), "lrtest",
        "params_ftest".
      round_decimals: e.g. 4 to round p-values before the minimum as the original notebook did
        (reproduction only; it turns p < 5e-5 into 0).
      invalid: None keeps NaN for series whose status is not OK (policy-neutral); a float fills
        them (0.0 reproduces the original "keep the weight when the test fails", 1.0 "prune").
      params: a :class:`GrangerParams` whose ``test`` is used instead of ``test`` (not both).

    Returns:
      (pmin, lag): pmin (...) float, lag (...) int32 the 1-based lag attaining it (0 if invalid).
    """
    test = _from_params(params, "test", test, "min_pvalue")
    if test is None:
        test = "ssr_chi2test"
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
