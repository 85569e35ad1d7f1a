"""Benchmark of the Lyapunov kernel on the MNIST-FT map: 41,000 weights x 254 windows of 50 steps.

Usage: ``python benchmarks/lyapunov.py [--fraction F] [--repeat R] [--chunk C] [--sample N]``
(``--fraction 1.0``: the whole map, ~1.9 GB of float32 trajectory).

Times, after compilation and in one process: jaxprune fast mode (float32) and parity mode
(float64) (median of ``--repeat`` runs), the plain NumPy loop (jaxprune.lyapunov_reference) and
``nolds.lyap_r`` (0.5.x signature) on a sample of windows; prints windows/s, ratios, the
extrapolated whole-map time and how often fast mode's slope differs from parity mode's. nolds
fits a line to the whole divergence curve (a different estimator): it is a speed peer only.
The trajectory is synthetic (float32 SGD-like weights: random walk with drift, decaying step
size, a share of dead weights and of quantised plateaus); pass a real one with --traj FILE.npy
((T, W) float32, steps first) to measure fast vs parity on trained weights.
Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
from hardware import cpu_model  # benchmarks/hardware.py (run as scripts)

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

from jaxprune.lyapunov import n_windows, windowed_le  # noqa: E402
from jaxprune.lyapunov_reference import windowed_le_numpy  # noqa: E402

W_FULL, T_FULL, WINDOW, STRIDE = 41_000, 11_475, 50, 45  # 254 windows


def synthetic(T: int, W: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lr = 0.5 / (1 + np.arange(T) / 3000.0)
    w = rng.standard_normal(W).astype(np.float32) * 0.05
    drift = rng.standard_normal(W).astype(np.float32) * 2e-5
    out = np.empty((T, W), np.float32)
    for i in range(T):
        w = w + (lr[i] * 1e-3 * rng.standard_normal(W)).astype(np.float32) + drift
        out[i] = w
    out[:, : W // 6] = out[0, : W // 6]  # dead weights (their pixel is always 0)
    q = slice(W // 6, W // 6 + W // 20)  # plateau-like weights
    out[:, q] = np.round(out[:, q] * 2000) / 2000
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fraction", type=float, default=0.1, help="share of the 41,000 weights")
    ap.add_argument("--chunk", type=int, default=256, help="windowed_le chunk_size")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per mode (median)")
    ap.add_argument("--sample", type=int, default=40, help="windows for NumPy / nolds")
    ap.add_argument("--traj", default=None)
    ap.add_argument("--skip-parity", action="store_true")
    a = ap.parse_args()
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__}, backend "
        f"{jax.default_backend()}, devices {jax.devices()}"
    )
    if a.traj:
        traj = np.load(a.traj).astype(np.float32)
    else:
        W = max(1, int(round(W_FULL * a.fraction)))
        traj = synthetic(T_FULL, W)
    T, W = traj.shape
    nw = n_windows(T, WINDOW, STRIDE)
    total = nw * W
    full = n_windows(T_FULL, WINDOW, STRIDE) * W_FULL
    print(
        f"trajectory {T} steps x {W} weights -> {nw} windows each, {total:,} windows "
        f"= fraction {total / full:.4f} of the whole MNIST-FT map ({full:,}); load average "
        f"{os.getloadavg()[0]:.1f} (a shared machine: timings are noisy)"
    )
    res = {}
    for mode in ("fast", "parity"):
        if mode == "parity" and a.skip_parity:
            continue
        small = traj[:, : min(W, 8)]
        t0 = time.perf_counter()
        windowed_le(small, mode=mode, chunk_size=a.chunk)
        tc = time.perf_counter() - t0
        runs = []
        for _ in range(max(1, a.repeat)):
            t0 = time.perf_counter()
            out = windowed_le(traj, mode=mode, chunk_size=a.chunk)
            runs.append(time.perf_counter() - t0)
        dt = float(np.median(runs))
        res[mode] = out.le
        print(
            f"{mode:7s}: first call (compile + 8 weights) {tc:6.2f} s; run {dt:7.2f} s (median of "
            f"{len(runs)}: {', '.join(f'{v:.2f}' for v in runs)}) = {total / dt:12,.0f} windows/s "
            f"-> whole map {full / (total / dt):7.1f} s"
        )
        res[mode + "_wps"] = total / dt
    if "parity" in res:
        f, p = res["fast"].astype(np.float64), res["parity"]
        both = ~np.isnan(p)
        diff = np.abs(f - p)[both]
        print(
            f"fast vs parity on {both.sum():,} defined slopes: NaN pattern equal "
            f"{np.array_equal(np.isnan(f), np.isnan(p))}; |diff| > 1e-4 in "
            f"{np.mean(diff > 1e-4):.3%}, > 1e-2 in {np.mean(diff > 1e-2):.3%}; "
            f"max {diff.max():.3g}, median of the differing "
            f"{np.median(diff[diff > 1e-4]) if np.any(diff > 1e-4) else 0:.3g}"
        )
    rng = np.random.default_rng(1)
    live = np.nonzero(np.ptp(traj, axis=0) > 0)[0]
    cols = rng.choice(live, size=min(a.sample, live.size), replace=False)
    ks = rng.integers(0, nw, size=cols.size)
    wins = [traj[STRIDE * k : STRIDE * k + WINDOW, c].astype(np.float64) for k, c in zip(ks, cols)]
    t0 = time.perf_counter()
    ref = [windowed_le_numpy(w[:, None])[0, 0] for w in wins]
    np_wps = len(wins) / (time.perf_counter() - t0)
    if "parity" in res:
        par = res["parity"][ks, cols]
        print(f"NumPy loop agrees with parity mode on the sample: {np.allclose(ref, par, atol=1e-12, equal_nan=True)}")
    try:
        import warnings

        import nolds

        warnings.simplefilter("ignore")  # nolds warns about short series / few neighbours
        t0 = time.perf_counter()
        for w in wins:
            # nolds 0.5.2: emb_dim, lag, min_tsep, trajectory_len (20 steps as TISEAN's -s 20)
            nolds.lyap_r(w, emb_dim=2, lag=1, min_tsep=0, trajectory_len=20, fit="poly")
        nolds_wps = len(wins) / (time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001
        print("nolds failed:", e)
        nolds_wps = float("nan")
    print(
        f"NumPy loop: {np_wps:10,.0f} windows/s; nolds.lyap_r: {nolds_wps:10,.0f} windows/s; "
        f"TISEAN (1.96 ms/window): {1 / 1.96e-3:10,.0f} windows/s"
    )
    for mode in ("fast", "parity"):
        if mode + "_wps" in res:
            v = res[mode + "_wps"]
            print(f"{mode}: x{v / np_wps:,.0f} NumPy loop, x{v / nolds_wps:,.0f} nolds, x{v * 1.96e-3:,.0f} TISEAN")


if __name__ == "__main__":
    main()
