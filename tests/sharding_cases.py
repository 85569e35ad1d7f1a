"""Shared cases of tests/test_sharding.py; run as a script it computes them on every device of
the process (the test starts it with XLA_FLAGS=--xla_force_host_platform_device_count=4 set
before JAX is imported) and writes them to the .npz path given as argv[1]."""

import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

W_LE, W_G = 150, 301  # not multiples of 4


def trajectory():
    rng = np.random.default_rng(0)
    T = 30 + 27 * 7  # 8 windows of 30 steps, stride 27
    traj = np.cumsum(rng.normal(size=(T, W_LE)).astype(np.float32) * 0.01, 0)
    traj[:, 5] = 0.0  # constant: status CONSTANT
    traj[:, 7] *= 3000.0  # range > r: the general (boxed) path
    return traj


def granger_inputs():
    rng = np.random.default_rng(1)
    n = 40
    y = 0.5 + 0.1 * np.cumsum(rng.normal(size=n))
    x = rng.normal(size=(W_G, n))
    x[3] = 1.0  # constant cause
    x[4, :] = np.arange(n)  # trend
    return y, x


LE_KW = dict(window=30, stride=27, m=2, d=1, s=10, r=20.0)
BUDGET = 2e6  # bytes per device: forces small chunks and several blocks


def compute(mesh, *, budget=None, modes=("fast",)):
    from jaxprune import sharding

    traj = trajectory()
    y, x = granger_inputs()
    out = {}
    for mode in modes:
        res = sharding.sharded_windowed_le(
            traj, mode=mode, mesh=mesh, chunk_size=32, memory_budget_bytes=budget, **LE_KW
        )
        out[f"le_{mode}"], out[f"le_status_{mode}"] = res.le, res.status
    g = sharding.sharded_granger_tests(y, x, maxlag=4, mesh=mesh, chunk_size=64, memory_budget_bytes=budget)
    for name in ("ssr_ftest", "ssr_chi2test", "lrtest"):
        out[f"g_{name}_stat"] = g._asdict()[name].statistic
        out[f"g_{name}_p"] = g._asdict()[name].pvalue
    out["g_status"] = g.status
    return out


# pipeline case: stages 1-2 on iris (dense training with the streaming LE, Granger, masks)

from pathlib import Path  # noqa: E402

from jaxprune import pipeline, prune
from jaxprune.data import load_dataset
from jaxprune.pipeline import LegcnetConfig
from jaxprune.train import TrainConfig

CFG = LegcnetConfig(
    train=TrainConfig(hidden=(6,), batch_size=8, epochs=30, window=30, stride=27, learning_rate=0.1),
    maxlag=3,
    pt_windows=16,
    target_accuracy=0.8,
    le_mode="parity",
    verify_sample=4,
)


# 30 epochs x 15 steps = 450 steps: 16 windows, so FT and PT share one Granger shape (compiles
# dominate this test's time). Parity mode: the streaming LE of the pipeline covers the float64
# sharded Lyapunov path (sharded_window_fn), compute() the float32 one.
def pipeline_masks(tmp: str) -> dict:
    data = load_dataset("iris", seed=0)
    dense = pipeline.train_dense(data, CFG, 0, Path(tmp), resume=False, progress=False, checkpoint_every_s=1e9)
    _, like = pipeline._init_params(data, CFG, 0)
    analysis = pipeline.analyze_dense(dense, like, CFG, 0)
    out = {"pipe_le": np.asarray(dense["le"]), "pipe_risk": np.asarray(dense["risk"])}
    for name in ("legcnet_ft", "legcnet_pt"):
        out[f"pipe_mask_{name}"] = prune.flat_keep(analysis["masks"][name])
        out[f"pipe_pmin_{name}"] = analysis["granger"][name].pmin
    return out


if __name__ == "__main__":
    from jaxprune import sharding

    assert len(jax.devices()) == int(os.environ.get("EXPECT_DEVICES", "4")), jax.devices()
    mesh = sharding.weight_mesh()
    arrays = compute(mesh, modes=("fast", "parity"))  # parity: float64, bit-equal promised
    if "--pipeline" in sys.argv:
        arrays.update(pipeline_masks(sys.argv[sys.argv.index("--pipeline") + 1]))
    np.savez(sys.argv[1], **arrays)
