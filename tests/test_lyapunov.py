"""Tests of the Lyapunov kernel (jaxprune.lyapunov) and its NumPy reference.

Parity: every case of the public TISEAN reference set (both input formats, all five option sets),
through the JAX kernel (jitted, batched) and through the literal NumPy loop.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import lyapunov as ly
from jaxprune.lyapunov import LyapunovStream, Status, lyap_r, windowed_le, windowed_le_update
from jaxprune.lyapunov_reference import lyap_r_numpy, quantize_f6, windowed_le_numpy

_HERE = os.path.dirname(os.path.abspath(__file__))
# The TISEAN reference set: $JAXPRUNE_TISEAN_REF (an external reference set in the same format,
# e.g. a newer or larger one), else the copy of the public set in tests/data.
REF_CANDIDATES = [os.environ.get("JAXPRUNE_TISEAN_REF", ""), os.path.join(_HERE, "data", "tisean_lyap_r_public.npz")]


@pytest.fixture(scope="module")
def ref():
    path = next((p for p in REF_CANDIDATES if p and os.path.exists(p)), None)
    assert path is not None, f"no TISEAN reference set at any of {REF_CANDIDATES}"  # never skip
    return dict(np.load(path))


def _opts(z, p):
    r = float(z["param_r"][p])
    return dict(
        m=int(z["param_m"][p]),
        d=int(z["param_d"][p]),
        s=int(z["param_s"][p]),
        t=int(z["param_t"][p]),
        r=None if np.isnan(r) else r,
    )


def _check_case(z, c, S, found, skipped, status):
    st = z["case_status"][c]
    s = len(S) - 1
    if st == "ok":
        assert status == Status.OK, c
        np.testing.assert_array_equal(found, z["found"][c, : s + 1], err_msg=str(c))
        np.testing.assert_allclose(S, z["curves_full"][c, : s + 1], atol=1e-12, rtol=0, err_msg=str(c))
    elif st == "error":
        assert status == Status.CONSTANT, c
        assert np.all(np.isnan(S)) and np.all(found == 0)
    else:  # hang: TISEAN never finished; we finish and report the points
        assert status == Status.OK and skipped > 0, c


def _cases(z, p, fmt, L):
    return np.nonzero((z["case_param"] == p) & (z["case_format"] == fmt) & (z["lengths"][z["case_series"]] == L))[0]


@pytest.mark.parametrize("p", range(5))
def test_reference_parity_jax(ref, p):
    """All cases of option set p, both formats, as one jitted batch per length."""
    z = ref
    o = _opts(z, p)
    f = jax.jit(functools.partial(lyap_r, **o))
    n = 0
    for L in (50, 200):
        cases = np.concatenate([_cases(z, p, "%.17g", L), _cases(z, p, "%f", L)])
        x = np.stack(
            [
                (z["series"] if z["case_format"][c] == "%.17g" else z["series_f6"])[z["case_series"][c], :L]
                for c in cases
            ]
        )
        res = jax.device_get(f(x))
        for k, c in enumerate(cases):
            _check_case(z, c, res.S[k], res.found[k], res.skipped[k], res.status[k])
            n += 1
    assert n == np.sum(z["case_param"] == p)


def test_reference_parity_numpy(ref):
    """The literal loop on a spread of cases (all option sets, formats, statuses)."""
    z = ref
    rng = np.random.default_rng(0)
    short = np.nonzero(z["lengths"][z["case_series"]] == 50)[0]
    pick = np.concatenate([rng.choice(short, 60, replace=False), np.nonzero(z["case_status"] != "ok")[0][::3]])
    for c in pick:
        i, p = z["case_series"][c], z["case_param"][c]
        src = z["series"] if z["case_format"][c] == "%.17g" else z["series_f6"]
        S, found, skipped, status = lyap_r_numpy(src[i, : z["lengths"][i]], **_opts(z, p))
        _check_case(z, c, S, found, skipped, status)


def test_quantize_f6_matches_reference(ref):
    z = ref
    for i in range(z["series"].shape[0]):
        L = z["lengths"][i]
        np.testing.assert_array_equal(quantize_f6(z["series"][i, :L]), z["series_f6"][i, :L])
    # the JAX version on float32-origin data (what training records) is exact too
    w = np.random.default_rng(1).standard_normal(4000).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(np.asarray(ly.quantize_f6_jax(jnp.asarray(w))), quantize_f6(w))
    # and the quantize option feeds the kernels the quantized series
    x = z["series"][z["lengths"] == 50, :50][:10]
    a = lyap_r(x, r=20.0, quantize=True)
    b = lyap_r(quantize_f6(x), r=20.0)
    np.testing.assert_array_equal(np.asarray(a.found), np.asarray(b.found))


def test_no_fma_contraction():
    """Distances must be round(round(a*a) + round(b*b)): fails if XLA/LLVM contracts to an FMA."""
    rng = np.random.default_rng(2)
    x = rng.random((40, 257))
    xs = jnp.asarray(x)
    got = np.asarray(jax.jit(lambda v: ly._dist_matrix(v, 30, 35, 3, 2, True))(xs))
    u = [x[c * 2 : c * 2 + 30][:, None] - x[c * 2 : c * 2 + 35][None] for c in range(3)]
    want = (u[0] * u[0] + u[1] * u[1]) + u[2] * u[2]  # NumPy: separate roundings
    np.testing.assert_array_equal(got, want)
    # the same inside the whole jitted slope kernel (a larger fusion)
    got1 = np.asarray(jax.jit(lambda v: ly._dist(v, 0, 30, 7, 2, 1, True))(xs))
    want1 = (x[:30] - x[7]) ** 2 + (x[1:31] - x[8]) ** 2
    np.testing.assert_array_equal(got1, want1)


def test_rescale_is_a_true_division():
    x = np.random.default_rng(3).standard_normal((50, 300))
    xs, _, _ = jax.jit(lambda v: ly._prepare(v, None, False, True, 2, 1, 20, 0))(jnp.asarray(x))
    lo = x.min(0)
    np.testing.assert_array_equal(np.asarray(xs), (x - lo) / (x.max(0) - lo))


def _traj(T=300, W=24, seed=0):
    """SGD-like float32 weights: random walk + drift, some plateaus, one dead weight."""
    rng = np.random.default_rng(seed)
    w = np.cumsum(rng.standard_normal((T, W)) * 1e-3, 0) + 1e-4 * np.arange(T)[:, None]
    w[:, 0] = np.round(w[:, 0], 3)
    w[:, 1] = 0.25
    w[:, 2] = np.round(w[:, 2] * 200) / 200
    return w.astype(np.float32)


@pytest.mark.parametrize("r", [20.0, None, 1e-3])
def test_windowed_matches_numpy_and_lyap_r(r):
    traj = _traj(T=230, W=9)
    got = windowed_le(traj, r=r, mode="parity")
    assert got.le.shape == (5, 9) and got.le.dtype == np.float64
    np.testing.assert_array_equal(got.end_steps, [50, 95, 140, 185, 230])
    want = windowed_le_numpy(traj.astype(np.float64), r=r)
    np.testing.assert_allclose(got.le, want, atol=1e-12, rtol=0)
    assert np.all(got.status[:, 1] == Status.CONSTANT) and np.all(np.isnan(got.le[:, 1]))
    wins = np.stack([traj[45 * k : 45 * k + 50].T for k in range(5)]).astype(np.float64)
    res = lyap_r(wins, r=r)
    np.testing.assert_allclose(got.le, np.asarray(res.S[..., 1] - res.S[..., 0]), atol=1e-13, rtol=0)


def test_one_compiled_kernel_for_every_trajectory_length_and_width():
    """The one-box kernel takes cut windows in fixed lane blocks: trajectories of other lengths
    and widths, and single windows, reuse its compiled program (one per block width), with the
    results of the NumPy loop."""
    ly._onebox_block(
        jnp.zeros((50, 128), jnp.float32), m=2, d=1, t=0, s=20, r=20.0, quantize=False, dtype=np.dtype("float64")
    )
    n = ly._onebox_block._cache_size()
    for T, W in [(230, 9), (95, 30), (140, 21)]:  # 45, 60, 63 lanes: one 128-lane block each
        traj = _traj(T=T, W=W, seed=T)
        got = windowed_le(traj, mode="parity")
        np.testing.assert_allclose(got.le, windowed_le_numpy(traj.astype(np.float64)), atol=1e-12, rtol=0)
        one = ly.window_le(jnp.asarray(traj[:50]), mode="parity")
        np.testing.assert_array_equal(np.asarray(one[0]), got.le[0])
    assert ly._onebox_block._cache_size() == n


def test_windowed_chunking_and_shapes():
    traj = _traj(T=200, W=12)
    a = windowed_le(traj, chunk_size=5, mode="parity")
    b = windowed_le(traj, chunk_size=64, mode="parity")
    np.testing.assert_array_equal(a.le, b.le)
    c = windowed_le(traj.reshape(200, 3, 4), chunk_size=7, mode="parity")
    np.testing.assert_array_equal(c.le.reshape(a.le.shape), a.le)
    assert c.le.shape == (4, 3, 4) and c.status.shape == (4, 3, 4)
    short = windowed_le(traj[:49])
    assert short.le.shape == (0, 12) and short.end_steps.shape == (0,)


def test_stream_equals_windowed():
    traj = _traj(T=200, W=10)
    ref = windowed_le(traj, mode="parity")
    st = LyapunovStream(10, mode="parity")
    for k in range(ref.le.shape[0]):
        st.update(jnp.asarray(traj[45 * k : 45 * k + 50]))
    out = st.result()
    np.testing.assert_array_equal(out.le, ref.le)
    np.testing.assert_array_equal(out.end_steps, ref.end_steps)
    # jitted once: a second window of the same shape does not recompile
    n = ly._onebox_block._cache_size(), ly._update_jit._cache_size()
    windowed_le_update(jnp.asarray(traj[:50]), mode="parity")
    assert (ly._onebox_block._cache_size(), ly._update_jit._cache_size()) == n


def test_batched_equals_unbatched_and_jit_equals_eager():
    traj = _traj(T=60, W=6, seed=4).T.astype(np.float64)  # (6, 60)
    batch = lyap_r(traj, r=None, s=5, chunk_size=4)
    for i in range(traj.shape[0]):
        one = lyap_r(traj[i], r=None, s=5)
        np.testing.assert_array_equal(np.asarray(one.S), np.asarray(batch.S[i]))
        np.testing.assert_array_equal(np.asarray(one.found), np.asarray(batch.found[i]))
    nested = lyap_r(traj.reshape(2, 3, 60), r=None, s=5, chunk_size=1)
    np.testing.assert_array_equal(np.asarray(nested.S).reshape(6, 6), np.asarray(batch.S))
    traced = []

    def f(x):
        traced.append(1)  # Python side effect: runs once per trace
        return lyap_r(x, r=None, s=5)

    jf = jax.jit(f)
    out = jf(traj)
    np.testing.assert_array_equal(np.asarray(out.S), np.asarray(batch.S))
    jf(traj + 1.0)
    assert len(traced) == 1 and jf._cache_size() == 1


def test_degenerate_inputs():
    x = np.stack(
        [
            np.full(50, 0.3),
            np.r_[np.zeros(49), np.nan],
            np.r_[np.inf, np.ones(49)],
            np.r_[np.zeros(25), np.ones(25)],
            np.linspace(0, 1, 50),
        ]
    )
    res = jax.device_get(lyap_r(x, r=None))
    assert list(res.status) == [Status.CONSTANT, Status.NONFINITE, Status.NONFINITE, Status.OK, Status.OK]
    assert np.all(np.isnan(res.S[:3])) and np.all(res.found[:3] == 0)
    assert res.skipped[3] > 0  # a step: TISEAN hangs; here it finishes and reports
    # too short for m, d, s (shape only), and empty inputs
    short = jax.device_get(lyap_r(np.random.default_rng(0).random((3, 22)), m=2, s=20))
    assert np.all(short.status == Status.TOO_SHORT) and np.all(np.isnan(short.S))
    empty = lyap_r(np.zeros((2, 0)))
    assert empty.S.shape == (2, 21) and np.all(np.asarray(empty.status) == Status.TOO_SHORT)
    assert lyap_r(np.zeros((0, 50))).S.shape == (0, 21)
    # a spike: one point with no neighbour below 1 -> skipped, finishes at once
    spike = np.zeros(50)
    spike[10] = 1.0
    sp = lyap_r(spike, r=20.0)
    assert int(sp.skipped) >= 1 and int(sp.status) == Status.OK
    np.testing.assert_array_equal(np.asarray(sp.found), lyap_r_numpy(spike, r=20.0)[1])


def test_bad_arguments():
    x = np.random.default_rng(0).random(50)
    with pytest.raises(ValueError):
        lyap_r(x, m=0)
    with pytest.raises(ValueError):
        lyap_r(x, s=-1)
    with pytest.raises(ValueError):
        lyap_r(x, r=0.0)
    with pytest.raises(TypeError):
        lyap_r(np.arange(50))
    with pytest.raises(TypeError):
        lyap_r(x, m=2.0)
    with pytest.raises(ValueError):
        windowed_le(np.zeros((100, 3)), stride=0)
    with pytest.raises(ValueError):
        windowed_le(np.zeros((100, 3)), window=20)
    with pytest.raises(ValueError):
        windowed_le(np.zeros((100, 3)), s=0)
    with pytest.raises(ValueError):
        windowed_le(np.zeros((100, 3), np.float32), mode="exact")


def test_float64_without_x64_raises():
    with jax.enable_x64(False):
        with pytest.raises(TypeError, match="x64"):
            lyap_r(np.random.default_rng(0).random(50))
        with pytest.raises(TypeError, match="x64"):
            windowed_le(np.zeros((100, 2), np.float32), mode="parity")


def test_float32_fast_mode():
    traj = _traj(T=300, W=16)
    fast = windowed_le(traj, mode="fast")
    par = windowed_le(traj, mode="parity")
    assert fast.le.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(fast.le), np.isnan(par.le))
    diff = np.abs(np.asarray(fast.le, np.float64) - par.le)
    # float32 rescaling breaks exact ties differently on the 1e-3 plateaus of column 0 (measured
    # 0.037); every other slope agrees to float32 rounding (measured max 2.0e-6; column 1 is
    # constant, NaN on both sides)
    assert np.all(np.isnan(diff[:, 1])) and np.isfinite(diff[:, 2:]).mean() > 0.9
    assert np.nanmax(diff[:, 2:]) < 5e-6
    assert np.nanmax(diff[:, 0]) < 0.1
    res = lyap_r(traj.T[3:7, :50], r=20.0)
    assert res.S.dtype == jnp.float32 and np.all(np.asarray(res.status) == Status.OK)


def test_general_path_fallback_when_range_exceeds_r():
    """eps0 = r / interval < 1 for one window of a chunk: the boxed path must be taken."""
    # test_windowed_matches_numpy_and_lyap_r's shape and settings (r = 20): its compiled program
    traj = _traj(T=230, W=9)
    traj[:, 3] *= 5e4  # interval > r = 20 in this weight
    got = windowed_le(traj, r=20.0, mode="parity")
    assert np.isfinite(got.le[:, 3]).all()
    np.testing.assert_allclose(got.le, windowed_le_numpy(traj.astype(np.float64), r=20.0), atol=1e-12, rtol=0)


# ----------------------------------------------------------------------------- one-box kernel


@functools.partial(jax.jit, static_argnames=("m", "d", "t", "s"))
def _onebox(x, *, m, d, t, s):
    """The diagonal one-box kernel on x (B, L) float64: per reference point (nref, B) the
    neighbour's D, D(n+1, j+1) (NaN: no neighbour) and the smallest admissible D."""
    xs, _, _ = ly._prepare(x.T, 20.0, False, True, m, d, s, t)
    return ly._onebox_rows(xs, m=m, d=d, t=t, s=s, exact=True)


def _sums(best, d1, dmin):
    """S(0), S(1), found (2, B), skipped (B,) from the kernel's rows (TISEAN's order of sums)."""
    has = ~np.isnan(d1)
    use1 = has & (d1 > 0)
    l0 = np.where(has, np.log(np.where(has, best, 1.0)), 0.0).sum(0)
    l1 = np.where(use1, np.log(np.where(use1, d1, 1.0)), 0.0).sum(0)
    found = np.stack([has.sum(0), use1.sum(0)])
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(found > 0, np.stack([l0, l1]) / found / 2.0, np.nan)
    return S, found, (~(dmin < 1)).sum(0)


def _onebox_numpy(x, m, d, t, s):
    """TISEAN's one-box neighbour per reference point in NumPy float64 (separate roundings):
    the smallest D in (0, 1) over |n - j| > t, ties to the largest j. x (L,) -> best, d1 (nref,)."""
    L = x.shape[0]
    N = L - (m - 1) * d - s
    nref = N - t
    xs = (x - x.min()) / (x.max() - x.min())
    a = np.arange(N + 1)

    def D(rows, cols):
        acc = 0.0
        for c in range(m):
            u = xs[rows[:, None] + c * d] - xs[cols[None, :] + c * d]
            acc = acc + u * u
        return acc

    Dm = D(a, a)  # (N+1, N+1)
    best = np.full(nref, np.nan)
    d1 = np.full(nref, np.nan)
    for n in range(nref):
        j = np.arange(N)
        v = Dm[n, :N]
        ok = (np.abs(n - j) > t) & (v > 0) & (v < 1)
        if ok.any():
            best[n] = v[ok].min()
            jb = j[ok & (v == best[n])].max()
            d1[n] = Dm[n + 1, jb + 1]
    return best, d1


def _check_rows(x, best, d1, m, d, t, s):
    """The kernel's neighbours == NumPy's, bit for bit (D values and tie-breaking)."""
    for k in range(x.shape[0]):
        bn, dn = _onebox_numpy(x[k], m, d, t, s)
        has = ~np.isnan(dn)
        np.testing.assert_array_equal(~np.isnan(d1[:, k]), has, err_msg=str(k))
        np.testing.assert_array_equal(best[has, k], bn[has], err_msg=str(k))
        np.testing.assert_array_equal(d1[has, k], dn[has], err_msg=str(k))


def test_onebox_kernel_reference_set(ref):
    """Every r = 20 case whose range is < 20 (one box): TISEAN's S(0), S(1), found; the same
    neighbours as NumPy (D bits and ties) and as the closed form of lyap_r."""
    z = ref
    n = 0
    for p in range(5):
        o = _opts(z, p)
        if o["r"] is None:
            continue
        if 50 - (o["m"] - 1) * o["d"] - o["s"] > ly._DIAG_MAX_N:
            continue  # longer windows take the candidate loop (the previous kernel)
        L = 50
        # both input formats in one batch (series are independent): one compile per option set
        cases = np.concatenate([_cases(z, p, "%.17g", L), _cases(z, p, "%f", L)])
        x = np.stack(
            [
                (z["series"] if z["case_format"][c] == "%.17g" else z["series_f6"])[z["case_series"][c], :L]
                for c in cases
            ]
        )
        rng_ = np.ptp(x, axis=1)
        keep = (z["case_status"][cases] == "ok") & (rng_ > 0) & (rng_ < o["r"])
        cases, x = cases[keep], x[keep]
        assert set(z["case_format"][cases]) == {"%.17g", "%f"}
        best, d1, dmin = jax.device_get(_onebox(x, m=o["m"], d=o["d"], t=o["t"], s=o["s"]))
        S, found, skipped = _sums(best, d1, dmin)
        full = jax.device_get(lyap_r(x, **o))
        for k, c in enumerate(cases):
            np.testing.assert_array_equal(found[:, k], z["found"][c, :2], err_msg=str(c))
            np.testing.assert_allclose(S[:, k], z["curves_full"][c, :2], atol=1e-12, rtol=0, err_msg=str(c))
        _check_rows(x, best, d1, o["m"], o["d"], o["t"], o["s"])  # float64 bits
        np.testing.assert_allclose(S.T, full.S[:, :2], atol=1e-14, rtol=0)
        np.testing.assert_array_equal(found.T, full.found[:, :2])
        np.testing.assert_array_equal(skipped, full.skipped)
        n += len(cases)
    assert n > 50


@pytest.mark.parametrize("m,d,t,s", [(3, 2, 3, 15), (1, 1, 0, 20), (4, 1, 1, 18), (2, 3, 0, 20)])
def test_onebox_kernel_general_options(m, d, t, s):
    """Other embeddings / Theiler windows, on tie-rich data: NumPy's neighbours bit for bit,
    lyap_r's closed form and the literal loop."""
    rng = np.random.default_rng(m * 100 + d * 10 + t)
    w = np.cumsum(rng.standard_normal((60, 50)), 1)
    w[::3] = np.round(w[::3])  # plateaus and exact ties
    w[1::7] = np.round(w[1::7] / 4) * 4
    best, d1, dmin = jax.device_get(_onebox(w, m=m, d=d, t=t, s=s))
    _check_rows(w, best, d1, m, d, t, s)
    S, found, skipped = _sums(best, d1, dmin)
    full = jax.device_get(lyap_r(w, m=m, d=d, t=t, s=s, r=1e6))
    np.testing.assert_allclose(S.T, full.S[:, :2], atol=1e-14, rtol=0)
    np.testing.assert_array_equal(found.T, full.found[:, :2])
    np.testing.assert_array_equal(skipped, full.skipped)
    for i in range(0, 60, 9):  # and the literal loop
        Sn, fn, skn, _ = lyap_r_numpy(w[i], m=m, d=d, t=t, s=s, r=1e6)
        np.testing.assert_array_equal(found[:, i], fn[:2])
        np.testing.assert_allclose(S[:, i], Sn[:2], atol=1e-12, rtol=0)
        assert skipped[i] == skn


def test_windowed_blocks_equal_unchunked():
    """Several one-box blocks (the last one padded) == one window at a time == the NumPy loop."""
    T, W = 45 * 99 + 50, 100  # 100 windows per weight -> blocks of 40 weights in parity mode
    traj = _traj(T=T, W=W, seed=5)
    got = windowed_le(traj, mode="parity")
    assert ly._fast_block(100, 8) < W
    one = np.stack(
        [np.asarray(windowed_le_update(jnp.asarray(traj[45 * k : 45 * k + 50]), mode="parity")[0]) for k in range(100)]
    )
    np.testing.assert_array_equal(got.le, one)
    for k, w in [(0, 0), (3, 2), (50, 7), (99, 41), (99, 99), (60, 80)]:
        want = windowed_le_numpy(traj[45 * k : 45 * k + 50, w].astype(np.float64))[0]
        np.testing.assert_allclose(got.le[k, w], want, atol=1e-12, rtol=0, equal_nan=True)
    fast = windowed_le(traj, mode="fast", chunk_size=7)
    np.testing.assert_array_equal(np.isnan(fast.le), np.isnan(got.le))


def test_streaming_under_jit_in_lane_blocks(monkeypatch):
    """Under an outer jit (training's epoch) a window is cut into lane blocks of _STREAM_LANES
    (the last one padded) and each block picks its path: equal to the standalone kernel bit for
    bit, including a block that must take the general path (a weight whose range exceeds r)."""
    monkeypatch.setattr(ly, "_STREAM_LANES", {4: 16, 8: 8})  # 45 weights -> 6 blocks of 8
    traj = _traj(T=95, W=45, seed=11)
    traj[:, 20] *= 5e4  # interval > r = 20: block 2 needs the general path
    for mode in ("parity", "fast"):
        want = windowed_le(traj, mode=mode)
        traced = []

        def step(w):  # traced within this iteration only
            traced.append(1)  # noqa: B023
            return windowed_le_update(w, mode=mode)  # noqa: B023

        jstep = jax.jit(step)
        got = [jstep(jnp.asarray(traj[45 * k : 45 * k + 50])) for k in range(2)]
        le = np.stack([np.asarray(g[0]) for g in got])
        if mode == "parity":  # float64: bit for bit
            np.testing.assert_array_equal(le, want.le)
        else:  # float32: another XLA program, rounding differs (measured 2.4e-7)
            np.testing.assert_allclose(le, want.le, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(np.isnan(le), np.isnan(want.le))
        np.testing.assert_array_equal(np.stack([np.asarray(g[1]) for g in got]), want.status)
        assert len(traced) == 1  # the second window reuses the compiled step
    ref = windowed_le_numpy(traj[:50, 20].astype(np.float64))[0]
    assert np.isfinite(ref)
    np.testing.assert_allclose(np.asarray(got[0][0])[20], ref, rtol=2e-5)


def test_streaming_outside_jit_in_standalone_lane_blocks(monkeypatch):
    """Outside jit (the Trainer applies its window function after the compiled epoch) a wide
    window runs in the standalone kernel's lane blocks (_FAST_LANES; the last block overlaps the
    one before it): equal to the standalone kernel bit for bit in both modes, including a block
    redone on the general path (a weight whose range exceeds r), one compiled block for all."""
    monkeypatch.setattr(ly, "_FAST_LANES", {4: 16, 8: 16})  # 45 weights -> blocks at 0, 16, 29
    traj = _traj(T=95, W=45, seed=12)
    traj[:, 20] *= 5e4  # interval > r = 20: the block at 16 needs the general path
    calls = []
    block = ly._onebox_block
    monkeypatch.setattr(ly, "_onebox_block", lambda x, **k: calls.append(x.shape) or block(x, **k))
    window_calls = []
    for mode in ("parity", "fast"):
        want = windowed_le(traj, mode=mode)
        n = len(calls)
        got = [ly.window_le(jnp.asarray(traj[45 * k : 45 * k + 50]), mode=mode) for k in range(2)]
        window_calls += calls[n:]
        np.testing.assert_array_equal(np.stack([np.asarray(g[0]) for g in got]), want.le)
        np.testing.assert_array_equal(np.stack([np.asarray(g[1]) for g in got]), want.status)
        assert got[0][1].dtype == jnp.int8 and got[0][0].shape == (45,)
    # modes x windows x blocks: the blocked path ran, each block the kernel's one shape, which
    # windowed_le's blocks (8 weights x 2 windows) share
    assert window_calls == [(50, 16)] * (2 * 2 * 3) and set(calls) == {(50, 16)}
    ref = windowed_le_numpy(traj[:50, 20].astype(np.float64))[0]
    np.testing.assert_allclose(np.asarray(got[0][0])[20], ref, rtol=2e-5)


@pytest.mark.parametrize("budget_mb", [None, 1.0])
def test_pipeline_window_fn_equals_standalone(budget_mb):
    """`pipeline.le_window_fn` (settings as one LyapunovParams; with a memory budget the sharded,
    chunked step): parity slopes equal to `windowed_le` bit for bit, the verify sample is the raw
    window's columns, statuses int8."""
    from jaxprune.config import LegcnetConfig, LyapunovConfig
    from jaxprune.pipeline import le_window_fn

    cfg = LegcnetConfig(lyapunov=LyapunovConfig(le_mode="parity", s=10), memory_budget_mb=budget_mb)
    traj = _traj(T=50, W=40, seed=13)
    traj[:, 5] *= 5e4  # interval > r: the general path
    want = windowed_le(traj, window=50, stride=45, mode="parity", s=10)
    sample = np.array([3, 5, 39])
    out = le_window_fn(cfg, sample)(jnp.asarray(traj))
    np.testing.assert_array_equal(np.asarray(out["le"]), want.le[0])
    np.testing.assert_array_equal(np.asarray(out["status"]), want.status[0])
    assert out["status"].dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(out["sample"]), traj[:, sample])
