"""A persistent XLA compilation cache for the command line and the experiment scripts.

A `jaxprune run` compiles dozens of programs (the Granger kernel per series length, the Lyapunov
kernel's blocks, the population epochs, the null controls' draws); on a 2-core CPU that is about
40 % of a one-seed quick mnist5k run's CPU time. JAX can keep compiled programs on disk and
reuse them in later processes (keyed by the program, the backend, the jax / jaxlib version and
the XLA flags, so a stale entry is never used). `enable` turns that on at

* ``$JAX_COMPILATION_CACHE_DIR`` when set (JAX's own variable; the user's choice wins), else
* ``$JAXPRUNE_COMPILATION_CACHE`` when set to a directory, else
* ``$XDG_CACHE_HOME/jaxprune/xla`` (default ``~/.cache/jaxprune/xla``),

and does nothing when ``JAXPRUNE_COMPILATION_CACHE`` is ``0``, ``off`` or ``none``, or when the
directory cannot be created. Only the entry points call it (`jaxprune.cli.main`, the experiment
scripts); importing the package never does. Entries are small (a few MB for a whole run).
"""

from __future__ import annotations

import os
from pathlib import Path

OFF = ("0", "off", "none", "false", "no")


def cache_dir(environ=None) -> Path | None:
    """The directory `enable` would use (None: disabled)."""
    env = os.environ if environ is None else environ
    own = env.get("JAXPRUNE_COMPILATION_CACHE", "").strip()
    if own.lower() in OFF:
        return None
    if env.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(env["JAX_COMPILATION_CACHE_DIR"])
    if own:
        return Path(own).expanduser()
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxprune" / "xla"


def enable(environ=None) -> Path | None:
    """Point JAX's persistent compilation cache at `cache_dir` (see the module doc); returns
    the directory, or None when disabled or not writable. Programs that compile in under 0.5 s
    are not stored (JAX's default threshold is 1 s, many of ours take 0.5-1 s;
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` overrides it)."""
    import jax

    path = cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    env = os.environ if environ is None else environ
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in env:  # else JAX read the user's value
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path
