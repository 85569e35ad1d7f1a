"""Multi-process runs: start and stop ``jax.distributed`` from the environment.

One ``jaxprune`` process per host (or per GPU), all started with the same command line; the
weight axis of the Lyapunov and Granger kernels is then sharded over every process's devices
(:mod:`jaxprune.sharding`), while training (small, and the same in every process: same seed, same
data) runs replicated in each process. Only process 0 writes the run directory; process ``i > 0``
writes its own stage files and checkpoints to :func:`process_out_dir` (``OUT.process<i>``) so
that no two processes ever write the same file. See docs/multiprocess.md for launch commands.

Environment (read by :func:`initialize_from_env`):

* ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES``,
  ``JAX_PROCESS_ID``: explicit settings; all three, or none.
* ``JAXPRUNE_DISTRIBUTED=1``: call ``jax.distributed.initialize()`` with no arguments, so that JAX
  detects the cluster itself (SLURM, Open MPI, Kubernetes, Cloud TPU).
* Neither: a single-process run; nothing is initialised.

On CPU, cross-process collectives go through gloo (``jax_cpu_collectives_implementation``),
switched on here before initialisation; GPUs use NCCL without any setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = [
    "initialize_from_env",
    "is_initialized",
    "is_primary",
    "process_count",
    "process_index",
    "process_out_dir",
    "shutdown",
]

_ENV_VARS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_state = {"initialized": False}


def _int_env(name: str, value: str, lo: int) -> int:
    try:
        v = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None
    if v < lo:
        raise ValueError(f"{name}={v} must be >= {lo}")
    return v


def _settings(env) -> dict | None:
    """The ``jax.distributed.initialize`` arguments the environment asks for, or None (one
    process). Raises ValueError on an incomplete or inconsistent setting."""
    given = {k: env[k] for k in _ENV_VARS if env.get(k, "").strip()}
    auto = env.get("JAXPRUNE_DISTRIBUTED", "").strip()
    if auto not in ("", "0", "1"):
        raise ValueError(f"JAXPRUNE_DISTRIBUTED={auto!r} must be 0 or 1")
    if given:
        missing = [k for k in _ENV_VARS if k not in given]
        if missing:
            raise ValueError(
                f"multi-process setting incomplete: {', '.join(sorted(given))} set "
                f"but {', '.join(missing)} missing (set all three, or none)"
            )
        n = _int_env("JAX_NUM_PROCESSES", given["JAX_NUM_PROCESSES"], 1)
        pid = _int_env("JAX_PROCESS_ID", given["JAX_PROCESS_ID"], 0)
        if pid >= n:
            raise ValueError(f"JAX_PROCESS_ID={pid} must be < JAX_NUM_PROCESSES={n}")
        addr = given["JAX_COORDINATOR_ADDRESS"].strip()
        if ":" not in addr:
            raise ValueError(f"JAX_COORDINATOR_ADDRESS={addr!r} must be host:port")
        return {"coordinator_address": addr, "num_processes": n, "process_id": pid}
    if auto == "1":
        return {}
    return None


def initialize_from_env(env=None) -> bool:
    """Initialise ``jax.distributed`` when the environment asks for it (module docstring).

    Call before any JAX computation. Returns True when this process is part of a multi-process
    run (initialised now or earlier), False for a plain single-process run. Idempotent.
    """
    if _state["initialized"]:
        return True
    kw = _settings(os.environ if env is None else env)
    if kw is None:
        return False
    if kw.get("num_processes") == 1:
        return False  # a "cluster" of one: nothing to coordinate
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        # CPU devices talk across processes only through gloo (JAX's default: none); GPUs use
        # NCCL whatever this says.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kw)
    _state["initialized"] = True
    return True


def shutdown() -> None:
    """Leave the multi-process run (a no-op when :func:`initialize_from_env` did not start one).

    Every process should call it on exit (``finally``), so that the coordinator (process 0) does
    not wait for a process that is gone."""
    if _state["initialized"]:
        _state["initialized"] = False
        jax.distributed.shutdown()


def is_initialized() -> bool:
    return _state["initialized"]


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_primary() -> bool:
    """Process 0: the one that writes the run directory."""
    return jax.process_index() == 0


def process_out_dir(out_dir) -> Path:
    """Where this process writes: `out_dir` for process 0, ``<out_dir>.process<i>`` (a sibling,
    so the run directory holds one run's files only) for process ``i > 0``."""
    out_dir = Path(out_dir)
    i = jax.process_index()
    return out_dir if i == 0 else out_dir.with_name(f"{out_dir.name}.process{i}")
