"""Test configuration shared by every test module.

x64 is switched on for the whole suite: the reference checks (TISEAN parity, statsmodels parity)
need float64, and the float32 paths are tested by passing float32 arrays explicitly.

One persistent XLA compilation cache serves the whole session: a fresh temporary directory
(removed at the end), shared through JAX_COMPILATION_CACHE_DIR by the pytest-xdist workers and the
subprocesses that the multi-process, sharding and CLI tests start, so a program that several
processes build (same shapes, same flags) is compiled once. A cache the user set is used as is.
Every program is stored, not only those that took JAX's default 1 s to compile: the suite's
programs are small (tiny nets, short series), and the same HLO is built again by another test's
jit (a new closure, a new Trainer), by the other xdist worker, and by the subprocesses.
XLA programs are only reused, never changed: results are bit-identical with and without it.
"""

import gc
import os
import shutil
import tempfile

# read by JAX at import, here and in every worker and subprocess (inherited); a value the user
# set is kept
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# pytest-xdist runs one process per core: on a GPU, each must not reserve most of its memory
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest  # noqa: E402

_OWN_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # the first process to import this (the xdist controller, or plain pytest) creates it;
    # workers and subprocesses inherit the variable and only read and add entries
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxprune-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
# also when a plugin imported JAX before this file set the variable
_MIN_SECS = float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_SECS)

jax.config.update("jax_enable_x64", True)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _freeze_the_heap_between_modules():
    """Python's cyclic GC scans every tracked object at each full collection; a worker that ran
    a few modules holds millions of them (traced programs, compiled-function caches), so a test
    that allocates many small objects (statsmodels' reference loops) spent most of its time in
    the GC (measured: 27 of 32 s). At each module start the live heap is collected once and then
    frozen (`gc.freeze`): later collections scan only what the module itself allocates. Nothing
    that a test computes changes; frozen objects still go when their reference count drops."""
    gc.collect()
    gc.freeze()
    yield
