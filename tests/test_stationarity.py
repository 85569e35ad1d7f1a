"""jaxprune.stationarity: statsmodels adfuller parity, MacKinnon p-values, make_stationary."""

import warnings

import numpy as np
import pytest

from jaxprune.stationarity import adf_default_maxlag, adfuller, mackinnonp, make_stationary


def _sm_adf(x):
    from statsmodels.tsa.stattools import adfuller as sm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sm(x)
    return r[0], r[1], r[2], r[3]


@pytest.mark.parametrize("n", [254, 30])
def test_adfuller_parity(n):
    rng = np.random.default_rng(n)
    e = rng.standard_normal((4, n))
    ar = np.zeros((2, n))
    for t in range(1, n):
        ar[:, t] = 0.7 * ar[:, t - 1] + e[:2, t]
    x = np.concatenate([e, np.cumsum(e, -1), ar])
    r = adfuller(x)
    for i in range(x.shape[0]):
        stat, p, used, nobs = _sm_adf(x[i])
        assert int(r.usedlag[i]) == used and int(r.nobs[i]) == nobs
        np.testing.assert_allclose(float(r.statistic[i]), stat, rtol=1e-8)
        np.testing.assert_allclose(float(r.pvalue[i]), p, rtol=1e-8)


def test_mackinnonp_matches_statsmodels():
    from statsmodels.tsa.adfvalues import mackinnonp as smp

    for t in np.linspace(-25, 5, 301):
        np.testing.assert_allclose(float(mackinnonp(t)), smp(t, regression="c", N=1), rtol=1e-12, atol=1e-300)


def test_default_maxlag_and_degenerate():
    assert adf_default_maxlag(254) == 16 and adf_default_maxlag(30) == 9
    x = np.stack([np.full(50, 2.0), np.r_[np.nan, np.arange(49.0)], np.random.default_rng(0).standard_normal(50)])
    r = adfuller(x)
    np.testing.assert_array_equal(np.asarray(r.status), [2, 1, 0])
    assert np.isnan(float(r.pvalue[0])) and np.isnan(float(r.pvalue[1])) and np.isfinite(float(r.pvalue[2]))
    with pytest.raises(ValueError):
        adfuller(x, maxlag=30)


def test_make_stationary_alignment():
    rng = np.random.default_rng(3)
    n = 120
    y = np.cumsum(rng.standard_normal(n))  # unit root: differenced
    x = np.stack([rng.standard_normal(n), np.cumsum(rng.standard_normal(n))])
    out = make_stationary(y, x)
    assert bool(out.y_differenced) and not bool(out.x_differenced[0]) and bool(out.x_differenced[1])
    np.testing.assert_allclose(np.asarray(out.y), np.diff(y))
    np.testing.assert_allclose(np.asarray(out.x[0]), x[0, 1:])  # first observation dropped
    np.testing.assert_allclose(np.asarray(out.x[1]), np.diff(x[1]))
