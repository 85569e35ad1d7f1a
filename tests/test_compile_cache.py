"""The entry points' persistent compilation cache: where it goes, how it is turned off, and that
a second process really reuses the first one's programs."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jaxprune import compile_cache


def test_cache_dir_resolution(tmp_path):
    home = str(tmp_path / "home")
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/jaxprune/xla")
    assert compile_cache.cache_dir({"JAX_COMPILATION_CACHE_DIR": "/j", "XDG_CACHE_HOME": "/c"}) == Path("/j")
    assert compile_cache.cache_dir({"JAXPRUNE_COMPILATION_CACHE": "/mine"}) == Path("/mine")
    for off in ("0", "off", "NONE"):
        assert compile_cache.cache_dir({"JAXPRUNE_COMPILATION_CACHE": off, "JAX_COMPILATION_CACHE_DIR": "/j"}) is None
    assert compile_cache.cache_dir({"HOME": home}).parts[-2:] == ("jaxprune", "xla")


def test_enable_sets_jax_config_and_refuses_unwritable(tmp_path):
    old = jax.config.jax_compilation_cache_dir
    try:
        got = compile_cache.enable({"JAXPRUNE_COMPILATION_CACHE": str(tmp_path / "x")})
        assert got == tmp_path / "x" and got.is_dir()
        assert jax.config.jax_compilation_cache_dir == str(got)
        assert compile_cache.enable({"JAXPRUNE_COMPILATION_CACHE": "off"}) is None
        blocker = tmp_path / "file"
        blocker.write_text("")
        assert compile_cache.enable({"JAXPRUNE_COMPILATION_CACHE": str(blocker / "sub")}) is None
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


_PROGRAM = """
import time, jax, jax.numpy as jnp
from jaxprune import compile_cache
compile_cache.enable()
f = jax.jit(lambda x: jnp.linalg.slogdet(jnp.cos(x) @ x.T + 3.0 * jnp.eye(x.shape[0]))[1])
t = time.perf_counter(); f.lower(jnp.ones((64, 64))).compile(); print(time.perf_counter() - t)
"""


@pytest.mark.timeout(120)
def test_second_process_reuses_the_programs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(
        JAXPRUNE_COMPILATION_CACHE=str(tmp_path / "cache"),
        JAX_PLATFORMS="cpu",
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",  # store even this small program
    )
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    run = lambda: subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, timeout=100)  # noqa: E731
    first = run()
    assert first.returncode == 0, first.stderr
    entries = list((tmp_path / "cache").iterdir())
    assert entries, "the first process stored nothing"
    second = run()
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(p.name for p in entries)  # hits only
