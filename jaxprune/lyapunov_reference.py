"""Plain NumPy/Python reference of TISEAN 3.0 ``lyap_r`` (a literal loop, no JAX).

This is the slow, obviously-correct peer of :mod:`jaxprune.lyapunov`: it follows TISEAN's
``lyap_r.c`` line by line (growing neighbourhood, 256 x 256 box grid, linked lists in decreasing
index order) instead of the closed form the JAX kernel uses, so the two implementations check
each other. It is used by the tests, by ``benchmarks/lyapunov.py`` (the "plain NumPy loop" peer)
and by ``jaxprune verify`` to check accelerator runs. ``lyap_r_numpy(x (L,), ...)`` returns
``S (s+1,)``, ``found (s+1,)``, ``skipped`` and a status code.

Semantics (docs/lyapunov.md, as read from TISEAN's source):

* rescale ``xs = (x - lo) / interval``; ``interval == 0`` -> CONSTANT (TISEAN exits).
* ``eps0 = r / interval`` when ``r`` is given, else ``1e-3``; level ``k`` uses
  ``eps_k = eps_{k-1} * 1.1`` (iterated in float64), ``eps2 = eps * eps`` and box coordinates
  ``(int)(xs * (1.0 / eps)) & 255`` (TISEAN multiplies by ``epsinv = 1.0/eps``).
* ``D(a, b) = sum_c (xs[a+cd] - xs[b+cd])**2`` accumulated from ``c = 0`` upwards, from 0.0,
  with every product rounded (no fused multiply-add).
* A point no level can finish (no admissible candidate with D < 1) would make TISEAN loop
  forever; here the levels stop once ``eps**2 > m + 1`` and the point is counted as skipped.

Every arithmetic step is a Python float (IEEE double) operation, so there is no contraction and
no reassociation: the results are those of TISEAN compiled without FMA.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

# Status codes, kept in sync with jaxprune.lyapunov.Status (plain ints here: no JAX import).
OK, CONSTANT, TOO_SHORT, NONFINITE = 0, 1, 2, 3
_NMAX1 = 255
_INT_MIN = -(2**31)
# eps grows by 1.1 per level: 10,000 levels span every positive double (1.1**7900 > 2**1075).
MAX_LEVELS = 10_000


def _box(q: float) -> int:
    """TISEAN's ``(int)(q) & 255``; out-of-range conversions give INT_MIN on x86 (-> box 0)."""
    if not (q < 2.0**31):  # also NaN
        return _INT_MIN & _NMAX1
    return int(q) & _NMAX1  # q >= 0 here, so truncation == floor


def quantize_f6(x: npt.ArrayLike) -> np.ndarray:
    """Values as MATLAB's ``fprintf('%f')`` writes them and TISEAN reads them back (float64).

    Exact: ``rint(x * 1e6) / 1e6`` is the correctly rounded result whenever ``x * 1e6`` is exact
    (every float32 value of magnitude < 9e9) or clearly away from a half-integer; the few
    remaining values (a possible double rounding) and huge or non-finite values go through Python's
    correctly rounded ``'%f'`` formatting, like the C library's ``printf``.

    x: array-like of floats, any shape. Returns float64 of the same shape.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        p = x * 1e6
        k = np.rint(p)
        out = k / 1e6  # true division of an exact integer: the nearest double to k * 10**-6
        # |p - k| close to 0.5 with p inexact: the rounding of x*1e6 may have moved p across .5
        frac = np.abs(np.abs(p - k) - 0.5)
        risky = ~np.isfinite(p) | (np.abs(p) >= 2.0**52) | (frac <= 4 * np.spacing(np.abs(p)))
    if risky.any():
        idx = np.nonzero(risky)
        out[idx] = [float("%f" % v) for v in x[idx]]  # noqa: UP031 (C's / MATLAB's %f, literally)
    return out


def lyap_r_numpy(x, *, m: int = 2, d: int = 1, t: int = 0, s: int = 20, r: float | None = None, quantize: bool = False):
    """TISEAN ``lyap_r`` on one series, as a literal loop.

    x: 1-D array-like of length L (float64). Returns ``(S, found, skipped, status)``:
    S float64 (s+1,) (NaN where found == 0), found int64 (s+1,), skipped int (reference points
    TISEAN would hang on), status int (OK / CONSTANT / TOO_SHORT / NONFINITE).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    if quantize:
        x = quantize_f6(x)
    S = np.full(s + 1, np.nan)
    found = np.zeros(s + 1, dtype=np.int64)
    L = x.shape[0]
    N = L - (m - 1) * d - s  # candidates j in [0, N)
    nref = N - t  # reference points n in [0, N - t)
    if N < t + 2:  # not a single admissible pair (|n - j| > t): nothing to estimate
        return S, found, 0, TOO_SHORT
    if not np.all(np.isfinite(x)):
        return S, found, 0, NONFINITE
    xl = [float(v) for v in x]
    lo = min(xl)
    interval = max(xl) - lo
    if interval == 0.0:
        return S, found, 0, CONSTANT
    xs = [(v - lo) / interval for v in xl]
    eps = (r / interval) if r is not None else 1e-3
    del1 = m * d
    lyap = [0.0] * (s + 1)
    cnt = [0] * (s + 1)

    def dist(a: int, b: int) -> float:
        dx = 0.0
        for k in range(0, del1, d):
            u = xs[a + k] - xs[b + k]
            dx += u * u
        return dx

    done = [False] * nref
    last = (m - 1) * d
    for _level in range(MAX_LEVELS):
        epsinv = 1.0 / eps
        eps2 = eps * eps
        boxes: dict[tuple[int, int], list[int]] = {}
        for j in range(N):  # put_in_boxes: the list head is the last inserted -> decreasing j
            boxes.setdefault((_box(xs[j] * epsinv), _box(xs[j + last] * epsinv)), []).append(j)
        for n in range(nref):
            if done[n]:
                continue
            bx, by = _box(xs[n] * epsinv), _box(xs[n + last] * epsinv)
            ok, mindx, best = False, 1.0, -1
            for i1 in range(bx - 1, bx + 2):
                for j1 in range(by - 1, by + 2):
                    for j in reversed(boxes.get((i1 & _NMAX1, j1 & _NMAX1), ())):
                        if abs(n - j) > t:
                            dx = dist(n, j)  # == TISEAN's early-break test (partial sums grow)
                            if dx <= eps2 and dx < mindx:
                                ok = True
                                if dx > 0.0:
                                    mindx, best = dx, j
            if best >= 0:
                for i in range(s + 1):
                    dx = dist(n + i, best + i)
                    if dx > 0.0:
                        cnt[i] += 1
                        lyap[i] += math.log(dx)
            done[n] = ok
        if all(done) or eps2 > m + 1:  # eps2 > m + 1 >= any D: no later level can finish a point
            break
        eps *= 1.1
    skipped = sum(1 for v in done if not v)
    for i in range(s + 1):
        found[i] = cnt[i]
        if cnt[i]:
            S[i] = lyap[i] / cnt[i] / 2.0
    return S, found, skipped, OK


def windowed_le_numpy(
    traj,
    *,
    window: int = 50,
    stride: int = 45,
    m: int = 2,
    d: int = 1,
    t: int = 0,
    s: int = 20,
    r: float | None = 20.0,
    quantize: bool = False,
):
    """Per-window slope S(1) - S(0) by the literal loop. traj: (T,) or (T, W) -> (n_windows, ...)."""
    traj = np.asarray(traj, dtype=np.float64)
    T = traj.shape[0]
    flat = traj.reshape(T, -1)
    n_windows = max((T - window) // stride + 1, 0)
    out = np.full((n_windows, flat.shape[1]), np.nan)
    for k in range(n_windows):
        for w in range(flat.shape[1]):
            S, _, _, _ = lyap_r_numpy(
                flat[stride * k : stride * k + window, w], m=m, d=d, t=t, s=s, r=r, quantize=quantize
            )
            out[k, w] = S[1] - S[0]
    return out.reshape((n_windows,) + traj.shape[1:])
