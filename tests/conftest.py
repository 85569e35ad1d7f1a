"""Test configuration shared by every test module.

x64 is switched on for the whole suite: the reference checks (TISEAN parity, statsmodels parity)
need float64, and the float32 paths are tested by passing float32 arrays explicitly.

One persistent XLA compilation cache serves the whole session: a fresh temporary directory
(removed at the end), shared through JAX_COMPILATION_CACHE_DIR by the pytest-xdist workers and the
subprocesses that the multi-process, sharding and CLI tests start, so a program that several
processes build (same shapes, same flags) is compiled once. A cache the user set is used as is.
XLA programs are only reused, never changed: results are bit-identical with and without it.
"""

import os
import shutil
import tempfile

# pytest-xdist runs one process per core: on a GPU, each must not reserve most of its memory
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

_OWN_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    # the first process to import this (the xdist controller, or plain pytest) creates it;
    # workers and subprocesses inherit the variable and only read and add entries
    _OWN_CACHE = tempfile.mkdtemp(prefix="jaxprune-test-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])

jax.config.update("jax_enable_x64", True)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
