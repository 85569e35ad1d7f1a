"""Long windows (--window 160 .. 600): bit-exact TISEAN parity and a compiled program whose size
does not grow with the window.

Windows with more than ``_DIAG_MAX_N`` candidates take the candidate loop
(:func:`jaxprune.lyapunov._slope_onebox_loop`). Unrolled, it made XLA compile one loop body per
candidate (32 s at window 160, > 100 s at 400); as a ``lax.fori_loop`` the program is the same
size at every window. Compile time is checked by counting (lines of the lowered StableHLO), not by
the clock.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import lyapunov as ly
from jaxprune.lyapunov import Status, windowed_le, windowed_le_update
from jaxprune.lyapunov_reference import windowed_le_numpy


def _traj(window, stride, W=5, seed=3):
    """(T, W) float32 trajectories, two windows each: random walks, a quantised one (exact ties
    between candidates, which decide the neighbour), a constant one and one with a spike."""
    T = window + stride
    rng = np.random.default_rng(seed)
    traj = np.cumsum(rng.normal(0, 1e-3, (T, W)), axis=0).astype(np.float32)
    traj[:, 1] = np.round(traj[:, 1] * 400) / 400  # plateaus: many exactly equal D
    traj[:, 2] = 0.25  # constant: status CONSTANT, NaN slope
    traj[window // 2, 3] += 0.5  # a spike: its lone point has no D < 1 (skipped)
    return traj


@pytest.mark.parametrize("window", [160, 400])
def test_long_window_bit_exact_vs_reference(window):
    """windowed_le (parity) and the jitted streaming step equal the literal NumPy loop exactly."""
    stride = window - window // 10
    assert window - 1 - 20 > ly._DIAG_MAX_N  # the candidate loop is what is tested
    traj = _traj(window, stride)
    want = windowed_le_numpy(traj.astype(np.float64), window=window, stride=stride, r=20.0)
    got = windowed_le(traj, window=window, stride=stride, mode="parity")
    np.testing.assert_array_equal(got.le, want)  # bit for bit, NaN where undefined
    assert got.status[0, 2] == Status.CONSTANT and np.all(got.status[:, [0, 1, 3, 4]] == 0)
    assert np.isfinite(got.le[:, [0, 1, 3, 4]]).all()
    step = jax.jit(lambda w: windowed_le_update(w, mode="parity"))  # training scan: lax.cond
    streamed = np.stack([np.asarray(step(jnp.asarray(traj[k * stride : k * stride + window]))[0]) for k in range(2)])
    np.testing.assert_array_equal(streamed, want)


def _hlo_lines(window, stride):
    traj = jnp.zeros((window + stride, 4), jnp.float32)
    kw = {"m": 2, "d": 1, "t": 0, "s": 20, "r": 20.0, "quantize": False, "dtype": np.float64}
    fast = ly._onebox_block.lower(jnp.zeros((window, 8), jnp.float32), **kw).as_text().count("\n")
    step = jax.jit(lambda w: windowed_le_update(w, mode="parity"))
    stream = step.lower(traj[:window]).as_text().count("\n")
    return fast, stream


def test_compiled_program_size_does_not_grow_with_window():
    """Lowered program size (a proxy for XLA compile time, which is roughly linear in it) is the
    same for windows 160, 400 and 600: one loop body, not one copy per candidate."""
    sizes = {w: _hlo_lines(w, w - w // 10) for w in (160, 400, 600)}
    base_fast, base_stream = sizes[160]
    assert base_fast < 2000 and base_stream < 4000, sizes
    for fast, stream in sizes.values():
        assert abs(fast - base_fast) <= 10 and abs(stream - base_stream) <= 10, sizes


def test_long_window_t_and_m_options_vs_reference():
    """Theiler window t > 0 and m = 3, d = 2 through the rolled loop (dynamic Theiler mask and
    dynamic coordinate offsets), against the NumPy loop."""
    window, stride = 120, 108
    traj = _traj(window, stride, seed=11)
    for m, d, t in ((3, 2, 4), (2, 1, 7)):
        want = windowed_le_numpy(traj.astype(np.float64), window=window, stride=stride, m=m, d=d, t=t, r=20.0)
        got = windowed_le(traj, window=window, stride=stride, m=m, d=d, t=t, mode="parity")
        np.testing.assert_array_equal(got.le, want)
