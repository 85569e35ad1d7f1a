"""jaxprune.granger: statsmodels parity, degenerate inputs, batching, jit, full-size batch."""

import warnings
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxprune.granger import (
    Status,
    _chi2_sf_int,
    _f_sf_cf,
    _f_sf_int,
    _granger_jit,
    _lag_groups,
    chi2_sf,
    f_sf,
    fill_nan,
    granger_tests,
    min_pvalue,
)

TESTS = ("ssr_ftest", "ssr_chi2test", "lrtest", "params_ftest")


def _statsmodels(y, x, maxlag):
    from statsmodels.tsa.stattools import grangercausalitytests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = grangercausalitytests(np.column_stack([y, x]), maxlag)
    out = {}
    for k in TESTS:
        out[k] = np.array([r[p][0][k][:2] for p in range(1, maxlag + 1)], float)
    out["df_f"] = np.array([r[p][0]["ssr_ftest"][2:] for p in range(1, maxlag + 1)], float)
    out["df_pf"] = np.array([r[p][0]["params_ftest"][2:] for p in range(1, maxlag + 1)], float)
    out["df_chi2"] = np.array([r[p][0]["ssr_chi2test"][2] for p in range(1, maxlag + 1)], float)
    return out


def _ar(rng, n, phi, size=()):
    e = rng.standard_normal(size + (n,))
    out = np.empty_like(e)
    out[..., 0] = e[..., 0]
    for t in range(1, n):
        out[..., t] = phi * out[..., t - 1] + e[..., t]
    return out


def _pairs(rng, n):
    """A mix of caused / cause series: white noise, AR, random walks, LE-like, risk-like."""
    risk = 0.5 * np.exp(-np.arange(n) / (n / 3)) + 0.02 * rng.standard_normal(n)  # decaying, noisy
    ys = {"wn": rng.standard_normal(n), "ar9": _ar(rng, n, 0.9), "rw": np.cumsum(rng.standard_normal(n)), "risk": risk}
    xs = []
    xs.append(rng.standard_normal(n))
    xs.append(_ar(rng, n, 0.5))
    xs.append(np.cumsum(rng.standard_normal(n)))
    le = 0.05 * rng.standard_normal(n) + 0.01
    le[: n // 5] = 0.0  # windows without an LE estimate, filled with 0 as the original did
    xs.append(le)
    return ys, np.stack(xs)


def _assert_parity(res, i, ref, maxlag, rtol=1e-8):
    for k in TESTS:
        t = getattr(res, k)
        s = np.asarray(t.statistic)[i]
        p = np.asarray(t.pvalue)[i]
        np.testing.assert_allclose(s, ref[k][:, 0], rtol=rtol, err_msg=k)
        big = ref[k][:, 1] >= 1e-10
        np.testing.assert_allclose(p[big], ref[k][big, 1], rtol=rtol, err_msg=k)
        np.testing.assert_allclose(p[~big], ref[k][~big, 1], rtol=1e-6, atol=1e-300, err_msg=k)
    np.testing.assert_array_equal(np.asarray(res.ssr_ftest.df_denom), ref["df_f"][:, 0])
    np.testing.assert_array_equal(np.asarray(res.ssr_ftest.df_num), ref["df_f"][:, 1])
    np.testing.assert_array_equal(np.asarray(res.params_ftest.df_denom), ref["df_pf"][:, 0])
    np.testing.assert_array_equal(np.asarray(res.params_ftest.df_num), ref["df_pf"][:, 1])
    np.testing.assert_array_equal(np.asarray(res.ssr_chi2test.df_num), ref["df_chi2"])


@pytest.mark.parametrize("yname", ["wn", "ar9", "rw", "risk"])
def test_parity_maxlag14(yname):
    # a fixed seed per series (str hash() is salted per process: that made this test flaky; in a
    # 40-seed sweep 2 of 800 pairs exceed 1e-8, up to 2.0e-8, where statsmodels' own rounding is
    # off: see the extended-precision check in test_parity_smooth_risk)
    rng = np.random.default_rng(zlib.crc32(yname.encode()))
    n = 254
    ys, xs = _pairs(rng, n)
    y = ys[yname]
    xs = np.concatenate([xs, (0.4 * np.roll(y, 2) + rng.standard_normal(n))[None]])  # truly causal-ish
    res = granger_tests(y, xs, maxlag=14)
    assert np.all(np.asarray(res.status) == Status.OK)
    for i in range(xs.shape[0]):
        _assert_parity(res, i, _statsmodels(y, xs[i], 14), 14)


def _ld_householder_r(a):
    """R of a Householder QR in numpy's extended precision (80-bit on x86)."""
    a = a.astype(np.longdouble).copy()
    k = a.shape[1]
    for j in range(k):
        v = a[j:, j].copy()
        nv = np.sqrt(np.sum(v * v))
        if nv == 0:
            continue
        v[0] += nv if v[0] >= 0 else -nv
        vn = np.sum(v * v)
        a[j:, j:] -= np.outer(v, (2 / vn) * (v @ a[j:, j:]))
    return a[:k, :k]


def _extended_reference(y, x, maxlag):
    """ssr_ftest / ssr_chi2test / lrtest statistics from an extended-precision QR of [Z, X, y_t]."""
    y = np.asarray(y, np.longdouble)
    x = np.asarray(x, np.longdouble)
    n = len(y)
    out = {"ssr_ftest": [], "ssr_chi2test": [], "lrtest": []}
    for p in range(1, maxlag + 1):
        t = np.arange(p, n)
        cols = [np.ones(n - p, np.longdouble)] + [y[t - i] for i in range(1, p + 1)]
        cols += [x[t - i] for i in range(1, p + 1)] + [y[t]]
        last = _ld_householder_r(np.column_stack(cols))[:, -1]
        ssr_u = last[-1] ** 2
        delta = np.sum(last[p + 1 : 2 * p + 1] ** 2)  # ssr_r - ssr_u
        nobs = n - p
        out["ssr_ftest"].append(delta / ssr_u / p * (nobs - 2 * p - 1))
        out["ssr_chi2test"].append(nobs * delta / ssr_u)
        out["lrtest"].append(nobs * np.log1p(delta / ssr_u))
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def test_parity_smooth_risk():
    """Smooth, low-noise, trending risk series make [1, y-lags] ill-conditioned.

    Checked against statsmodels (1e-8) and, tighter, against an extended-precision reference:
    statsmodels' own rounding (ssr_r - ssr_u as a difference of two pinv fits) reaches ~5e-9
    on such series, ours stays ~1e-11.
    """
    rng = np.random.default_rng(12)
    n, L = 254, 14  # same compiled shape as test_parity_maxlag14 (5 causes)
    k = np.arange(n)
    ys = [
        0.9 * np.exp(-k / 50) + 0.01 * rng.standard_normal(n),  # 1 - training accuracy
        0.9 * np.exp(-k / 30) + 0.003 * rng.standard_normal(n),
        0.5 - 0.001 * k + 0.005 * rng.standard_normal(n),  # trending
    ]
    le = 0.05 * rng.standard_normal(n) + 0.01
    le[: n // 5] = 0.0
    xs = np.stack(
        [
            le,
            rng.standard_normal(n),
            np.cumsum(rng.standard_normal(n)),
            0.02 * np.exp(-k / 40) + 0.001 * rng.standard_normal(n),  # smooth LE-like
            np.cumsum(0.05 * rng.standard_normal(n)) + 0.01 * k,
        ]
    )
    worst = 0.0
    for y in ys:
        res = granger_tests(y, xs, maxlag=L)
        assert np.all(np.asarray(res.status) == Status.OK)
        for i in range(xs.shape[0]):
            _assert_parity(res, i, _statsmodels(y, xs[i], L), L)
            ref = _extended_reference(y, xs[i], L)
            for key, r in ref.items():
                s = np.asarray(getattr(res, key).statistic)[i]
                worst = max(worst, float(np.max(np.abs(s - r) / np.abs(r))))
    assert worst < 1e-9, worst


@pytest.mark.parametrize("n,maxlag", [(60, 1), (254, 20), (3 * 5 + 2, 5)])
def test_parity_lags_and_short_series(n, maxlag):
    rng = np.random.default_rng(n * 100 + maxlag)
    ys, xs = _pairs(rng, n)
    for y in (ys["ar9"], ys["rw"]):
        res = granger_tests(y, xs[:3], maxlag=maxlag)
        assert np.all(np.asarray(res.status) == Status.OK)
        for i in range(3):
            _assert_parity(res, i, _statsmodels(y, xs[i], maxlag), maxlag)


def test_pvalue_special_functions_vs_scipy():
    grid = np.concatenate([[0.0, 1e-8, 1e-3], np.logspace(-2, 3.3, 60)])
    for k in (1, 2, 5, 14, 20):
        got = np.asarray(chi2_sf(jnp.asarray(grid), k))
        ref = stats.chi2.sf(grid, k)
        m = ref > 1e-300
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-11)
    for d1, d2 in ((1, 240), (14, 225), (3, 5), (20, 1), (7, 40)):
        got = np.asarray(f_sf(jnp.asarray(grid), d1, d2))
        ref = stats.f.sf(grid, d1, d2)
        m = ref > 1e-300
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-11)
    assert np.isnan(f_sf(jnp.nan, 2, 3)) and np.isnan(chi2_sf(jnp.nan, 2))
    # the kernel's closed forms for static integer df (chi2: all df; F: even dfn, odd via betainc)
    ks = np.array([1, 2, 3, 5, 14, 20, 7, 40])
    got = np.asarray(_chi2_sf_int(jnp.asarray(np.repeat(grid[:, None], len(ks), 1)), ks))
    ref = stats.chi2.sf(grid[:, None], ks[None])
    m = ref > 1e-300
    np.testing.assert_allclose(got[m], ref[m], rtol=1e-11)
    assert np.all(got[~m] < 1e-290)
    d1 = np.array([1, 14, 3, 20, 7, 2, 4, 13, 12])
    d2 = np.array([240, 225, 5, 1, 40, 3, 211, 200, 200])
    got = np.asarray(_f_sf_int(jnp.asarray(np.repeat(grid[:, None], len(d1), 1)), d1, d2))
    ref = stats.f.sf(grid[:, None], d1[None], d2[None])
    m = ref > 1e-300
    np.testing.assert_allclose(got[m], ref[m], rtol=1e-11)
    assert np.all(got[~m] < 1e-290)
    edge = jnp.asarray([jnp.nan, -1.0, 0.0, jnp.inf])
    np.testing.assert_array_equal(np.asarray(_chi2_sf_int(edge, np.array([2, 3, 1, 4]))), [np.nan, 1, 1, 0])
    np.testing.assert_array_equal(
        np.asarray(_f_sf_int(edge, np.array([2, 3, 4, 4]), np.array([5] * 4))), [np.nan, 1, 1, 0]
    )


def test_odd_dfn_continued_fraction_vs_scipy():
    # the kernel's odd-lag F p-values at the pipeline's shapes (n = 254, maxlag 14: dfd even;
    # n = 25, maxlag 7 and n = 253: dfd odd), both sides of the symmetry switch, deep tails
    grid = np.concatenate([[0.0, 1e-12, 1e-6], np.logspace(-3, 3.5, 90)])  # inf: _f_sf_int
    for n in (254, 253, 25):
        p = np.arange(1, 15 if n > 100 else 8, 2)
        dfd = n - 3 * p - 1
        got = np.asarray(_f_sf_cf(jnp.asarray(np.repeat(grid[:, None], len(p), 1)), p, dfd))
        ref = stats.f.sf(grid[:, None], p[None], dfd[None])
        m = ref > 1e-300
        np.testing.assert_allclose(got[m], ref[m], rtol=1e-11, err_msg=f"n={n}")
        assert np.all(got[~m] < 1e-290)
    nan = np.asarray(_f_sf_cf(jnp.asarray([[np.nan, 1.0]]), np.array([3, 3]), np.array([40, 40])))
    assert np.isnan(nan[0, 0]) and abs(nan[0, 1] - stats.f.sf(1.0, 3, 40)) < 1e-13


def test_lag_groups_cover_every_lag_once():
    for L in range(1, 30):
        g = _lag_groups(L)
        lags = [p for hi, lo in g for p in range(hi, lo - 1, -1)]
        assert lags == list(range(L, 0, -1)), L  # descending, each lag once, in scan order
        assert len(g) == min(4, L) and all(hi >= lo for hi, lo in g)


def test_unrolled_cholesky_matches_numpy():
    from jaxprune._linalg import cholesky_unrolled_bm

    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 9, 5))
    g = np.einsum("ikb,jkb->ijb", a, a)  # (6, 6, 5) SPD
    l, piv = cholesky_unrolled_bm(jnp.asarray(g))
    for i in range(5):
        ref = np.linalg.cholesky(g[..., i])
        np.testing.assert_allclose(np.asarray(l)[..., i], ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(piv)[0, i], g[0, 0, i], rtol=1e-14)


def test_degenerate_cases():
    rng = np.random.default_rng(5)
    n, L = 120, 6
    y = _ar(rng, n, 0.6)
    good = rng.standard_normal(n)
    const = np.full(n, 3.0)
    nearly_const = np.full(n, 1.0)
    nearly_const[-1] = 2.0  # only the last value differs: every lag column is constant
    collinear = y.copy()  # x-lags == y-lags
    all_nan = np.full(n, np.nan)
    some_nan = good.copy()
    some_nan[10:20] = np.nan
    xs = np.stack([good, const, nearly_const, collinear, all_nan, some_nan, 2 * y + 1])
    res = granger_tests(y, xs, maxlag=L)
    st = np.asarray(res.status)
    expect = [
        Status.OK,
        Status.CONSTANT,
        Status.CONSTANT,
        Status.COLLINEAR,
        Status.NONFINITE,
        Status.NONFINITE,
        Status.COLLINEAR,
    ]
    np.testing.assert_array_equal(st, expect)
    for k in TESTS:
        s = np.asarray(getattr(res, k).statistic)
        assert np.all(np.isfinite(s[0])) and np.all(np.isnan(s[1:]))
    # statsmodels agrees that the constant cases cannot be computed
    from statsmodels.tools.sm_exceptions import InfeasibleTestError

    for x in (const, nearly_const):
        with pytest.raises(InfeasibleTestError):
            _statsmodels(y, x, L)
    # explicit fill reproduces the original pipeline (0 for windows without an estimate)
    filled = granger_tests(y, fill_nan(xs[5:6], 0.0), maxlag=L)
    assert int(filled.status[0]) == Status.OK
    _assert_parity(filled, 0, _statsmodels(y, np.nan_to_num(some_nan), L), L)
    assert int(granger_tests(y, fill_nan(all_nan), maxlag=L).status) == Status.CONSTANT


def test_perfect_fit():
    rng = np.random.default_rng(6)
    n = 80
    x = rng.standard_normal(n)
    y = np.zeros(n)
    y[1:] = x[:-1]  # y_t = x_{t-1} exactly
    # maxlag 1: regressors [1, y_{t-1}, x_{t-1}] are independent and x_{t-1} fits y_t exactly
    # (at higher lags y_{t-1} = x_{t-2} makes the design collinear first, reported as COLLINEAR)
    res = granger_tests(y, x[None], maxlag=1)
    assert int(res.status[0]) == Status.PERFECT_FIT


def test_input_errors_before_device_work():
    # n = 17 = 3 * 5 + 2, 3 causes: the shape test_parity_lags_and_short_series[17-5] compiled
    y = np.random.default_rng(0).standard_normal(17)
    x = np.random.default_rng(1).standard_normal((3, 17))
    with pytest.raises(ValueError, match=r"n=17.*maxlag=6|maxlag=6.*n=17"):
        granger_tests(y, x, maxlag=6)
    assert np.asarray(granger_tests(y, x, maxlag=5).status).shape == (3,)  # the limit is fine
    y2 = y.copy()
    y2[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        granger_tests(y2, x, maxlag=2)
    with pytest.raises(ValueError, match="same length"):
        granger_tests(y[:-1], x, maxlag=2)
    with pytest.raises(ValueError):
        granger_tests(np.stack([y, y]), x, maxlag=2)
    with pytest.raises(TypeError):
        granger_tests(y, x.astype(complex), maxlag=2)
    with pytest.raises(TypeError):
        granger_tests(y, x, maxlag=2.0)
    with pytest.raises(ValueError):
        granger_tests(y, x, maxlag=0)


def test_batched_chunked_jit_consistency():
    rng = np.random.default_rng(7)
    n, L = 100, 5
    y = _ar(rng, n, 0.7)
    x = np.cumsum(rng.standard_normal((2, 3, n)), -1)
    full = granger_tests(y, x, maxlag=L, chunk_size=256)
    chunked = granger_tests(y, x, maxlag=L, chunk_size=4)  # 6 series, padded to 8
    assert full.ssr_chi2test.pvalue.shape == (2, 3, L) and full.status.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = granger_tests(y, x[i, j], maxlag=L)
            assert one.status.shape == ()
            for k in TESTS:
                a = np.asarray(getattr(full, k).statistic)[i, j]
                np.testing.assert_allclose(np.asarray(getattr(one, k).statistic), a, rtol=1e-12)
                np.testing.assert_allclose(np.asarray(getattr(chunked, k).statistic)[i, j], a, rtol=1e-12)
    # batched y (one caused series per cause) == shared y
    yb = granger_tests(np.broadcast_to(y, x.shape), x, maxlag=L)
    np.testing.assert_allclose(np.asarray(yb.lrtest.statistic), np.asarray(full.lrtest.statistic), rtol=1e-12)
    # through an outer jit
    jf = jax.jit(lambda yy, xx: granger_tests(yy, xx, maxlag=L).ssr_chi2test.pvalue)
    np.testing.assert_allclose(np.asarray(jf(y, x)), np.asarray(full.ssr_chi2test.pvalue), rtol=1e-12)


def test_no_recompilation():
    rng = np.random.default_rng(8)
    y = rng.standard_normal(90)  # (3, 90), maxlag 4: test_min_pvalue's shape, compiled once
    granger_tests(y, rng.standard_normal((3, 90)), maxlag=4)
    before = _granger_jit._cache_size()
    granger_tests(rng.standard_normal(90), rng.standard_normal((3, 90)), maxlag=4)
    assert _granger_jit._cache_size() == before


def test_min_pvalue():
    rng = np.random.default_rng(9)
    n = 90
    y = rng.standard_normal(n)
    x = np.stack([rng.standard_normal(n), np.full(n, 1.0), np.roll(y, -1) + 0.1 * rng.standard_normal(n)])
    res = granger_tests(y, x, maxlag=4)
    p, lag = min_pvalue(res)
    pv = np.asarray(res.ssr_chi2test.pvalue)
    assert float(p[0]) == pv[0].min() and int(lag[0]) == pv[0].argmin() + 1
    assert np.isnan(float(p[1])) and int(lag[1]) == 0
    p0, _ = min_pvalue(res, invalid=0.0)
    assert float(p0[1]) == 0.0
    pr, _ = min_pvalue(res, "ssr_ftest", round_decimals=4)
    assert float(pr[0]) == np.round(np.asarray(res.ssr_ftest.pvalue)[0], 4).min()
    with pytest.raises(ValueError):
        min_pvalue(res, "wald")


def test_float32_error_bound():
    rng = np.random.default_rng(10)
    n, L = 254, 14  # 5 causes: the float64 side reuses test_parity_maxlag14's compiled shape
    y = _ar(rng, n, 0.5)
    x = np.concatenate([rng.standard_normal((2, n)), np.cumsum(rng.standard_normal((3, n)), -1)])
    r64 = granger_tests(y, x, maxlag=L)
    r32 = granger_tests(y.astype(np.float32), x.astype(np.float32), maxlag=L)
    assert r32.ssr_chi2test.pvalue.dtype == jnp.float32
    ok = np.asarray(r32.status) == Status.OK
    assert ok.sum() == 5
    s64 = np.asarray(r64.ssr_ftest.statistic)[ok]
    s32 = np.asarray(r32.ssr_ftest.statistic)[ok]
    p64 = np.asarray(r64.ssr_chi2test.pvalue)[ok]
    p32 = np.asarray(r32.ssr_chi2test.pvalue)[ok]
    assert np.max(np.abs(s32 - s64) / s64) < 1e-2
    assert np.max(np.abs(p32 - p64)) < 1e-3


@pytest.mark.timeout(120)
def test_full_41000_batch_completes():
    """The spec's full size: 41,000 causes, n = 254, maxlag 14; must never hang (LAPACK trap)."""
    rng = np.random.default_rng(11)
    n, L, b = 254, 14, 41_000
    y = _ar(rng, n, 0.8)
    x = rng.standard_normal((b, n))
    x[::7] = np.cumsum(x[::7], -1)
    x[5] = 2.0  # one degenerate weight inside the big batch
    res = granger_tests(y, x, maxlag=L)  # a hang is caught by the test's timeout
    p, _ = min_pvalue(res)
    p = np.asarray(p)
    st = np.asarray(res.status)
    assert st[5] == Status.CONSTANT and np.isnan(p[5])
    assert (st == Status.OK).sum() == b - 1
    # spot-check a few against statsmodels
    for i in (0, 7, 40_999):
        _assert_parity(jax.tree_util.tree_map(lambda a: a, res), i, _statsmodels(y, x[i], L), L)


@pytest.mark.timeout(240)
def test_batch_size_does_not_recompile_and_blocks_equal_one_call():
    """Outside a trace a batch larger than one block is cut into fixed blocks: larger batches of
    other sizes reuse the compiled program, and the blocked results equal one call over the whole
    batch bit for bit (a batch of at most one block is that one call; another chunk size is
    another program and may differ in the last bit)."""
    from jaxprune.granger import BLOCK_CHUNKS, _granger_jit

    rng = np.random.default_rng(7)
    n, L, chunk = 40, 3, 16
    block = chunk * BLOCK_CHUNKS
    x = rng.standard_normal((3 * block + 5, n)).cumsum(1)
    y = rng.standard_normal(n)
    x[4] = 2.0  # a constant series: status CONSTANT in every blocking
    before = _granger_jit._cache_size()
    big = granger_tests(y, x, maxlag=L, chunk_size=chunk)
    granger_tests(y, x[: 2 * block + 1], maxlag=L, chunk_size=chunk)
    assert _granger_jit._cache_size() == before + 1  # both: blocks of `block` lanes
    small = granger_tests(y, x[:5], maxlag=L, chunk_size=chunk)  # one call of its own shape
    whole = _granger_jit(jnp.asarray(y)[None], jnp.asarray(x), maxlag=L, chunk_size=chunk, tol=1e-10)
    np.testing.assert_array_equal(np.asarray(big.status), np.asarray(whole.status))
    assert int(big.status[4]) == Status.CONSTANT
    for name in ("ssr_ftest", "ssr_chi2test", "lrtest", "params_ftest"):
        for field in ("statistic", "pvalue"):
            got, ref = np.asarray(getattr(getattr(big, name), field)), np.asarray(getattr(getattr(whole, name), field))
            # bit-identical: every lane's computation (the p-value's continued fraction included)
            # is independent of the other lanes of its call (before the per-lane stop of the
            # continued fraction, 92 of these p-values differed by 2e-16)
            np.testing.assert_array_equal(got, ref)
            # a program of another chunk size (5 lanes) may round differently (XLA's vectorisation)
            np.testing.assert_allclose(
                np.asarray(getattr(getattr(small, name), field)), ref[:5], rtol=1e-12, atol=1e-14, equal_nan=True
            )
