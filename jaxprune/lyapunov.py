"""TISEAN-exact largest Lyapunov exponents (``lyap_r``, Rosenstein) for many series at once.

Public API
----------
* :class:`LyapunovParams` -- the settings ``m, d, theiler, s, r, quantize`` as one hashable value
  (a single static ``jax.jit`` argument). Every entry point takes ``params=`` or the loose
  keywords ``m=, d=, t=, s=, r=, quantize=`` (``t`` = theiler), not both.
* :func:`lyap_r` -- TISEAN ``lyap_r`` on series ``x`` of shape ``(..., L)``; returns a
  :class:`LyapResult` ``(S (..., s+1), found (..., s+1), skipped (...), status (...))``. Usable
  under ``jax.jit`` (the settings and ``chunk_size`` are static Python values).
* :func:`windowed_le` -- per-window slope ``S(1) - S(0)`` of trajectories ``(T, ...)`` (steps first,
  as training records them); chunked over weights, returns a :class:`WindowedLE` of NumPy arrays
  ``le (n_windows, ...)``, ``end_steps (n_windows,)``, ``status (n_windows, ...)``.
* :func:`window_le` / :class:`LyapunovStream` -- the streaming form: one window
  ``(window, n_weights)`` at a time, as the training ring buffer yields it. ``windowed_le_update``
  is the deprecated name of :func:`window_le`.
* :func:`quantize_f6` (re-exported from :mod:`jaxprune.lyapunov_reference`) -- MATLAB ``%f``
  quantisation; ``quantize=True`` in every entry point applies it to the inputs.
* :class:`Status` (``jaxprune.LEStatus``) -- OK / CONSTANT / TOO_SHORT / NONFINITE.

Modes: **parity** (float64 input, ``jax_enable_x64`` on) reproduces TISEAN 3.0 bit for bit,
including its box-order tie-breaking; **fast** (float32 input) runs the same algorithm in float32
(near-ties may pick other neighbours). Passing float64 data while x64 is disabled raises.

docs/lyapunov.md states the semantics (the closed form evaluated here, the one-box path), the
guards against XLA's reciprocal division and FMA contraction (nothing for a user to set) and the
status codes; docs/scaling.md the memory of each path and how ``chunk_size`` bounds it.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxprune import windows as _win
from jaxprune.lyapunov_reference import MAX_LEVELS, quantize_f6

__all__ = [
    "Status",
    "LyapunovParams",
    "LyapResult",
    "WindowedLE",
    "lyap_r",
    "windowed_le",
    "window_le",
    "windowed_le_update",
    "window_end_steps",
    "n_windows",
    "LyapunovStream",
    "quantize_f6",
    "quantize_f6_jax",
]


class Status(enum.IntEnum):
    """Per-series outcome (int8 in results)."""

    OK = 0
    CONSTANT = 1  # max == min: TISEAN refuses the series
    TOO_SHORT = 2  # L - (m-1)d - s < t + 2: no admissible (n, j) pair
    NONFINITE = 3  # NaN or inf in the series


class LyapResult(NamedTuple):
    """Result of :func:`lyap_r` for x of shape (..., L).

    S: (..., s+1) float (input dtype), NaN where found == 0.
    found: (..., s+1) int32, reference points contributing to S(i).
    skipped: (...) int32, reference points TISEAN would hang on (no admissible D < 1).
    status: (...) int8, a :class:`Status`.
    """

    S: jax.Array
    found: jax.Array
    skipped: jax.Array
    status: jax.Array


class WindowedLE(NamedTuple):
    """Result of :func:`windowed_le` for traj of shape (T, ...).

    le: (n_windows, ...) float (mode dtype), S(1) - S(0) per window, NaN where undefined.
    end_steps: (n_windows,) int64, the paper's end step of each window (:func:`window_end_steps`).
    status: (n_windows, ...) int8, the :class:`Status` of each window.
    """

    le: np.ndarray
    end_steps: np.ndarray
    status: np.ndarray


@dataclasses.dataclass(frozen=True)
class LyapunovParams:
    """The settings of TISEAN ``lyap_r -m m -d d -t theiler -s s -r r`` as one hashable value.

    Frozen (hashable, compared by value), so it can be one static argument of ``jax.jit``
    (``static_argnames="params"``). Every kernel takes ``params=LyapunovParams(...)`` as an
    alternative to the loose keywords ``m=, d=, t=, s=, r=, quantize=`` (``theiler`` is the
    keyword ``t``); giving both is an error. Defaults are the paper's ``lyap_r -m2 -d1 -s20
    -r20``; ``r=None`` is TISEAN's own default neighbourhood (interval / 1000).

    m: embedding dimension >= 1. d: delay >= 1. theiler: Theiler window >= 0 (``-t``).
    s: number of iterations >= 0 (``S`` has s + 1 entries). r: neighbourhood in data units
    (finite, > 0) or None. quantize: apply MATLAB ``%f`` quantisation to the inputs first.
    """

    m: int = 2
    d: int = 1
    theiler: int = 0
    s: int = 20
    r: float | None = 20.0
    quantize: bool = False

    def __post_init__(self):
        try:
            _check_static(self.m, self.d, self.theiler, self.s, self.r)
        except (TypeError, ValueError) as e:  # name the field as the user spelt it
            msg = str(e)
            raise type(e)("theiler" + msg[1:] if msg.startswith("t ") else msg) from None
        if not isinstance(self.quantize, (bool, np.bool_)):
            raise TypeError(f"quantize must be a bool, got {type(self.quantize).__name__}")


class _Unset:
    """Marks a keyword the caller did not pass (so ``params=`` plus a keyword can be refused)."""

    def __repr__(self):
        return "<default>"


_UNSET = _Unset()


def _settings(fn: str, params, defaults: dict, **given) -> dict:
    """The kernel keywords ``m, d, t, s, r, quantize`` from ``params`` or the loose keywords.

    given: the keywords as passed (``_UNSET`` where omitted); defaults: the function's own
    defaults for the omitted ones. Raises when both ``params`` and a keyword are given.
    """
    passed = sorted(k for k, v in given.items() if v is not _UNSET)
    if params is None:
        return {k: (defaults[k] if v is _UNSET else v) for k, v in given.items()}
    if not isinstance(params, LyapunovParams):
        raise TypeError(f"{fn}: params must be a LyapunovParams, got {type(params).__name__}")
    if passed:
        raise TypeError(f"{fn}: give either params= or the keywords {', '.join(passed)}, not both")
    return dict(m=params.m, d=params.d, t=params.theiler, s=params.s, r=params.r, quantize=bool(params.quantize))


_KW_DEFAULTS = dict(m=2, d=1, t=0, s=20, r=20.0, quantize=False)


# ----------------------------------------------------------------------------- validation


def _check_static(m, d, t, s, r):
    for name, v, lo in (("m", m, 1), ("d", d, 1), ("t", t, 0), ("s", s, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be a Python int (static), got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
    if r is not None:
        r = float(r)
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"r must be a finite positive float or None, got {r}")
    return r


def _resolve_dtype(x, mode: str = "auto"):
    """The compute dtype for x: float64 = parity, float32 = fast. Raises before device work."""
    if mode not in ("auto", "parity", "fast"):
        raise ValueError(f"mode must be 'auto', 'parity' or 'fast', got {mode!r}")
    dt = np.dtype(x.dtype) if hasattr(x, "dtype") else np.result_type(np.asarray(x))
    if not np.issubdtype(dt, np.floating):
        raise TypeError(f"x must be a float32/float64 array, got dtype {dt}")
    want = {"parity": np.float64, "fast": np.float32}.get(mode, dt)
    want = np.dtype(np.float64 if want == np.float64 else np.float32)
    if want == np.float64 and not jax.config.jax_enable_x64:
        raise TypeError(
            "float64 (parity mode) needs x64: call "
            "jax.config.update('jax_enable_x64', True) before using jaxprune, "
            "or pass float32 data / mode='fast'"
        )
    return want


# ----------------------------------------------------------------------------- exact pieces


def _sq(u, exact: bool):
    """u*u that cannot be contracted with a following add into an FMA (when exact).

    The select on ``u == u`` depends on the data (NaN), so it is neither folded by XLA nor by
    LLVM, and the add that consumes it no longer sees an fmul operand.
    """
    return jnp.where(u == u, u * u, u) if exact else u * u


def _true_div(a, b):
    """a / b elementwise with b broadcast to a's shape behind a barrier (no reciprocal rewrite)."""
    b = lax.optimization_barrier(jnp.broadcast_to(b, jnp.shape(a)))
    return a / b


def quantize_f6_jax(x: jax.Array) -> jax.Array:
    """MATLAB ``%f`` (6 decimals) in JAX: ``rint(x * 1e6) / 1e6`` with a true division.

    Elementwise: any shape in, the same shape and dtype out. Exact (equal to
    :func:`quantize_f6`) whenever ``x * 1e6`` is exact in the dtype, e.g. float32 weights cast to
    float64 (24 + 14 bits), which is what training records; for arbitrary float64 a value within
    an ulp of a half-millionth could round the other way (use the NumPy :func:`quantize_f6` on
    the host then). In float32 it is only approximate (fast mode).
    """
    return _true_div(jnp.rint(x * 1e6), jnp.asarray(1e6, x.dtype))


def _box(q):
    """TISEAN's ``(int)(q) & 255`` for q >= 0 (or NaN); out-of-range -> INT_MIN & 255 = 0."""
    q = jnp.where(q < 2.0**31, q, 0.0)
    return q.astype(jnp.int32) & 255


def _dist(xs, a0: int, na: int, b0, m: int, d: int, exact: bool):
    """D(a, b) for a in [a0, a0+na) (rows) against b given by ``b0``.

    xs: (L, B). ``b0`` is an int (one candidate, broadcast) or an int array (na, B) of first
    indices (gathered). Returns (na, B), accumulated c = 0..m-1 from 0.0 like TISEAN.
    """
    acc = None
    for c in range(m):
        xa = xs[a0 + c * d : a0 + c * d + na]
        if isinstance(b0, int):
            xb = xs[b0 + c * d][None]
        else:
            xb = jnp.take_along_axis(xs, b0 + c * d, axis=0)
        sq = _sq(xa - xb, exact)
        acc = sq if acc is None else acc + sq
    return acc


def _dist_matrix(xs, nref: int, N: int, m: int, d: int, exact: bool):
    """D[n, j, b] for n < nref, j < N: (nref, N, B)."""
    acc = None
    for c in range(m):
        u = xs[c * d : c * d + nref][:, None, :] - xs[c * d : c * d + N][None, :, :]
        sq = _sq(u, exact)
        acc = sq if acc is None else acc + sq
    return acc


# ----------------------------------------------------------------------------- preparation


def _prepare(x, r, quantize: bool, exact: bool, m: int, d: int, s: int, t: int):
    """x: (L, B) -> xs (L, B) rescaled, eps0 (B,), status (B,) int8."""
    L = x.shape[0]
    if quantize:
        x = quantize_f6_jax(x)
    finite = jnp.all(jnp.isfinite(x), axis=0)
    x = jnp.where(finite[None], x, 0.0)  # keep garbage out of the kernels; flagged below
    lo = jnp.min(x, axis=0)
    interval = jnp.max(x, axis=0) - lo
    const = interval == 0
    safe = jnp.where(const, jnp.ones_like(interval), interval)
    xs = _true_div(x - lo[None], safe[None])
    if r is None:
        eps0 = jnp.full_like(safe, 1e-3)
    else:
        eps0 = jnp.asarray(r, x.dtype) / safe  # scalar numerator: no reciprocal rewrite
    too_short = (L - (m - 1) * d - s) < t + 2
    status = jnp.where(const, Status.CONSTANT, Status.OK)
    status = jnp.where(finite, status, Status.NONFINITE)
    if too_short:
        status = jnp.full_like(status, Status.TOO_SHORT)
    return xs, eps0, status.astype(jnp.int8)


def _row_sum(a):
    """Sum over axis 0 in TISEAN's order, ``((0 + a[0]) + a[1]) + ...``, for any lane count.

    ``jnp.sum(a, axis=0)`` is not: XLA CPU reassociates the reduction differently for different
    shapes (last-bit differences between chunk sizes). A loop over the rows fixes the order.
    """

    def body(i, acc):
        return acc + lax.dynamic_index_in_dim(a, i, 0, keepdims=False)

    return lax.fori_loop(0, a.shape[0], body, jnp.zeros(a.shape[1:], a.dtype))


def _valid_mask(nref: int, N: int, t: int):
    n = np.arange(nref)[:, None]
    j = np.arange(N)[None, :]
    return np.abs(n - j) > t  # (nref, N) static


# ----------------------------------------------------------------------------- neighbours


def _neighbours_onebox(D, valid, exact_dtype):
    """All points in one box, level 0 accepts every D < 1: min positive D, ties -> largest j.

    D: (nref, N, B). Returns jbest (nref, B) int32, has (nref, B) bool, skipped (nref, B) bool.
    """
    N = D.shape[1]
    v = valid[:, :, None]
    Dv = jnp.where(v, D, jnp.inf)
    skipped = ~(jnp.min(Dv, axis=1) < 1)
    pos = v & (D > 0) & (D < 1)
    P = jnp.min(jnp.where(pos, D, jnp.inf), axis=1)
    j = jnp.arange(N, dtype=jnp.int32)[None, :, None]
    jbest = jnp.max(jnp.where(pos & (D == P[:, None]), j, -1), axis=1)
    has = jbest >= 0
    return jnp.maximum(jbest, 0), has, skipped


def _level_accept(xs, D, valid, e, nref, N, m, d):
    """TISEAN's acceptance at the level with eps = e (nref, B), per reference point.

    Returns acc (nref, N, B) bool and the scan-order key (nref, N, B) int32 (smaller = met first).
    """
    last = (m - 1) * d
    e2 = e * e
    inv = 1.0 / e  # TISEAN: epsinv = 1.0/eps, then xs * epsinv
    bxn = _box(xs[:nref] * inv)
    byn = _box(xs[last : last + nref] * inv)
    bxj = _box(xs[None, :N] * inv[:, None])
    byj = _box(xs[None, last : last + N] * inv[:, None])
    sx = (bxj - bxn[:, None] + 1) & 255
    sy = (byj - byn[:, None] + 1) & 255
    inblock = (sx <= 2) & (sy <= 2)
    acc = valid[:, :, None] & inblock & (D <= e2[:, None]) & (D < 1)
    j = jnp.arange(N, dtype=jnp.int32)[None, :, None]
    key = (sx * 3 + sy) * N + (N - 1 - j)
    return acc, key


def _first_level(Dmin, pending, eps0):
    """eps_k0 (nref, B): the first level with eps*eps >= Dmin, eps iterated *= 1.1 from eps0."""

    def cond(st):
        it, _, _, pend = st
        return (it < MAX_LEVELS) & jnp.any(pend)

    def body(st):
        it, eps, esel, pend = st
        hit = pend & (Dmin <= (eps * eps)[None])
        esel = jnp.where(hit, eps[None], esel)
        return it + 1, eps * 1.1, esel, pend & ~hit

    init = (jnp.int32(0), eps0, jnp.broadcast_to(eps0[None], Dmin.shape), pending)
    _, _, esel, pend = lax.while_loop(cond, body, init)
    return esel, pend  # pend: never reached within MAX_LEVELS (eps0 == 0): treated as skipped


def _neighbours_general(xs, D, valid, eps0, ok, nref, N, m, d):
    """The closed form of TISEAN's level-by-level search with boxes. Shapes as onebox."""
    v = valid[:, :, None]
    Dmin = jnp.min(jnp.where(v, D, jnp.inf), axis=1)
    skipped = ~(Dmin < 1)
    pending = ~skipped & ok[None]
    e0, never = _first_level(Dmin, pending, eps0)
    skipped = skipped | never
    acc, key = _level_accept(xs, D, valid, e0, nref, N, m, d)
    need_next = pending & ~never & ~jnp.any(acc, axis=1)

    def next_level(_):
        acc1, key1 = _level_accept(xs, D, valid, e0 * 1.1, nref, N, m, d)
        sel = need_next[:, None]
        return jnp.where(sel, acc1, acc), jnp.where(sel, key1, key)

    acc, key = lax.cond(jnp.any(need_next), next_level, lambda _: (acc, key), None)
    pos = acc & (D > 0)
    P = jnp.min(jnp.where(pos, D, jnp.inf), axis=1)
    big = jnp.int32(9 * N + N)
    kmin = jnp.min(jnp.where(pos & (D == P[:, None]), key, big), axis=1)
    has = (kmin < big) & ~skipped
    jbest = N - 1 - kmin % N
    return jnp.where(has, jbest, 0), has, skipped


# ----------------------------------------------------------------------------- core


def _core(x, *, m, d, t, s, r, quantize, exact, n_out):
    """x: (L, B) -> lyap sums (n_out, B), found (n_out, B) int32, skipped (B,), status (B,)."""
    L, B = x.shape
    N = L - (m - 1) * d - s
    nref = N - t
    xs, eps0, status = _prepare(x, r, quantize, exact, m, d, s, t)
    if N < t + 2:
        z = jnp.zeros((n_out, B), x.dtype)
        return z, jnp.zeros((n_out, B), jnp.int32), jnp.zeros((B,), jnp.int32), status
    ok = status == Status.OK
    valid = _valid_mask(nref, N, t)
    D = _dist_matrix(xs, nref, N, m, d, exact)

    def general(_):
        return _neighbours_general(xs, D, valid, eps0, ok, nref, N, m, d)

    def onebox(_):
        return _neighbours_onebox(D, valid, x.dtype)

    if r is None:  # eps0 = 1e-3: always the general path
        jbest, has, skipped = general(None)
    else:
        easy = jnp.all((eps0 > 1) | ~ok)
        jbest, has, skipped = lax.cond(easy, onebox, general, None)
    has = has & ok[None]
    lyaps, founds = [], []
    for i in range(n_out):
        delta = _dist(xs, i, nref, jbest + i, m, d, exact)
        use = has & (delta > 0)
        lyaps.append(_row_sum(jnp.where(use, jnp.log(jnp.where(use, delta, 1.0)), 0.0)))
        founds.append(jnp.sum(use, axis=0, dtype=jnp.int32))
    skipped = jnp.sum(skipped & ok[None], axis=0, dtype=jnp.int32)
    return jnp.stack(lyaps), jnp.stack(founds), skipped, status


def _finish(lyap, found):
    """S = lyap / found / 2 (TISEAN's order), NaN where found == 0."""
    f = found.astype(lyap.dtype)
    return jnp.where(found > 0, lyap / jnp.where(found > 0, f, 1.0) / 2.0, jnp.nan)


def _default_chunk(L, m, d, s, t):
    N = max(L - (m - 1) * d - s, 1)
    per = max(N * max(N - t, 1), 1)
    return int(max(1, min(4096, (1 << 22) // per)))


def lyap_r(
    x: ArrayLike,
    *,
    m: int = _UNSET,
    d: int = _UNSET,
    t: int = _UNSET,
    s: int = _UNSET,
    r: float | None = _UNSET,
    quantize: bool = _UNSET,
    chunk_size: int | None = None,
    params: LyapunovParams | None = None,
) -> LyapResult:
    """TISEAN ``lyap_r -m m -d d -t t -s s [-r r]`` on every series of x.

    Settings: either ``params=LyapunovParams(...)`` or the keywords (defaults ``m=2, d=1, t=0,
    s=20, r=None, quantize=False``; note r=None here, TISEAN's default), not both. jit-able with
    the keyword arguments static (e.g. ``jax.jit(functools.partial(lyap_r, m=3))``) or with
    ``params`` as one static argument (``jax.jit(f, static_argnames="params")``).

    Args:
      x: series ``(..., L)``, float64 (parity mode, needs x64) or float32 (fast mode); a NumPy
        or JAX array.
      m, d, t, s: embedding dimension, delay, Theiler window, iterations (static ints).
      r: neighbourhood in data units (``-r``) or None (TISEAN's default, interval / 1000).
      quantize: apply MATLAB ``%f`` quantisation first (see :func:`quantize_f6_jax`).
      chunk_size: series per ``lax.map`` step (memory bound, see docs/scaling.md); results do
        not depend on it.
      params: a :class:`LyapunovParams` instead of the keywords.

    Returns:
      :class:`LyapResult` of JAX arrays: ``S (..., s+1)`` in x's dtype (NaN where
      ``found == 0``), ``found (..., s+1)`` int32, ``skipped (...)`` int32, ``status (...)``
      int8 (:class:`Status`).
    """
    kw = _settings("lyap_r", params, dict(_KW_DEFAULTS, r=None), m=m, d=d, t=t, s=s, r=r, quantize=quantize)
    m, d, t, s, r, quantize = (kw[k] for k in ("m", "d", "t", "s", "r", "quantize"))
    r = _check_static(m, d, t, s, r)
    dtype = _resolve_dtype(x)
    x = jnp.asarray(x, dtype)
    if x.ndim < 1:
        raise ValueError("x must have at least one axis (..., L)")
    lead, L = x.shape[:-1], x.shape[-1]
    B = int(np.prod(lead, dtype=np.int64))
    if L == 0 or B == 0:
        S = jnp.full(lead + (s + 1,), jnp.nan, dtype)
        return LyapResult(
            S,
            jnp.zeros(lead + (s + 1,), jnp.int32),
            jnp.zeros(lead, jnp.int32),
            jnp.full(lead, Status.TOO_SHORT if L == 0 else Status.OK, jnp.int8),
        )
    if chunk_size is None:
        chunk_size = _default_chunk(L, m, d, s, t)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return _lyap_r_jit(x, m=m, d=d, t=t, s=s, r=r, quantize=bool(quantize), C=min(int(chunk_size), B))


@functools.partial(jax.jit, static_argnames=("m", "d", "t", "s", "r", "quantize", "C"))
def _lyap_r_jit(x, *, m, d, t, s, r, quantize, C):
    """Jitted body of :func:`lyap_r` (inlined when the caller is itself jitted)."""
    dtype = x.dtype
    lead, L = x.shape[:-1], x.shape[-1]
    B = int(np.prod(lead, dtype=np.int64))
    nchunks = -(-B // C)
    xt = x.reshape(B, L)
    if nchunks * C != B:  # pad with constant series (status CONSTANT, dropped below)
        xt = jnp.concatenate([xt, jnp.zeros((nchunks * C - B, L), dtype)], axis=0)
    xc = jnp.transpose(xt.reshape(nchunks, C, L), (0, 2, 1))  # (nchunks, L, C): lanes last
    core = functools.partial(_core, m=m, d=d, t=t, s=s, r=r, quantize=quantize, exact=dtype == jnp.float64, n_out=s + 1)
    lyap, found, skipped, status = lax.map(core, xc)
    # (nchunks, s+1, C) -> (B, s+1)
    lyap = jnp.transpose(lyap, (0, 2, 1)).reshape(nchunks * C, s + 1)[:B]
    found = jnp.transpose(found, (0, 2, 1)).reshape(nchunks * C, s + 1)[:B]
    S = _finish(lyap, found)
    return LyapResult(
        S.reshape(lead + (s + 1,)),
        found.reshape(lead + (s + 1,)),
        skipped.reshape(nchunks * C)[:B].reshape(lead),
        status.reshape(nchunks * C)[:B].reshape(lead),
    )


# ----------------------------------------------------------------------------- windows


def n_windows(T: int, window: int = 50, stride: int = 45) -> int:
    """Number of complete windows in ``T`` steps: `jaxprune.windows.n_windows` (argument ``T``).

    ``(T - window) // stride + 1``, 0 if ``T < window``.
    """
    return _win.n_windows(T, window, stride)


def window_end_steps(n: int, window: int = 50, stride: int = 45, offset: int | None = None) -> np.ndarray:
    """End step of each of ``n`` windows: `jaxprune.windows.window_end_steps` (argument ``n``).

    ``stride * (k + 1) + offset``, default ``offset = window - stride``; int64 ``(n,)``.
    """
    return _win.window_end_steps(n, window, stride, offset)


def _check_window(window, stride, m, d, s, t):
    for name, v in (("window", window), ("stride", stride)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if stride <= 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    if s < 1:
        raise ValueError("the per-window slope S(1) - S(0) needs s >= 1")
    if window - (m - 1) * d - s < t + 2:
        raise ValueError(
            f"window={window} too short for m={m}, d={d}, s={s}, t={t}: needs window >= {(m - 1) * d + s + t + 2}"
        )


def _onebox_rows(xs, *, m, d, t, s, exact):
    """Neighbours of the one-box case (every point in one box, level 0), walking the diagonals.

    xs: (L, B) rescaled, lanes last. D is symmetric (``(a - b)**2 == (b - a)**2`` exactly), so each
    unordered pair is computed once: for each diagonal k = j - n > t, ``D_k[p] = D(p, p + k)`` for
    p = 0..N-k, from the squares ``e_k[q] = (xs[q] - xs[q + k])**2`` shared by the m coordinates
    and accumulated c = 0, 1, ..., m-1 from the first square (bit-identical to TISEAN's
    ``0.0 + ...`` sum, since ``0.0 + e == e``). The pair (p, p + k) is a candidate of row p (the
    "high" candidates j > n, met in increasing j: ``<=`` keeps the last of equal D, i.e. the
    largest j) and of row p + k (the "low" candidates j < n, met in decreasing j: strict ``<``
    keeps the first, again the largest j); the divergence one step later is ``D_k[p + 1]`` in
    both cases. Per row the two classes merge with ties to the high class (larger j). All points
    in one box and level 0 accepting every D < 1, this is TISEAN's neighbour: the smallest
    positive D < 1, ties to the largest j.

    Every array is a (B,) lane vector (per row and diagonal), so XLA fuses the row chains into
    vectorised loop kernels; callers keep B around a few thousand lanes so that the kernels'
    operands stay in L2 (see :func:`_fast_block`). Per (unordered) pair: one difference, square
    and add per coordinate's square, two for the positive test, three per row update.
    Returns, each (nref, B): best (the neighbour's D; 1.0 or prev(1.0) when there is none), d1
    (``D(n+1, j+1)`` of the neighbour j, NaN when there is none), dmin (smallest admissible D).
    """
    L, B = xs.shape
    N = L - (m - 1) * d - s
    nref = N - t
    dt = xs.dtype
    below_one = jnp.asarray(np.nextafter(np.array(1.0, dt), np.array(0.0, dt)), dt)
    one = jnp.ones((B,), dt)
    inf = jnp.asarray(np.inf, dt)
    nan = jnp.full((B,), np.nan, dt)
    x = [xs[i] for i in range(L)]
    bH = [jnp.full((B,), below_one, dt)] * nref  # high class: accept D <= prev(1), i.e. D < 1
    dH = [nan] * nref
    bL = [one] * nref  # low class: strict D < best, from 1
    dL = [nan] * nref
    dmin = [jnp.full((B,), np.inf, dt)] * nref  # smallest admissible D (skipped count)
    for k in range(t + 1, N):
        npos = N - k + 1  # D_k[p] for p = 0..N-k (p = N-k only as a divergence)
        e = [_sq(x[q] - x[q + k], exact) for q in range(npos + (m - 1) * d)]
        D = []
        for p in range(npos):
            acc = e[p]
            for c in range(1, m):
                acc = acc + e[p + c * d]
            D.append(acc)
        for p in range(N - k):  # pair (p, p + k), both in [0, N)
            Dp = jnp.where(D[p] > 0, D[p], inf)
            if p < nref:  # row p, candidate j = p + k
                dmin[p] = jnp.minimum(dmin[p], D[p])
                u = Dp <= bH[p]
                bH[p] = jnp.where(u, Dp, bH[p])
                dH[p] = jnp.where(u, D[p + 1], dH[p])
            n = p + k
            if n < nref:  # row n, candidate j = p
                dmin[n] = jnp.minimum(dmin[n], D[p])
                u = Dp < bL[n]
                bL[n] = jnp.where(u, Dp, bL[n])
                dL[n] = jnp.where(u, D[p + 1], dL[n])
    best, d1 = [], []
    for n in range(nref):
        use_h = ~jnp.isnan(dH[n]) & ~(bL[n] < bH[n])
        best.append(jnp.where(use_h, bH[n], bL[n]))
        d1.append(jnp.where(use_h, dH[n], dL[n]))
    return jnp.stack(best), jnp.stack(d1), jnp.stack(dmin)


# The diagonal kernel unrolls one small op chain per pair: (N - t)**2 / 2 pairs, ~12 HLO ops each
# (406 pairs for the paper's windows of 50: ~10 s to compile); beyond this many candidates the
# candidate loop (a rolled lax.fori_loop over N steps on (N - t, B) arrays: a program of the same
# size at every window) is used instead.
_DIAG_MAX_N = 32


def _slope_onebox(xs, *, m, d, t, s, exact):
    """Fast path of the slope (one box, level 0): :func:`_onebox_rows`, then the log sums
    (windows with more than ``_DIAG_MAX_N`` candidates: :func:`_slope_onebox_loop`).

    xs: (L, B) rescaled. Returns lyap (2, B), found (2, B) int32, skipped (B,) int32.
    """
    if xs.shape[0] - (m - 1) * d - s > _DIAG_MAX_N:
        return _slope_onebox_loop(xs, m=m, d=d, t=t, s=s, exact=exact)
    best, d1, dmin = _onebox_rows(xs, m=m, d=d, t=t, s=s, exact=exact)
    has = ~jnp.isnan(d1)
    use1 = has & (d1 > 0)
    lyap0 = _row_sum(jnp.where(has, jnp.log(best), 0.0))
    lyap1 = _row_sum(jnp.where(use1, jnp.log(jnp.where(use1, d1, 1.0)), 0.0))
    found = jnp.stack([jnp.sum(has, 0, dtype=jnp.int32), jnp.sum(use1, 0, dtype=jnp.int32)])
    skipped = jnp.sum(~(dmin < 1), axis=0, dtype=jnp.int32)
    return jnp.stack([lyap0, lyap1]), found, skipped


def _slope_onebox_loop(xs, *, m, d, t, s, exact):
    """One-box slope for long windows (see :func:`_slope_onebox`): one pass over candidates.

    xs: (L, B) rescaled. Walks the candidates j = 0..N-1 in a ``lax.fori_loop`` keeping, per
    reference point, the best D (ties -> the later, i.e. larger, j: TISEAN's scan in decreasing j
    with strict <), the divergence one step later D(n+1, j+1) of that best candidate, and the
    smallest admissible D (for the skipped count). Holds ~8 arrays of (N - t + 1, B); no
    (N, N, B) matrix, no gather. The loop is rolled, not unrolled: the compiled program has one
    loop body whatever the window (an unrolled Python loop made XLA compile O(N) copies: 32 s at
    window 160, > 100 s at 400). Each step does the same elementwise float operations in the same
    order as the unrolled form (the column D(., j) is computed once, as ``col_next`` of step
    j - 1), so the results are bit-identical.
    Returns lyap (2, B), found (2, B) int32, skipped (B,) int32.
    """
    L, B = xs.shape
    N = L - (m - 1) * d - s
    nref = N - t
    rows = nref + 1  # D(n+1, j+1) needs one more reference row
    dt = xs.dtype
    below_one = jnp.asarray(np.nextafter(np.array(1.0, dt), np.array(0.0, dt)), dt)
    n_idx = jnp.arange(nref, dtype=jnp.int32)[:, None]

    def column(j):
        """D(n, j) for n in [0, rows): (rows, B), accumulated c = 0..m-1 like :func:`_dist`."""
        acc = None
        for c in range(m):
            xa = xs[c * d : c * d + rows]
            xb = lax.dynamic_index_in_dim(xs, j + c * d, 0, keepdims=True)  # (1, B)
            sq = _sq(xa - xb, exact)
            acc = sq if acc is None else acc + sq
        return acc

    def body(j, carry):
        best, d1, dmin, col = carry
        col_next = column(j + 1)  # j + 1 <= N: in range (s >= 1)
        Dj = col[:nref]
        bad = jnp.abs(n_idx - j) <= t  # the Theiler window (t = 0: n == j only)
        Dj = jnp.where(bad, jnp.inf, Dj)
        dmin = jnp.minimum(dmin, Dj)
        Dp = jnp.where(Dj > 0, Dj, jnp.inf)
        upd = Dp <= best
        best = jnp.where(upd, Dp, best)
        d1 = jnp.where(upd, col_next[1:], d1)
        return best, d1, dmin, col_next

    init = (
        jnp.full((nref, B), below_one, dt),  # accept D <= prev(1), i.e. D < 1
        jnp.full((nref, B), jnp.nan, dt),
        jnp.full((nref, B), jnp.inf, dt),
        column(jnp.int32(0)),
    )
    best, d1, dmin, _ = lax.fori_loop(0, N, body, init)
    has = ~jnp.isnan(d1)
    use1 = has & (d1 > 0)
    lyap0 = _row_sum(jnp.where(has, jnp.log(best), 0.0))
    lyap1 = _row_sum(jnp.where(use1, jnp.log(jnp.where(use1, d1, 1.0)), 0.0))
    found = jnp.stack([jnp.sum(has, 0, dtype=jnp.int32), jnp.sum(use1, 0, dtype=jnp.int32)])
    skipped = jnp.sum(~(dmin < 1), axis=0, dtype=jnp.int32)
    return jnp.stack([lyap0, lyap1]), found, skipped


def _slope_core(x, *, m, d, t, s, r, quantize, exact, path="cond"):
    """x: (L, B) windows (lanes last) -> slope (B,), status (B,) int8.

    path: "cond" decides between the one-box and the general path on device (works under an
    outer jit): the one-box kernel runs unconditionally, as top-level code, and only the rare
    general path sits in a ``lax.cond`` branch (XLA:CPU runs a conditional's branches markedly
    slower than top-level code); "onebox" / "general" force one (the caller checked
    the ``easy`` flag of :func:`_onebox_block`).
    """
    if r is None or path == "general":
        lyap, found, _, status = _core(x, m=m, d=d, t=t, s=s, r=r, quantize=quantize, exact=exact, n_out=2)
    else:
        xs, eps0, status = _prepare(x, r, quantize, exact, m, d, s, t)
        lyap, found, _ = _slope_onebox(xs, m=m, d=d, t=t, s=s, exact=exact)
        if path == "cond":
            easy = jnp.all((eps0 > 1) | (status != Status.OK))
            lyap, found = lax.cond(
                easy,
                lambda x: (lyap, found),
                lambda x: _core(x, m=m, d=d, t=t, s=s, r=r, quantize=quantize, exact=exact, n_out=2)[:2],
                x,
            )
    S = _finish(lyap, found)
    slope = jnp.where(status == Status.OK, S[1] - S[0], jnp.nan)
    return slope, status


def _windows(traj, window, stride):
    """traj (T, C) -> (window, n_windows * C): window k of weight c in lane k * C + c."""
    T, C = traj.shape
    nw = n_windows(T, window, stride)
    idx = stride * np.arange(nw)[None, :] + np.arange(window)[:, None]  # (window, nw) static
    return traj[idx].reshape(window, nw * C)


_STATIC = ("m", "d", "t", "s", "r", "quantize", "window", "stride")


@functools.partial(jax.jit, static_argnames=_STATIC + ("path",))
def _windowed_chunk(traj, *, window, stride, m, d, t, s, r, quantize, path):
    """traj: (T, C) one weight chunk -> le (n_windows, C), status (n_windows, C)."""
    T, C = traj.shape
    nw = n_windows(T, window, stride)
    slope, status = _slope_core(
        _windows(traj, window, stride),
        m=m,
        d=d,
        t=t,
        s=s,
        r=r,
        quantize=quantize,
        exact=traj.dtype == jnp.float64,
        path=path,
    )
    return slope.reshape(nw, C), status.reshape(nw, C)


# Lanes (windows) per device step of the one-box path: the kernel's per-row vectors
# (B * itemsize bytes each, a few dozen live per fused kernel) stay in L2 around 4-8k lanes;
# 16k lanes and more ran 2-4x slower on a 2-core EPYC (benchmarks/lyapunov.py). 32 lanes short
# of a power of two: rows 2**k lanes apart alias in the cache (measured: 4,096 float64 lanes
# ~15 % slower than 4,092).
_FAST_LANES = {4: 8160, 8: 4064}


def _fast_block(nw: int, itemsize: int) -> int:
    """Weights per device step of the one-box path for windows of nw per weight."""
    return max(1, _FAST_LANES.get(itemsize, 4096) // max(nw, 1))


def _onebox_width(lanes: int, itemsize: int) -> int:
    """Lanes of the compiled one-box block (:func:`_onebox_block`) for ``lanes`` lanes of work.

    Wide work runs in blocks of ``_FAST_LANES``; narrower work is padded to the next power of
    two from 128 (and one weight with more windows than ``_FAST_LANES`` to the next power of two
    above). So the kernel, which takes ~10 s to compile for the paper's windows of 50, compiles
    for a handful of shapes per (window, options, dtype), whatever the trajectory length, the
    number of weights or the population size (it used to compile for every (T, weights) shape).
    Widths that are multiples of 32 (all of these) also keep float32 results independent of the
    block a lane sits in (measured: blocks of 16 to 8192 lanes, shifted lanes, bit for bit; a
    48-lane block was not).
    """
    cap = _FAST_LANES.get(itemsize, 4096)
    pow2 = max(128, 1 << max(lanes - 1, 0).bit_length())
    return pow2 if lanes > cap else min(cap, pow2)


@functools.partial(jax.jit, static_argnames=("m", "d", "t", "s", "r", "quantize", "dtype"))
def _onebox_block(x, *, m, d, t, s, r, quantize, dtype):
    """One-box attempt on a block of windows x (L, width), lanes last, cast to dtype here (float32
    -> float64 is exact; callers send float32 data as is) ->
    slope (width,), status (width,) int8, easy () (whether the one-box path was exact for every
    lane: else the caller redoes the block on the general path). Lanes are independent, so a
    lane's result does not depend on the block it sits in; padding lanes are constant (status
    CONSTANT, dropped). The one compiled program of :func:`windowed_le` and :func:`window_le`."""
    x = x.astype(dtype)
    exact = x.dtype == jnp.float64
    xs, eps0, status = _prepare(x, r, quantize, exact, m, d, s, t)
    easy = jnp.all((eps0 > 1) | (status != Status.OK))
    lyap, found, _ = _slope_onebox(xs, m=m, d=d, t=t, s=s, exact=exact)
    S = _finish(lyap, found)
    slope = jnp.where(status == Status.OK, S[1] - S[0], jnp.nan)
    return slope, status, easy


def _window_lanes(traj, *, window, stride, width):
    """traj (T, C) -> the windows (window, width): window k of weight c in lane k * C + c, lanes
    past n_windows * C constant 0. NumPy data is cut on the host (XLA:CPU's gather took ~25 % of
    the kernel's time), JAX arrays on their device; both are cheap, unlike the kernel they feed."""
    if isinstance(traj, jax.Array):
        return _window_lanes_jit(traj, window=window, stride=stride, width=width)
    T, C = traj.shape
    idx = stride * np.arange(n_windows(T, window, stride))[None, :] + np.arange(window)[:, None]
    x = np.zeros((window, width), traj.dtype)
    x[:, : idx.shape[1] * C] = traj[idx].reshape(window, -1)
    return jnp.asarray(x)


@functools.partial(jax.jit, static_argnames=("window", "stride", "width"))
def _window_lanes_jit(traj, *, window, stride, width):
    x = _windows(traj, window, stride)
    return jnp.pad(x, ((0, 0), (0, width - x.shape[1])))


def windowed_le(
    traj: ArrayLike,
    *,
    window: int = 50,
    stride: int = 45,
    m: int = _UNSET,
    d: int = _UNSET,
    t: int = _UNSET,
    s: int = _UNSET,
    r: float | None = _UNSET,
    quantize: bool = _UNSET,
    mode: str = "auto",
    chunk_size: int = 256,
    end_offset: int | None = None,
    params: LyapunovParams | None = None,
) -> WindowedLE:
    """Per-window Lyapunov slope S(1) - S(0) of every trajectory in ``traj``.

    Settings: either ``params=LyapunovParams(...)`` or the keywords (defaults ``m=2, d=1, t=0,
    s=20, r=20.0, quantize=False``), not both. Windows: all complete ones,
    ``n_windows = (T - window) // stride + 1`` (`jaxprune.windows`); window k covers steps
    ``[stride*k, stride*k + window)``.

    Args:
      traj: trajectories ``(T, ...)``, steps first (as training records them), float32 or
        float64; a NumPy or JAX array.
      window, stride: window length and step between window starts (in steps).
      m, d, t, s, r, quantize: the ``lyap_r`` settings (see :func:`lyap_r`).
      mode: "parity" (float64, TISEAN-exact; float32 trajectories are cast, exactly), "fast"
        (float32) or "auto" (by dtype).
      chunk_size: weights per device step of the general (boxed) path, taken only for blocks
        with a window whose range exceeds r (or r=None), ~6 * 8 * (N-t) * N * n_windows bytes
        per weight in float64; the one-box path runs fixed cache-sized blocks of 4064 (float64)
        / 8160 (float32) windows, a few MB each, one compiled kernel for every trajectory length
        and weight count (docs/scaling.md). Results do not depend on it.
      end_offset: the end steps' offset (see `jaxprune.windows.window_end_steps`); default
        ``window - stride``.
      params: a :class:`LyapunovParams` instead of the keywords.

    Returns:
      :class:`WindowedLE` of NumPy arrays: ``le (n_windows, ...)`` in the mode's dtype (NaN
      where undefined), ``end_steps (n_windows,)`` int64, ``status (n_windows, ...)`` int8.
    """
    kw = _settings("windowed_le", params, _KW_DEFAULTS, m=m, d=d, t=t, s=s, r=r, quantize=quantize)
    m, d, t, s, r, quantize = (kw[k] for k in ("m", "d", "t", "s", "r", "quantize"))
    r = _check_static(m, d, t, s, r)
    _check_window(window, stride, m, d, s, t)
    dtype = _resolve_dtype(traj, mode)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    shape = tuple(traj.shape)
    if len(shape) < 1:
        raise ValueError("traj must have shape (T, ...)")
    T = shape[0]
    W = int(np.prod(shape[1:], dtype=np.int64))
    nw = n_windows(T, window, stride)
    le = np.full((nw, W), np.nan, dtype)
    status = np.full((nw, W), Status.TOO_SHORT, np.int8)
    ends = window_end_steps(nw, window, stride, end_offset)
    if nw > 0 and W > 0:
        flat = traj.reshape(T, W)
        kw = dict(window=window, stride=stride, m=m, d=d, t=t, s=s, r=r, quantize=bool(quantize))
        # send float32 data as is (the cast to float64 happens on device and is exact)
        src = np.dtype(getattr(traj, "dtype", dtype))
        send = src if src in (np.dtype(np.float32), dtype) else dtype
        C = min(int(chunk_size), W)

        def block(w0, w1, width, host=False):
            chunk = flat[:, w0:w1]
            # host=True: NumPy data stays on the host, to be cut into windows there
            xp = np if host and not isinstance(chunk, jax.Array) else jnp
            chunk = xp.asarray(chunk if isinstance(chunk, jax.Array) else np.asarray(chunk), send)
            if w1 - w0 < width:  # pad the last block (constant columns) to reuse the compiled step
                chunk = xp.pad(chunk, ((0, 0), (0, width - (w1 - w0))))
            return chunk

        def general(w0, w1, width):
            for g0 in range(w0, w1, width):
                g1 = min(g0 + width, w1)
                l_c, s_c = _windowed_chunk(block(g0, g1, width).astype(dtype), path="general", **kw)
                le[:, g0:g1] = np.asarray(l_c)[:, : g1 - g0]
                status[:, g0:g1] = np.asarray(s_c)[:, : g1 - g0]

        if r is None:  # eps0 = 1e-3: the boxed path throughout
            general(0, W, C)
        else:
            # one-box path in cache-sized blocks, dispatched ahead (no host sync per block); a
            # block with a window whose range exceeds r is redone on the general path
            # Cb weights per block, their windows side by side in `width` lanes (every block of a
            # call the same; one compiled kernel per width, see _onebox_width)
            Cb = min(_fast_block(nw, np.dtype(dtype).itemsize), W)
            width = _onebox_width(Cb * nw, np.dtype(dtype).itemsize)
            onebox = {k: kw[k] for k in ("m", "d", "t", "s", "r", "quantize")}
            pending: collections.deque = collections.deque()

            def collect():
                w0, w1, (l_c, s_c, easy) = pending.popleft()
                if bool(easy):
                    le[:, w0:w1] = np.asarray(l_c)[: nw * Cb].reshape(nw, Cb)[:, : w1 - w0]
                    status[:, w0:w1] = np.asarray(s_c)[: nw * Cb].reshape(nw, Cb)[:, : w1 - w0]
                else:
                    general(w0, w1, Cb)

            for w0 in range(0, W, Cb):
                w1 = min(w0 + Cb, W)
                x = _window_lanes(block(w0, w1, Cb, host=True), window=window, stride=stride, width=width)
                pending.append((w0, w1, _onebox_block(x, dtype=dtype, **onebox)))
                if len(pending) > 3:
                    collect()
            while pending:
                collect()
    tail = shape[1:]
    return WindowedLE(le.reshape((nw,) + tail), ends, status.reshape((nw,) + tail))


@functools.partial(jax.jit, static_argnames=("m", "d", "t", "s", "r", "quantize", "path"))
def _update_jit(win, *, m, d, t, s, r, quantize, path):
    slope, status = _slope_core(
        win, m=m, d=d, t=t, s=s, r=r, quantize=quantize, exact=win.dtype == jnp.float64, path=path
    )
    return slope, status


# Lanes per block of the in-jit (streaming) path, which decides one-box vs general per block
# with lax.cond: smaller than `_FAST_LANES` because a conditional's branches run as separate
# XLA:CPU computations. mnist5k's 41,000-weight window, CPU time per window (fast mode): one
# piece 54 ms, blocks of 8192 / 2048 / 1024 / 512 lanes 36 / 28 / 26 / 30 ms; the standalone
# `windowed_le` on the same windows 22 ms.
_STREAM_LANES = {4: 1024, 8: 512}


def _slope_blocked(win, *, m, d, t, s, r, quantize):
    """win (L, B) -> slope (B,), status (B,) int8 under an outer jit, in cache-sized lane blocks.

    The lanes are padded to whole blocks (constant columns: status CONSTANT, dropped) and mapped
    with ``lax.map``; each block takes the one-box path when it is exact for every lane, else the
    general path. Results do not depend on the blocking (the one-box path is taken only where
    it is exact). Memory: one block's kernel temporaries at a time.
    """
    L, B = win.shape
    exact = win.dtype == jnp.float64
    Cb = _STREAM_LANES.get(win.dtype.itemsize, 512)
    kw = dict(m=m, d=d, t=t, s=s, r=r, quantize=quantize)

    def block(x):
        return _slope_core(x, exact=exact, path="cond", **kw)

    if B <= Cb:
        return block(win)
    nb = -(-B // Cb)
    xb = jnp.pad(win, ((0, 0), (0, nb * Cb - B))).reshape(L, nb, Cb).transpose(1, 0, 2)
    slope, status = lax.map(block, xb)
    return slope.reshape(-1)[:B], status.reshape(-1)[:B]


def _window_le_blocked(win, *, m, d, t, s, r, quantize, dtype):
    """win (L, B) JAX array outside jit (float32 or dtype; the kernel computes in dtype) ->
    slope (B,), status (B,) int8, in the standalone
    kernel's lane blocks (:func:`_onebox_block` on `_onebox_width` lanes), each a top-level
    jitted call dispatched ahead (one host sync per window, for the blocks' ``easy`` flags); a
    block with a lane whose range exceeds r is redone on the general path. A window wider than
    one block is cut into blocks whose last one overlaps the one before it (its start is clamped
    to ``B - width``); a narrower one is padded with constant lanes."""
    L, B = win.shape
    itemsize = np.dtype(dtype).itemsize
    width = _FAST_LANES.get(itemsize, 4096)
    kw = dict(m=m, d=d, t=t, s=s, r=r, quantize=quantize)
    if B <= width:
        width = _onebox_width(B, itemsize)
        starts, blocks = [0], [jnp.pad(win, ((0, 0), (0, width - B)))]
    else:
        starts = [min(b0, B - width) for b0 in range(0, B, width)]
        blocks = [lax.dynamic_slice_in_dim(win, jnp.int32(a), width, axis=1) for a in starts]
    outs = [_onebox_block(x, dtype=dtype, **kw) for x in blocks]
    slopes, stats = [], []
    for b0, a, (slope, status, easy) in zip(range(0, B, width), starts, outs):
        if not bool(easy):
            slope, status = _update_jit(win[:, a : a + min(width, B)].astype(dtype), path="general", **kw)
        slopes.append(slope[b0 - a : min(B, a + width) - a])
        stats.append(status[b0 - a : min(B, a + width) - a])
    return jnp.concatenate(slopes), jnp.concatenate(stats)


def window_le(
    win: ArrayLike,
    *,
    m: int = _UNSET,
    d: int = _UNSET,
    t: int = _UNSET,
    s: int = _UNSET,
    r: float | None = _UNSET,
    quantize: bool = _UNSET,
    mode: str = "auto",
    params: LyapunovParams | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Slope S(1) - S(0) of one window per weight.

    The streaming step: training's ring buffer yields ``win``; stateless (the state lives in
    :class:`LyapunovStream`). Settings: either ``params=LyapunovParams(...)`` or the keywords
    (defaults ``m=2, d=1, t=0, s=20, r=20.0, quantize=False``), not both. Jitted once per
    (shape, options); usable inside an outer ``jax.jit`` (e.g. as a `Trainer`'s ``window_fn``).

    Args:
      win: one window ``(window, n_weights)``, oldest step first (float32 JAX array from
        training; mode="parity" casts it to float64, exactly).
      m, d, t, s, r, quantize: the ``lyap_r`` settings (see :func:`lyap_r`).
      mode: "parity", "fast" or "auto" (by dtype), as in :func:`windowed_le`.
      params: a :class:`LyapunovParams` instead of the keywords.

    Returns:
      ``(slope, status)`` JAX arrays: slope ``(n_weights,)`` in the mode's dtype (NaN where
      undefined), status ``(n_weights,)`` int8 (:class:`Status`).
    """
    kw = _settings("window_le", params, _KW_DEFAULTS, m=m, d=d, t=t, s=s, r=r, quantize=quantize)
    m, d, t, s, r, quantize = (kw[k] for k in ("m", "d", "t", "s", "r", "quantize"))
    r = _check_static(m, d, t, s, r)
    if getattr(win, "ndim", None) != 2:
        raise ValueError(f"win must have shape (window, n_weights), got {getattr(win, 'shape', None)}")
    _check_window(win.shape[0], 1, m, d, s, t)
    dtype = _resolve_dtype(win, mode)
    # float32 data (what training records) goes to the kernel as is: it casts exactly, and shares
    # its compiled blocks with windowed_le's
    win = jnp.asarray(win, jnp.float32 if np.dtype(getattr(win, "dtype", dtype)) == np.float32 else dtype)
    kw = dict(m=m, d=d, t=t, s=s, r=r, quantize=bool(quantize))
    if isinstance(win, jax.core.Tracer):  # under an outer jit: decide on device, per block
        return _slope_blocked(win.astype(dtype), **kw)
    if r is None:  # eps0 = 1e-3: the boxed path throughout
        return _update_jit(win.astype(dtype), path="general", **kw)
    # the standalone kernel's blocks (a 41,000-lane window in one piece ran ~2.6x slower: its
    # per-lane vectors fall out of cache; in lax.map blocks under jit ~1.9x), one small host
    # sync per window for the path (faster than lax.cond on CPU)
    return _window_le_blocked(win, dtype=dtype, **kw)


# Deprecated name of `window_le` (it has no state: "update" misled); kept for one release.
windowed_le_update = window_le


class LyapunovStream:
    """Accumulates per-window slopes as windows arrive (training's ring buffer).

    >>> stream = LyapunovStream(n_weights=W)           # doctest: +SKIP
    >>> for win in ring_buffer: stream.update(win)      # win: (window, W)
    >>> res = stream.result()                           # WindowedLE: le (n_windows, W)

    Holds the slopes (n_windows, W) on the host (one row per update) and nothing else between
    windows. ``stride`` only serves the end steps (the buffer decides what a window is).

    Args:
      n_weights: W, the width of every window.
      window, stride: the window length (checked on every update) and stride (end steps only).
      m, d, t, s, r, quantize, params: the ``lyap_r`` settings, as in :func:`window_le`.
      mode: "parity" (float64, needs x64) or "fast" (float32).
      end_offset: the end steps' offset (see `jaxprune.windows.window_end_steps`).
    """

    def __init__(
        self,
        n_weights: int,
        *,
        window: int = 50,
        stride: int = 45,
        m: int = _UNSET,
        d: int = _UNSET,
        t: int = _UNSET,
        s: int = _UNSET,
        r: float | None = _UNSET,
        quantize: bool = _UNSET,
        mode: str = "parity",
        end_offset: int | None = None,
        params: LyapunovParams | None = None,
    ):
        kw = _settings("LyapunovStream", params, _KW_DEFAULTS, m=m, d=d, t=t, s=s, r=r, quantize=quantize)
        m, d, t, s, r, quantize = (kw[k] for k in ("m", "d", "t", "s", "r", "quantize"))
        self.opts = dict(m=m, d=d, t=t, s=s, r=_check_static(m, d, t, s, r), quantize=bool(quantize))
        _check_window(window, stride, m, d, s, t)
        if mode not in ("parity", "fast"):
            raise ValueError("mode must be 'parity' or 'fast'")
        self.dtype = _resolve_dtype(np.zeros(0, np.float32), mode)
        self._mode = mode
        self.n_weights, self.window, self.stride, self.end_offset = n_weights, window, stride, end_offset
        self._le: list[np.ndarray] = []
        self._status: list[np.ndarray] = []

    def update(self, win: ArrayLike) -> jax.Array:
        """Slopes of one window: win ``(window, n_weights)`` -> ``(n_weights,)`` (JAX array, also
        stored)."""
        if tuple(win.shape) != (self.window, self.n_weights):
            raise ValueError(f"expected a window of shape {(self.window, self.n_weights)}, got {tuple(win.shape)}")
        # float32 windows (training's) go as is: window_le casts them exactly, in the kernel
        if getattr(win, "dtype", None) != np.float32:
            win = jnp.asarray(win, self.dtype)
        slope, status = window_le(win, mode=self._mode, **self.opts)
        self._le.append(np.asarray(slope))
        self._status.append(np.asarray(status))
        return slope

    def __len__(self) -> int:
        return len(self._le)

    def result(self) -> WindowedLE:
        """Every window so far: ``le (n_windows, n_weights)``, ``end_steps (n_windows,)``,
        ``status (n_windows, n_weights)`` int8 (NumPy)."""
        n = len(self._le)
        le = np.stack(self._le) if n else np.zeros((0, self.n_weights), self.dtype)
        st = np.stack(self._status) if n else np.zeros((0, self.n_weights), np.int8)
        return WindowedLE(le, window_end_steps(n, self.window, self.stride, self.end_offset), st)
