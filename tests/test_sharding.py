"""jaxprune.sharding: the weight axis sharded over 4 (forced host) devices gives exactly the
single-device results, for the Lyapunov kernel (parity float64 and fast float32), the Granger
tests (float64) and the pipeline's masks; host blocks under a memory budget change nothing.

The 4-device side runs in a subprocess (tests/sharding_cases.py) because XLA_FLAGS must be set
before JAX starts; this process has one CPU device.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import sharding_cases as cases

from jaxprune import granger, lyapunov, sharding

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def four_proc(tmp_path_factory):
    """Starts the 4-device subprocess; it runs while this process computes `one` (XLA compiles
    on one core, so the two overlap on a 2-core machine)."""
    tmp = tmp_path_factory.mktemp("four")
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", EXPECT_DEVICES="4"
    )
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sharding_cases.py"), str(tmp / "out.npz"), "--pipeline", str(tmp / "run")],
        env=env,
        cwd=HERE,
    )
    yield proc, tmp
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def four(four_proc, one):
    proc, tmp = four_proc
    assert proc.wait(timeout=900) == 0
    return dict(np.load(tmp / "out.npz"))


@pytest.fixture(scope="module")
def one(four_proc, tmp_path_factory):
    assert len(jax.devices()) == 1
    mesh = sharding.weight_mesh()
    out = cases.compute(mesh)
    out.update({f"budget_{k}": v for k, v in cases.compute(mesh, budget=cases.BUDGET).items()})
    out.update(cases.compute(mesh, modes=("parity",)))  # this side only: against windowed_le
    out.update(cases.pipeline_masks(str(tmp_path_factory.mktemp("one"))))
    return out


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def test_four_devices_equal_one_device_exactly(four, one):
    keys = [k for k in four if not k.startswith("pipe_")]
    assert {"le_fast", "le_status_fast", "le_parity", "le_status_parity", "g_ssr_chi2test_p", "g_status"} <= set(keys)
    for k in keys:
        assert _same(four[k], one[k]), k
    assert one["le_parity"].shape == (8, cases.W_LE) and one["g_status"].shape == (cases.W_G,)
    assert one["le_parity"].dtype == np.float64 and one["le_fast"].dtype == np.float32


def test_budget_blocks_equal_unblocked(one):
    assert "budget_le_fast" in one and "budget_g_status" in one
    for k in [k for k in one if k.startswith("budget_")]:
        assert _same(one[k], one[k[len("budget_") :]]), k


def test_sharded_agrees_with_the_plain_kernels(one):
    traj = cases.trajectory()
    for mode, tol in (("parity", 1e-12), ("fast", 1e-4)):
        ref = lyapunov.windowed_le(traj, mode=mode, **cases.LE_KW)
        np.testing.assert_array_equal(one[f"le_status_{mode}"], ref.status)
        np.testing.assert_allclose(one[f"le_{mode}"], ref.le, rtol=tol, atol=tol)
    st = one["le_status_parity"]
    assert (st[:, 5] == lyapunov.Status.CONSTANT).all() and (st[:, 0] == 0).all()
    y, x = cases.granger_inputs()
    ref = granger.granger_tests(y, x, maxlag=4)
    np.testing.assert_array_equal(one["g_status"], np.asarray(ref.status))
    for name in ("ssr_ftest", "ssr_chi2test", "lrtest"):
        np.testing.assert_allclose(one[f"g_{name}_p"], np.asarray(getattr(ref, name).pvalue), rtol=1e-10, atol=1e-14)
    assert one["g_status"][3] == granger.Status.CONSTANT


def test_pipeline_masks_identical_on_four_devices(four, one):
    """Same masks and risk series; the LE series agree closely but not bit for bit: on 4 devices
    the jitted epoch (training + the sharded LE step) is one 4-partition XLA program, and XLA:CPU
    rounds the replicated float32 training steps of such a program differently from the
    one-device program (the LE kernel itself is exact, see the tests above)."""
    for k in ("pipe_risk", "pipe_mask_legcnet_ft", "pipe_mask_legcnet_pt"):
        assert _same(four[k], one[k]), k
    np.testing.assert_allclose(four["pipe_le"], one["pipe_le"], rtol=0.05, atol=1e-3)
    for k in ("pipe_pmin_legcnet_ft", "pipe_pmin_legcnet_pt"):
        np.testing.assert_allclose(four[k], one[k], rtol=0.05, atol=1e-3)
    for k in ("pipe_mask_legcnet_ft", "pipe_mask_legcnet_pt"):  # non-trivial: some pruned, some kept
        assert 0 < one[k].sum() < one[k].size, k


def test_chunk_size_for_budget_and_measured_bytes():
    assert sharding.chunk_size_for_budget(1000.0, 10_000) == 10
    assert sharding.chunk_size_for_budget(1000.0, 10_000, default=4) == 4
    assert sharding.chunk_size_for_budget(1000.0, 10_000, multiple=4) == 8
    assert sharding.chunk_size_for_budget(1000.0, 10, multiple=4) == 4  # at least one chunk
    assert sharding.chunk_size_for_budget(1.0, None, default=256) == 256
    with pytest.raises(ValueError):
        sharding.chunk_size_for_budget(0.0, 100)
    pw = sharding.window_le_bytes_per_weight(30, "float32", m=2, d=1, t=0, s=10, r=20.0, quantize=False)
    assert 30 * 4 < pw < 1e6  # at least the window itself, far below a MB
    mesh = sharding.weight_mesh()
    assert mesh.axis_names == ("weights",) and mesh.size == len(jax.local_devices())


def test_budget_option_in_config():
    from jaxprune.pipeline import LegcnetConfig

    cfg = LegcnetConfig(memory_budget_mb=64)
    assert LegcnetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        LegcnetConfig(memory_budget_mb=0)
