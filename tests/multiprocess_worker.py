"""Worker of tests/test_multiprocess.py: one of N processes of a local multi-process JAX run.

Usage: ``python tests/multiprocess_worker.py OUT.npz [jaxprune run arguments...]`` with
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set. Runs the sharded Lyapunov and
Granger kernels with the weight axis over every process's devices (a global mesh; the worker
checks it spans all processes) on fixed seeded inputs; process 0 saves the gathered results to
OUT.npz. Then, in the same processes (one start-up for both checks), ``jaxprune run`` with the
remaining arguments through the CLI's ``main`` (its ``initialize_from_env`` finds the run already
initialised; its ``finally: shutdown()`` ends it).
"""

import os
import sys
import time

T0 = time.perf_counter()
import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from jaxprune import distributed, sharding


def inputs():
    """Seeded trajectories (T, W) float32 and a risk series: the same in every process."""
    rng = np.random.default_rng(0)
    traj = np.cumsum(rng.normal(0, 1e-3, (190, 37)), axis=0).astype(np.float32)
    traj[:, 5] = 0.5  # a constant weight (status CONSTANT)
    cause = rng.normal(0, 1, (37, 60))
    risk = rng.normal(0, 1, 60)
    risk[1:] += 2.0 * cause[0, :-1]  # weight 0 Granger-causes the risk
    return traj, risk, cause


def log(what):
    pid = os.environ.get("JAX_PROCESS_ID")
    print(f"[{pid}] {time.perf_counter() - T0:6.1f} s {what}", file=sys.stderr, flush=True)


def main(out: str, run_args: list[str]) -> int:
    log("imported")
    assert distributed.initialize_from_env(), "the environment asked for no multi-process run"
    log("initialized")
    try:
        mesh = sharding.weight_mesh()
        assert jax.process_count() > 1 and mesh.size == jax.device_count() > jax.local_device_count()
        traj, risk, cause = inputs()
        le = sharding.sharded_windowed_le(traj, window=100, stride=90, mode="parity", mesh=mesh, chunk_size=8)
        log("sharded LE done")
        g = sharding.sharded_granger_tests(risk, cause, maxlag=2, mesh=mesh, chunk_size=8)
        log("sharded Granger done")
        if distributed.is_primary():
            np.savez(
                out,
                le=le.le,
                status=le.status,
                p=g.ssr_ftest.pvalue,
                stat=g.ssr_ftest.statistic,
                gstatus=g.status,
                n_processes=jax.process_count(),
                n_devices=mesh.size,
            )
        if run_args:
            from jaxprune.cli import main as cli_main

            code = cli_main(run_args)
            log(f"jaxprune run exited {code}")
            return code
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
