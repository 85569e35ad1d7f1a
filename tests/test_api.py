"""Public API: parameter objects (LyapunovParams, GrangerParams), re-exports, deprecated aliases."""

import ast
import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import granger, lyapunov, prune
from jaxprune.granger import GrangerParams, granger_tests, min_pvalue
from jaxprune.lyapunov import LyapunovParams, LyapunovStream, lyap_r, window_le, windowed_le


def _same(a, b):
    """Bit-for-bit equality of two pytrees of arrays (NaNs in the same places)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype and u.shape == v.shape
        assert np.array_equal(u.view(np.uint8), v.view(np.uint8))


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    # (3, 60) random walks: ranges well below r=20 (the one-box path) and, scaled, above it
    x = np.cumsum(rng.standard_normal((3, 60)), axis=-1)
    return np.concatenate([x, 30.0 * x[:1]], axis=0)


# non-default settings so that a setting that is dropped on the way changes the result
P = LyapunovParams(m=3, d=2, theiler=1, s=5, r=2.0, quantize=True)
KW = dict(m=3, d=2, t=1, s=5, r=2.0, quantize=True)


def test_lyapunov_params_equal_keywords(series):
    _same(lyap_r(series, params=P), lyap_r(series, **KW))
    # the object's r default (20.0, the paper's) differs from lyap_r's keyword default (None)
    _same(lyap_r(series, params=LyapunovParams()), lyap_r(series, r=20.0))
    traj = series.T  # (T=60, W=4), steps first
    _same(windowed_le(traj, window=30, stride=10, params=P), windowed_le(traj, window=30, stride=10, **KW))
    _same(windowed_le(traj, window=30, stride=10, params=LyapunovParams()), windowed_le(traj, window=30, stride=10))
    win = jnp.asarray(traj[:30])
    _same(window_le(win, params=P), window_le(win, **KW))
    stream_p = LyapunovStream(4, window=30, stride=10, params=P)
    stream_k = LyapunovStream(4, window=30, stride=10, **KW)
    for k in range(3):
        stream_p.update(traj[10 * k : 10 * k + 30])
        stream_k.update(traj[10 * k : 10 * k + 30])
    _same(stream_p.result(), stream_k.result())
    # and the settings are really used: other params give other curves (both compiled above)
    assert not np.array_equal(
        np.asarray(lyap_r(series, params=P).S), np.asarray(lyap_r(series, params=LyapunovParams()).S), equal_nan=True
    )


def test_lyapunov_params_static_jit_argument(series):
    assert hash(P) == hash(LyapunovParams(**dataclasses.asdict(P)))
    assert P == LyapunovParams(m=3, d=2, theiler=1, s=5, r=2.0, quantize=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.m = 4

    traces = []

    def f(x, params):
        traces.append(params)
        return lyap_r(x, params=params).S

    fj = jax.jit(f, static_argnames="params")
    x = jnp.asarray(series)
    _same(fj(x, P), lyap_r(series, **KW).S)
    fj(x, LyapunovParams(m=3, d=2, theiler=1, s=5, r=2.0, quantize=True))  # equal: cache hit
    assert len(traces) == 1
    fj(x, dataclasses.replace(P, s=4))  # a different value: a new trace
    assert len(traces) == 2


def test_lyapunov_params_and_keywords_refused(series):
    with pytest.raises(TypeError, match="either params= or the keywords m, not both"):
        lyap_r(series, m=2, params=P)
    with pytest.raises(TypeError, match="not both"):
        windowed_le(series.T, window=30, stride=10, r=None, params=P)
    with pytest.raises(TypeError, match="not both"):
        window_le(jnp.asarray(series.T[:30]), quantize=False, params=P)
    with pytest.raises(TypeError, match="LyapunovParams"):
        lyap_r(series, params=dict(m=2))
    with pytest.raises(ValueError, match="m must be >= 1"):
        LyapunovParams(m=0)
    with pytest.raises(ValueError, match="theiler must be >= 0"):
        LyapunovParams(theiler=-1)
    with pytest.raises(TypeError, match="s must be a Python int"):
        LyapunovParams(s=2.0)
    with pytest.raises(TypeError, match="quantize must be a bool"):
        LyapunovParams(quantize="yes")


def test_old_keywords_and_defaults_unchanged(series):
    # lyap_r's keyword defaults: m=2, d=1, t=0, s=20, r=None (TISEAN's), no quantisation
    _same(lyap_r(series), lyap_r(series, m=2, d=1, t=0, s=20, r=None, quantize=False))
    _same(
        windowed_le(series.T, window=30, stride=10),
        windowed_le(series.T, window=30, stride=10, m=2, d=1, t=0, s=20, r=20.0),
    )


@pytest.fixture(scope="module")
def causes():
    rng = np.random.default_rng(1)
    y = np.cumsum(rng.standard_normal(40)) * 0.1
    x = rng.standard_normal((5, 40))
    return y, x


def test_granger_params_equal_keywords(causes):
    y, x = causes
    _same(granger_tests(y, x, params=GrangerParams(maxlag=3)), granger_tests(y, x, maxlag=3))
    res = granger_tests(y, x, maxlag=3)
    _same(min_pvalue(res, params=GrangerParams(maxlag=3, test="lrtest")), min_pvalue(res, "lrtest"))
    _same(min_pvalue(res, params=GrangerParams(maxlag=3)), min_pvalue(res))
    assert not np.array_equal(np.asarray(min_pvalue(res, "lrtest")[0]), np.asarray(min_pvalue(res)[0]))


def test_granger_params_static_jit_argument(causes):
    y, x = causes
    p = GrangerParams(maxlag=3, test="ssr_ftest")
    assert hash(p) == hash(GrangerParams(3, "ssr_ftest")) and p == GrangerParams(3, "ssr_ftest")
    fj = jax.jit(
        lambda y, x, params: min_pvalue(granger_tests(y, x, params=params), params=params), static_argnames="params"
    )
    _same(
        fj(jnp.asarray(y), jnp.asarray(x), p),
        jax.jit(lambda y, x: min_pvalue(granger_tests(y, x, maxlag=3), "ssr_ftest"))(y, x),
    )


def test_granger_params_errors(causes):
    y, x = causes
    with pytest.raises(TypeError, match="not both"):
        granger_tests(y, x, maxlag=3, params=GrangerParams(maxlag=3))
    with pytest.raises(TypeError, match="maxlag= .* is required"):
        granger_tests(y, x)
    res = granger_tests(y, x, maxlag=2)
    with pytest.raises(TypeError, match="not both"):
        min_pvalue(res, "lrtest", params=GrangerParams(maxlag=2))
    with pytest.raises(ValueError, match="test must be one of"):
        GrangerParams(maxlag=2, test="wald")
    with pytest.raises(ValueError, match="maxlag must be >= 1"):
        GrangerParams(maxlag=0)
    with pytest.raises(TypeError, match="maxlag must be an int"):
        GrangerParams(maxlag=2.0)


def test_all_matches_exports_and_typed_imports():
    assert len(jaxprune.__all__) == len(set(jaxprune.__all__))
    assert set(jaxprune.__all__) == set(jaxprune._EXPORTS) | {"__version__"}
    # the TYPE_CHECKING block imports exactly the lazy re-exports, from the same places
    tree = ast.parse(open(jaxprune.__file__).read())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    typed = {a.asname or a.name: (imp.module, a.name) for imp in block.body for a in imp.names}
    assert typed == jaxprune._EXPORTS


def test_public_names_resolve():
    for name in jaxprune.__all__:
        assert getattr(jaxprune, name) is not None, name
    assert jaxprune.LEStatus is lyapunov.Status and jaxprune.GrangerStatus is granger.Status
    assert jaxprune.LyapunovParams is LyapunovParams and jaxprune.GrangerParams is GrangerParams
    assert jaxprune.masked_optimizer is prune.masked_optimizer
    # deprecated aliases still resolve to the renamed objects
    assert prune.masked is prune.masked_optimizer and jaxprune.masked is prune.masked_optimizer
    assert lyapunov.windowed_le_update is lyapunov.window_le
    assert jaxprune.windowed_le_update is window_le
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jaxprune.nope  # noqa: B018


def test_star_import_binds_public_names():
    ns: dict = {}
    exec("from jaxprune import *", ns)
    assert {
        "lyap_r",
        "granger_tests",
        "LyapunovParams",
        "GrangerParams",
        "LEStatus",
        "GrangerStatus",
        "masked_optimizer",
        "window_le",
        "LegcnetConfig",
    } <= set(ns)


def test_import_is_lazy():
    # `import jaxprune` must not import JAX (the CLI's --help stays fast)
    code = "import sys, jaxprune; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_masked_optimizer_alias_behaves_the_same():
    params = {"w": jnp.arange(4.0)}
    mask = {"w": jnp.array([True, False, True, False])}
    grads = {"w": jnp.ones(4)}
    outs = []
    for make in (prune.masked_optimizer, prune.masked):
        tx = make(optax.sgd(0.1), mask)
        upd, _ = tx.update(grads, tx.init(params), params)
        outs.append(upd)
    _same(outs[0], outs[1])
    np.testing.assert_array_equal(np.asarray(outs[0]["w"]), [-0.1, 0.0, -0.1, 0.0])
