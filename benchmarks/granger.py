"""Benchmark: jaxprune.granger vs statsmodels, 41,000 weights, maxlag 14, n = 254.

Run: python benchmarks/granger.py [--weights 41000] [--sample 200] [--chunk 256] [--reps 5]
Timings on a shared machine are noisy: the best of --reps runs is reported, with its process CPU
time next to the wall time; compile time is reported separately.
"""

import argparse
import os
import time
import warnings

import jax
from hardware import cpu_model  # benchmarks/hardware.py (run as scripts)

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxprune.granger import _granger_jit, granger_tests, min_pvalue  # noqa: E402


def timed(f, reps=2):
    """(first call wall s, best wall s, best process CPU s) over ``reps`` further calls."""
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    first = time.perf_counter() - t0
    best = best_cpu = np.inf
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(f())
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return first, best, best_cpu


def compile_seconds(b, n, maxlag, dt, chunk):
    """Trace + XLA compile of one granger_tests shape (what a new shape costs), no run."""
    y = jax.ShapeDtypeStruct((1, n), dt)
    x = jax.ShapeDtypeStruct((b, n), dt)
    t0 = time.perf_counter()
    _granger_jit.lower(y, x, maxlag=maxlag, chunk_size=min(chunk, b), tol=1e-10 if dt == np.float64 else 1e-4).compile()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=int, default=41_000)
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--maxlag", type=int, default=14)
    ap.add_argument("--n", type=int, default=254)
    ap.add_argument("--reps", type=int, default=5, help="timed runs after the first; the best is reported")
    a = ap.parse_args()
    print(f"cpu: {cpu_model()}, cores: {os.cpu_count()}, jax {jax.__version__}, device: {jax.devices()[0]}")
    rng = np.random.default_rng(0)
    n, L, b = a.n, a.maxlag, a.weights
    y = 0.5 * np.exp(-np.arange(n) / 80) + 0.02 * rng.standard_normal(n)  # risk-like
    x = 0.05 * rng.standard_normal((b, n))
    x[::3] = np.cumsum(x[::3], -1)  # some random-walk-like causes
    # the pipeline's two shapes per run: FT (all windows) and PT (n = 25, maxlag capped to 7)
    for dt in (np.float64, np.float32):
        ft = compile_seconds(b, n, L, dt, a.chunk)
        pt = compile_seconds(b, 25, 7, dt, a.chunk)
        print(f"compile {np.dtype(dt).name}: ({b}, n={n}, maxlag={L}) {ft:.2f} s, ({b}, n=25, maxlag=7) {pt:.2f} s")
    res = {}
    for dt in (np.float64, np.float32):
        yd, xd = jnp.asarray(y, dt), jnp.asarray(x, dt)
        # called at once, inside this iteration: the loop variables are the current ones
        first, best, cpu = timed(
            lambda: min_pvalue(granger_tests(yd, xd, maxlag=L, chunk_size=a.chunk)),  # noqa: B023
            reps=a.reps,
        )
        res[dt] = granger_tests(yd, xd, maxlag=L, chunk_size=a.chunk)
        print(
            f"jaxprune {np.dtype(dt).name}: first call {first:.2f} s (executable cached by the compile step above), "
            f"run {best:.3f} s wall (best of {a.reps}; process CPU {cpu:.3f} s) for {b} weights x {L} lags "
            f"= {b / best:,.0f} weights/s"
        )
    from statsmodels.tsa.stattools import grangercausalitytests

    idx = rng.choice(b, size=min(a.sample, b), replace=False)
    t0 = time.perf_counter()
    ref = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in idx:
            r = grangercausalitytests(np.column_stack([y, x[i]]), L)
            ref.append([[r[p][0]["ssr_chi2test"][0], r[p][0]["ssr_chi2test"][1]] for p in range(1, L + 1)])
    sm_t = (time.perf_counter() - t0) / len(idx)
    ref = np.asarray(ref)
    print(f"statsmodels: {sm_t * 1e3:.1f} ms per weight = {1 / sm_t:,.1f} weights/s (all {b}: {sm_t * b / 60:.1f} min)")
    y64, x64 = jnp.asarray(y), jnp.asarray(x)
    _, best64, _ = timed(lambda: granger_tests(y64, x64, maxlag=L, chunk_size=a.chunk), reps=a.reps)
    print(f"speed-up float64: {sm_t * b / best64:,.0f}x")
    for dt, r in res.items():
        s = np.asarray(r.ssr_chi2test.statistic)[idx]
        p = np.asarray(r.ssr_chi2test.pvalue)[idx]
        print(
            f"max deviation vs statsmodels ({np.dtype(dt).name}): statistic rel "
            f"{np.max(np.abs(s - ref[..., 0]) / np.abs(ref[..., 0])):.2e}, p-value abs "
            f"{np.max(np.abs(p - ref[..., 1])):.2e}"
        )


if __name__ == "__main__":
    main()
