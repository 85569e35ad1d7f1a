"""Compile time of the Lyapunov kernel per window length (issue: long windows looked hung).

Usage: ``python benchmarks/compile_time.py [--windows 50 160 300 400 600] [--weights 8]
[--mode parity|fast]``

For each window (stride = 90% of it, two windows per weight), times on this process:
``lower`` (tracing to StableHLO), ``compile`` (XLA) and one ``run`` of the jitted one-box kernel
that :func:`jaxprune.lyapunov.windowed_le` uses, and of the training scan's streaming step
(:func:`jaxprune.lyapunov.windowed_le_update` under ``jax.jit``: both paths behind a
``lax.cond``); also the size of the lowered program (lines of StableHLO text), which must not grow
with the window. Prints a table and, with ``--json FILE``, writes the figures as JSON. Wall and
process CPU seconds are both reported (the machine may be shared: CPU seconds are the steadier).
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np

from jaxprune import lyapunov as ly


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def measure(window: int, weights: int, mode: str, s: int = 20) -> dict:
    stride = window - round(window * 0.1)
    T = window + stride
    dtype = np.float64 if mode == "parity" else np.float32
    rng = np.random.default_rng(0)
    traj = np.cumsum(rng.normal(0, 1e-3, (T, weights)), axis=0).astype(np.float32)
    kw = {"window": window, "stride": stride, "m": 2, "d": 1, "t": 0, "s": s, "r": 20.0, "quantize": False}
    row = {"window": window, "n_candidates": window - s - 1}

    lanes = jnp.asarray(ly._window_lanes(traj, window=window, stride=stride, width=2 * weights))
    onebox = {k: kw[k] for k in ("m", "d", "t", "s", "r", "quantize")} | {"dtype": dtype}
    low, row["lower_s"], _ = _timed(lambda: ly._onebox_block.lower(lanes, **onebox))
    row["hlo_lines"] = low.as_text().count("\n")
    comp, row["compile_s"], row["compile_cpu_s"] = _timed(low.compile)
    _, row["run_s"], _ = _timed(lambda: jax.block_until_ready(comp(lanes)))

    step = jax.jit(lambda w: ly.windowed_le_update(w, mode=mode, s=s))
    win = jnp.asarray(traj[:window])
    slow, _, _ = _timed(lambda: step.lower(win))
    row["stream_hlo_lines"] = slow.as_text().count("\n")
    _, row["stream_compile_s"], row["stream_compile_cpu_s"] = _timed(slow.compile)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, nargs="+", default=[50, 160, 300, 400, 600])
    ap.add_argument("--weights", type=int, default=8)
    ap.add_argument("--mode", choices=("parity", "fast"), default="parity")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    cols = (
        "window",
        "n_candidates",
        "hlo_lines",
        "lower_s",
        "compile_s",
        "compile_cpu_s",
        "run_s",
        "stream_hlo_lines",
        "stream_compile_s",
        "stream_compile_cpu_s",
    )
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, mode {a.mode}, {a.weights} weights x 2 windows")
    print(" ".join(f"{c:>20}" for c in cols))
    rows = []
    for w in a.windows:
        r = measure(w, a.weights, a.mode)
        rows.append(r)
        print(" ".join(f"{r[c]:>20.2f}" if isinstance(r[c], float) else f"{r[c]:>20}" for c in cols), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"jax": jax.__version__, "mode": a.mode, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
