"""Null controls for the LEGCNet mask: is the real non-causal fraction different from noise?

For one seed and one mask (FT: all windows, PT: the first ``pt_windows``), the real LE series
``le`` ``(n_windows, n_weights)`` and the risk ``(n_windows,)`` give, per layer, the fraction
of testable analysed weights the rule calls non-causal (corrected p >= alpha). The same
fraction is computed for null LE series run through the same Granger kernel
(`jaxprune.select.granger_on_le`) and the same rule:

* ``shuffle``: each weight's series permuted in time (seeded), destroying any temporal link;
* ``surrogate``: IAAFT surrogates (iterative amplitude-adjusted Fourier transform, Schreiber &
  Schmitz 1996) of each series: same value distribution exactly, power spectrum approximately;
  the null "a linear stochastic process with this spectrum, seen through a monotone map";
* ``crossseed``: the LE series of the same weight index in another seed's net against this
  seed's risk (one draw per other seed).

Each draw yields a null fraction per layer. The empirical p-value of the real mask is
``(1 + #{draws with null fraction <= real fraction}) / (K + 1)``: how often a null draw is at
least as causal as the real series (small p = the real series is more causal than the null).

Cost: nulls run on a seeded sample of at most ``max_per_layer`` weights per layer (the real
fraction uses every weight). The draws of a control are generated together (shuffles in one
vectorised op, IAAFT of all draws in one jitted call) and Granger-tested stacked along the weight
axis, one call of the jitted, chunked kernel per `BATCH_BYTES` of series (`_draw_outcomes`); the
records equal those of one call per draw exactly (same RNG streams, same per-weight statistics).

The calibration record is the rejection rate of the chosen test at each lag, and of the
min-over-lags rule, under the shuffle null: for an exact test every lag rejects ~alpha, and
the min over L lags rejects up to ~1 - (1 - alpha)^L.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import prune
from jaxprune.weights import KernelLayout

CONTROLS = ("shuffle", "surrogate", "crossseed")


# Sampled weights per layer of the null controls in quick runs (`--quick`): 0.4x the cost of
# the default 4,096 on mnist's layers (2,348 instead of 5,896 series per draw); the standard
# error of a layer's null fraction grows from <= 0.8 to <= 1.6 percentage points.
QUICK_MAX_PER_LAYER = 1024


@dataclasses.dataclass(frozen=True)
class NullConfig:
    """Which null controls to run and how many draws (part of no mask: the masks, and a resumed
    run's stage files, do not depend on it)."""

    controls: tuple[str, ...] = CONTROLS
    draws: int = 19
    max_per_layer: int = 4096
    iaaft_iterations: int = 10

    def __post_init__(self):
        object.__setattr__(self, "controls", tuple(self.controls))
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise ValueError(f"unknown null control(s) {bad}; choose from {CONTROLS}")
        if self.draws < 1:
            raise ValueError(f"null draws must be >= 1, got {self.draws}")
        if self.max_per_layer < 1:
            raise ValueError(f"null max_per_layer must be >= 1, got {self.max_per_layer}")
        if self.iaaft_iterations < 1:
            raise ValueError("iaaft_iterations must be >= 1")


def parse_controls(text: str) -> tuple[str, ...]:
    """``"shuffle,surrogate"`` -> ``("shuffle", "surrogate")``; ``"none"`` -> ``()``."""
    text = text.strip()
    if text == "none":
        return ()
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in CONTROLS]
    if bad or not names:
        raise ValueError(f"--null takes a comma list of {', '.join(CONTROLS)}, or none; got {text!r}")
    return names


# ------------------------------------------------------------------------------ null series
def shuffle_series(le: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each column of ``le`` ``(n, w)`` permuted in time independently -> ``(n, w)``."""
    le = np.asarray(le)
    order = np.argsort(rng.random(le.shape), axis=0)
    return np.take_along_axis(le, order, axis=0)


@jax.jit
def _iaaft_jit(x, start, iterations):
    """x, start: (n, w) float64; returns the IAAFT surrogate (n, w)."""
    sorted_vals = jnp.sort(x, axis=0)
    amp = jnp.abs(jnp.fft.rfft(x, axis=0))
    n = x.shape[0]

    cols = jnp.arange(x.shape[1])[None, :]

    def rank_order(s):  # values of x in the rank order of s: exact value distribution
        # the k-th smallest value goes where s has its k-th smallest: one sort and a scatter
        # (the same permutation as gathering by argsort(argsort(s)), at half the sorting)
        order = jnp.argsort(s, axis=0)
        return jnp.zeros_like(s).at[order, cols].set(sorted_vals)

    def body(_, s):
        spec = jnp.fft.rfft(s, axis=0)
        phase = spec / jnp.where(jnp.abs(spec) > 0, jnp.abs(spec), 1.0)
        s = jnp.fft.irfft(amp * phase, n=n, axis=0)  # impose the spectrum
        return rank_order(s)  # then the value distribution

    return jax.lax.fori_loop(0, iterations, body, start)


def _iaaft_numpy(x: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """`_iaaft_jit` in NumPy: the same steps (pocketfft real FFTs, a stable argsort and a
    scatter), float64 (n, w) -> (n, w). XLA:CPU sorts slowly: on a 2-core CPU this takes ~0.4x
    the CPU time of the jitted form (248 x 5,896 series, 10 iterations: 1.4 s vs 3.6 s) and gives
    the same numbers (tests/test_nulls.py).

    It works on the transposed, series-major copy ``(w, n)``: every FFT and sort then runs over
    contiguous memory (~0.7x the CPU time of the time-major form, 248 x 9,392 series), with the
    same 1-D transforms and the same stable order, so the same numbers bit for bit (test)."""
    xt = np.ascontiguousarray(np.asarray(x, np.float64).T)  # (w, n): one series per row
    sorted_vals = np.sort(xt, axis=1)
    amp = np.abs(np.fft.rfft(xt, axis=1))
    n = xt.shape[1]
    s = np.array(np.asarray(start, np.float64).T, order="C")
    for _ in range(int(iterations)):
        spec = np.fft.rfft(s, axis=1)
        mag = np.abs(spec)
        s = _rank_order_rows(np.fft.irfft(amp * (spec / np.where(mag > 0, mag, 1.0)), n=n, axis=1), sorted_vals)
    return s.T


def _rank_order_rows(s: np.ndarray, sorted_vals: np.ndarray) -> np.ndarray:
    """The values `sorted_vals` ``(w, n)`` (each row ascending) in the rank order of `s`
    ``(w, n)``: the k-th smallest value where the row of `s` has its k-th smallest, ties in `s`
    ranked by position (a stable argsort).

    Rows without ties in `s` have one sorting permutation, so the (~10x faster, SIMD) unstable
    argsort gives exactly the stable one's; rows with ties (rare after the spectrum step) are
    ranked again by the stable argsort. Same numbers as a stable argsort of every row (test)."""
    order = np.argsort(s, axis=1)
    srt = np.sort(s, axis=1)
    tied = np.flatnonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))
    if tied.size:
        order[tied] = np.argsort(s[tied], axis=1, kind="stable")
    ranked = np.empty_like(s)
    np.put_along_axis(ranked, order, sorted_vals, axis=1)
    return ranked


def _iaaft_numpy_time_major(x: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """`_iaaft_numpy` on the time-major layout ``(n, w)`` (its form before the transposed one;
    kept as the reference the test compares with bit for bit)."""
    sorted_vals = np.sort(x, axis=0)
    amp = np.abs(np.fft.rfft(x, axis=0))
    n = x.shape[0]
    s = np.array(start, np.float64)
    for _ in range(int(iterations)):
        spec = np.fft.rfft(s, axis=0)
        mag = np.abs(spec)
        s = np.fft.irfft(amp * (spec / np.where(mag > 0, mag, 1.0)), n=n, axis=0)
        order = np.argsort(s, axis=0, kind="stable")
        ranked = np.empty_like(s)
        np.put_along_axis(ranked, order, sorted_vals, axis=0)
        s = ranked
    return s


def _iaaft_run(x: np.ndarray, start: np.ndarray, iterations: int) -> np.ndarray:
    """IAAFT of float64 (n, w) series from `start`: NumPy on a CPU backend (faster there),
    the jitted kernel on an accelerator."""
    if jax.default_backend() == "cpu":
        return _iaaft_numpy(np.asarray(x, np.float64), np.asarray(start, np.float64), iterations)
    with jax.enable_x64(True):
        return np.asarray(_iaaft_jit(jnp.asarray(x), jnp.asarray(start), int(iterations)), np.float64)


def iaaft(le: np.ndarray, rng: np.random.Generator, iterations: int = 10) -> np.ndarray:
    """IAAFT surrogates of every column of ``le`` ``(n, w)`` (finite values) -> ``(n, w)``.

    Starts from a random shuffle of each column and alternates (spectrum, then rank order)
    `iterations` times; the last step is the rank ordering, so each column is an exact
    permutation of the original values and its amplitude spectrum is close to the original's.
    """
    x = np.asarray(le, np.float64)
    start = shuffle_series(x, rng)
    return _iaaft_run(x, start, int(iterations))


# ------------------------------------------------------------------------------ fractions
def noncausal_flags(outcome, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(non-causal, testable) bool ``(n_weights,)`` of a `GrangerOutcome` under the config's
    rule: corrected p (``selection.correction``) >= ``selection.alpha`` among the testable
    weights."""
    sel = cfg.selection
    testable = outcome.status == 0
    p = outcome.pmin
    if sel.round_pvalues is not None:
        p = prune.round_pvalues(p, sel.round_pvalues)
    p = prune.corrected_pvalues(
        p, correction=sel.correction, lag_pvalues=outcome.lag_pvalues, n_lags=outcome.maxlag_used, family=testable
    )
    with np.errstate(invalid="ignore"):
        noncausal = testable & (p >= sel.alpha)
    return noncausal, testable


def _fractions(noncausal, testable, groups: Sequence[np.ndarray]) -> np.ndarray:
    """Per group of weight indices: #non-causal / #testable (NaN when none testable)."""
    out = []
    for g in groups:
        t = int(testable[g].sum())
        out.append(float(noncausal[g].sum()) / t if t else float("nan"))
    return np.asarray(out)


def sample_weights(layout: KernelLayout, layers, max_per_layer: int, seed: int) -> list[np.ndarray]:
    """Per analysed layer, a sorted seeded sample of at most `max_per_layer` flat indices."""
    rng = np.random.default_rng([seed, 0x4E55])
    analysed = prune.analysed_weights(layout, layers)
    out = []
    for i in range(layout.n_layers):
        cand = np.flatnonzero(analysed[layout.layer_slice(i)]) + layout.offsets[i]
        if cand.size > max_per_layer:
            cand = np.sort(rng.choice(cand, size=max_per_layer, replace=False))
        out.append(cand)
    return out


def _prepare(le: np.ndarray, fill: float) -> np.ndarray:
    """Fill NaN windows as the real test does, but keep all-NaN columns all-NaN (untestable)."""
    le = np.asarray(le, np.float64)
    undefined = np.all(np.isnan(le), axis=0)
    x = np.where(np.isnan(le), fill, le)
    x[:, undefined] = np.nan
    return x


def null_controls(
    le: np.ndarray,
    risk: np.ndarray,
    cfg,
    layout: KernelLayout,
    ncfg: NullConfig,
    *,
    seed: int,
    mask: str,
    real_outcome,
    other_le: Sequence[np.ndarray] = (),
    calibration: bool = False,
) -> tuple[list[dict], dict | None]:
    """Null-control records for one seed and one mask.

    le: ``(n, n_weights)`` the real LE series of the mask's windows; risk ``(n,)``;
    real_outcome: the `GrangerOutcome` of the real series (the mask's own);
    other_le: LE series ``(n, n_weights)`` of the other seeds (crossseed draws).
    Returns (records with keys seed, mask, layer, control, real_fraction, null_fraction,
    p_value, plus draws / null_fraction_sd / null_fractions / n_sampled), and the calibration
    dict (when `calibration`: per-lag rejection rates under the shuffle null) or None.
    """
    groups_all = [np.arange(layout.offsets[i], layout.offsets[i + 1]) for i in range(layout.n_layers)]
    analysed = prune.analysed_weights(layout, cfg.selection.layers)
    groups_all = [g[analysed[g]] for g in groups_all]
    nc, tb = noncausal_flags(real_outcome, cfg)
    real = _fractions(nc, tb, groups_all)

    samples = sample_weights(layout, cfg.selection.layers, ncfg.max_per_layer, seed)
    idx = np.concatenate(samples)
    # positions of each layer's sample within the concatenated sample axis
    bounds = np.cumsum([0] + [s.size for s in samples])
    local = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(samples))]
    x_real = _prepare(le[:, idx], cfg.selection.nan_fill)
    records, calib = [], None
    for control in ncfg.controls:
        if control == "crossseed":
            draws = [_prepare(o[: le.shape[0], idx], cfg.selection.nan_fill) for o in other_le]
            if not draws:
                continue  # needs >= 2 seeds
            rng = None
        else:
            rng = np.random.default_rng([seed, CONTROLS.index(control), 0xC0DE, 0 if mask == "legcnet_ft" else 1])
            draws = None
        fractions, lag_reject, min_reject, n_tested = [], 0.0, 0.0, 0
        k = len(draws) if draws is not None else ncfg.draws
        t0 = time.perf_counter()
        for out in _draw_outcomes(control, x_real, risk, cfg, ncfg, rng, k, draws):
            nc_n, tb_n = noncausal_flags(out, cfg)  # per draw: a correction's family is one draw
            fractions.append(_fractions(nc_n, tb_n, local))
            if calibration and control == "shuffle":
                ok = out.status == 0
                with np.errstate(invalid="ignore"):
                    lag_reject = lag_reject + np.sum(out.lag_pvalues[ok] < cfg.selection.alpha, axis=0)
                    min_reject += float(np.sum(out.pmin[ok] < cfg.selection.alpha))
                n_tested += int(ok.sum())
        fractions = np.asarray(fractions)  # (k, n_layers)
        seconds = time.perf_counter() - t0
        for i in range(layout.n_layers):
            if not groups_all[i].size:
                continue  # layer outside the analysed set
            f = fractions[:, i]
            p = (1 + int(np.sum(f <= real[i]))) / (k + 1) if np.isfinite(real[i]) else None
            records.append(
                {
                    "seed": int(seed),
                    "mask": mask,
                    "layer": i,
                    "control": control,
                    "real_fraction": _num(real[i]),
                    "null_fraction": _num(np.nanmean(f)),
                    "p_value": p,
                    "draws": int(k),
                    "null_fraction_sd": _num(np.nanstd(f)),
                    "null_fractions": [_num(v) for v in f],
                    "n_sampled": int(samples[i].size),
                    "seconds": seconds,
                }
            )
        if calibration and control == "shuffle" and n_tested:
            calib = {
                "seed": int(seed),
                "mask": mask,
                "test": cfg.granger.test,
                "alpha": cfg.selection.alpha,
                "lag_rejection": [float(v) / n_tested for v in np.atleast_1d(lag_reject)],
                "min_p_rejection": min_reject / n_tested,
                "n_series": n_tested,
            }
    return records, calib


# ------------------------------------------------------------------------------ batching
# Host bytes of stacked null series per Granger / IAAFT call (the kernel chunks its own device
# memory; this bounds the stacked inputs and outputs: ~3x this in all). mnist5k: 5 draws of
# 5,896 weights x 248 windows a call. On a 2-core CPU the kernel is compute-bound at that size, so
# larger stacks save little CPU and cost host memory (256 MiB: ~3 GB resident).
BATCH_BYTES = 64 * 2**20


def _kernel_chunk() -> int:
    """The Granger kernel's default chunk size (weights per compiled chunk)."""
    import inspect

    from jaxprune import granger as granger_mod

    return int(inspect.signature(granger_mod.granger_tests).parameters["chunk_size"].default)


def _draws_per_call(n: int, w: int) -> int:
    """Draws of ``(n, w)`` float64 series stacked into one kernel call (>= 1)."""
    return max(1, int(BATCH_BYTES // max(1, n * w * 8)))


def _shuffle_draws(x: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """`k` successive `shuffle_series` draws of ``x`` ``(n, w)`` in one vectorised op ->
    ``(k, n, w)``; the same numbers as `k` calls (one ``rng.random((k, n, w))`` consumes the
    stream in the order of `k` calls of ``rng.random((n, w))``)."""
    order = np.argsort(rng.random((k,) + x.shape), axis=1)
    return np.take_along_axis(np.broadcast_to(x, (k,) + x.shape), order, axis=1)


def _surrogate_draws(x: np.ndarray, rng: np.random.Generator, k: int, iterations: int) -> np.ndarray:
    """`k` successive `_surrogates` draws of ``x`` ``(n, w)`` -> ``(k, n, w)``: the start
    shuffles in one op (same stream as `k` calls), then IAAFT of all draws in one jitted call,
    the draws stacked along the column axis (columns are independent: same values as one call
    per draw)."""
    n, w = x.shape
    out = np.full((k, n, w), np.nan)
    ok = ~np.all(np.isnan(x), axis=0)
    if not ok.any():
        return out
    xo = np.ascontiguousarray(x[:, ok])
    starts = _shuffle_draws(xo, rng, k)  # (k, n, w_ok)
    w_ok = xo.shape[1]
    for a in range(0, k, _draws_per_call(n, w_ok)):
        b = min(k, a + _draws_per_call(n, w_ok))
        cols = np.concatenate(list(starts[a:b]), axis=1)  # (n, (b - a) * w_ok), draw-major
        res = _iaaft_run(np.tile(xo, (1, b - a)), cols, int(iterations))
        out[a:b, :, ok] = res.reshape(n, b - a, w_ok).transpose(1, 0, 2)
    return out


def _slice_outcome(out, sl: slice):
    """The weights `sl` of a `GrangerOutcome` (one draw of a stacked call)."""
    return dataclasses.replace(
        out,
        pmin=out.pmin[sl],
        lag_pvalues=out.lag_pvalues[sl],
        status=out.status[sl],
        min_statistic=None if out.min_statistic is None else out.min_statistic[sl],
    )


# Series per Granger kernel call of the null controls (a multiple of the kernel's 256-weight
# chunk): bounds a call's host and device memory. `granger_tests` cuts every call into its
# fixed blocks, so the kernel compiles once per (windows, maxlag) for all controls, draws and
# seeds of a run, whatever the call widths (a new width used to cost a compile of ~16 s CPU at
# 248 windows on this 2-core CPU, against ~0.6 s to test one call of 8,192 series).
GRANGER_CALL_COLUMNS = 8192


def _generate(control, x_real, ncfg, rng, k, draws):
    """The `k` draws of `control` in stacks ``(g, n, w)`` of at most `_draws_per_call` draws."""
    n, w = x_real.shape
    gen = _draws_per_call(n, w)  # draws generated (shuffled / IAAFT) per op
    for a in range(0, k, gen):
        b = min(k, a + gen)
        if draws is not None:
            yield np.stack(draws[a:b])
        elif control == "shuffle":
            yield _shuffle_draws(x_real, rng, b - a)
        else:
            yield _surrogate_draws(x_real, rng, b - a, ncfg.iaaft_iterations)


def _concat_outcomes(parts):
    """`GrangerOutcome`s of consecutive weight blocks -> one (same lags and windows)."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda xs: None if xs[0] is None else np.concatenate(xs)  # noqa: E731
    return dataclasses.replace(
        parts[0],
        pmin=cat([p.pmin for p in parts]),
        lag_pvalues=cat([p.lag_pvalues for p in parts]),
        status=cat([p.status for p in parts]),
        min_statistic=cat([p.min_statistic for p in parts]),
    )


def _draw_outcomes(control, x_real, risk, cfg, ncfg, rng, k, draws):
    """The `GrangerOutcome` of each of the `k` draws of `control`, in draw order.

    Draws are generated in stacks (`BATCH_BYTES` per op: one shuffle / IAAFT op per stack), laid
    side by side along the weight axis (draw-major) and tested in kernel calls of
    `GRANGER_CALL_COLUMNS` series (a call may hold the end of one draw and the start of the
    next; the last call holds the rest): one compiled kernel for every call of a run
    (`granger_tests`' fixed blocks). Each weight's statistics depend only on its own series and on the
    kernel's chunk size, which these calls keep when a draw has at least one chunk of weights:
    then the outcomes equal one call per draw exactly. Smaller draws (fewer weights than a
    chunk, where the single call would use a smaller chunk) are tested one call per draw.
    """
    from jaxprune import select as select_stage

    n, w = x_real.shape
    if w < _kernel_chunk():
        for xs in _generate(control, x_real, ncfg, rng, k, draws):
            for x in xs:
                yield select_stage.granger_on_le(x, risk, cfg, local=True)
        return
    width = GRANGER_CALL_COLUMNS
    pending, n_pending = [], 0  # column blocks (n, c) not yet tested
    tested = []  # outcomes of tested columns not yet handed out (they start at a draw)
    n_tested = 0

    def test(cols):
        # at most `width` series per call, on this process's devices; `granger_tests` runs any
        # width in its fixed blocks (the same compiled program), so the last call is not padded
        return select_stage.granger_on_le(cols, risk, cfg, local=True)

    def complete_draws():
        nonlocal tested, n_tested
        if n_tested < w:
            return
        out = _concat_outcomes(tested)
        full = n_tested // w
        for j in range(full):
            yield _slice_outcome(out, slice(j * w, (j + 1) * w))
        rest = n_tested - full * w
        tested = [_slice_outcome(out, slice(full * w, n_tested))] if rest else []
        n_tested = rest

    for xs in _generate(control, x_real, ncfg, rng, k, draws):
        pending.append(xs.transpose(1, 0, 2).reshape(n, -1))  # (n, g * w), draw-major
        n_pending += pending[-1].shape[1]
        while n_pending >= width:
            cols = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            tested.append(test(cols[:, :width]))
            n_tested += width
            pending = [cols[:, width:]] if cols.shape[1] > width else []
            n_pending -= width
        yield from complete_draws()
    if n_pending:
        tested.append(test(np.concatenate(pending, axis=1)))
        n_tested += n_pending
    yield from complete_draws()


def _surrogates(x: np.ndarray, rng, iterations: int) -> np.ndarray:
    """IAAFT of the defined columns; all-NaN (untestable) columns stay NaN."""
    out = np.full_like(x, np.nan)
    ok = ~np.all(np.isnan(x), axis=0)
    if ok.any():
        out[:, ok] = iaaft(x[:, ok], rng, iterations)
    return out


def _num(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


def verdict(records: Sequence[dict], level: float = 0.05) -> list[str]:
    """One plain sentence per (mask, control): is the real mask distinguishable from the null?

    Pools seeds and layers. A layer of a seed is distinguishable when its empirical p <= `level`.
    When the draws cannot reach `level` (p >= 1 / (draws + 1) > level: crossseed with few seeds,
    or few draws) the sentence says the question cannot be decided at that level, and in how
    many cases the real fraction lies below the null mean."""
    by = {}
    for r in records:
        by.setdefault((r["mask"], r["control"]), []).append(r)
    lines = []
    for (mask, control), rs in sorted(by.items()):
        rs = [r for r in rs if r["p_value"] is not None]
        if not rs:
            continue
        ps = [r["p_value"] for r in rs]
        real = float(np.nanmean([r["real_fraction"] for r in rs]))
        null = float(np.nanmean([r["null_fraction"] for r in rs]))
        below = sum(r["real_fraction"] < r["null_fraction"] for r in rs)
        detail = (
            f"mean non-causal fraction {real:.3f} real vs {null:.3f} null; real below the "
            f"null in {below} of {len(rs)} layer/seed cases; min empirical p {min(ps):.3g}"
        )
        k = max(r["draws"] for r in rs)
        if 1 / (k + 1) > level:
            lines.append(
                f"{mask}: {control} null: cannot be decided at p <= {level:g} with "
                f"{k} draw(s) (p >= {1 / (k + 1):.3g}) ({detail})."
            )
            continue
        n_sig = sum(p <= level * (1 + 1e-9) for p in ps)
        if n_sig == len(ps):
            what = "distinguishable from"
        elif n_sig == 0:
            what = "INDISTINGUISHABLE from"
        else:
            what = f"only partly distinguishable ({n_sig} of {len(ps)} layer/seed cases) from"
        lines.append(f"{mask}: the real mask is {what} the {control} null ({detail}).")
    return lines
