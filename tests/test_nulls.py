"""Null controls: planted causes are told apart from the nulls, pure noise is not; IAAFT keeps
the value distribution exactly and the spectrum approximately; draws batched into few kernel
calls with records identical to the per-draw loop; the select stage's outcomes reused."""

import numpy as np
import pytest

from jaxprune import nulls, pipeline
from jaxprune import select as select_stage
from jaxprune.models import init_mlp
from jaxprune.pipeline import LegcnetConfig, granger_on_le
from jaxprune.weights import kernel_layout

CFG = LegcnetConfig(maxlag=4)
N = 120  # windows
_, PARAMS = init_mlp((4, 6, 3), seed=0)  # 24 + 18 = 42 weights in two layers
LAYOUT = kernel_layout(PARAMS)


def _planted(seed: int, lag: int = 2):
    """LE series AR(1)-like per weight; risk driven by their mean `lag` windows earlier."""
    rng = np.random.default_rng(seed)
    le = rng.standard_normal((N, LAYOUT.n_weights))
    common = rng.standard_normal(N)
    le = 0.3 * le + common[:, None]  # every weight carries the driving signal
    risk = np.zeros(N)
    risk[lag:] = 0.8 * common[:-lag]
    risk += 0.2 * rng.standard_normal(N)
    return le, risk


def _controls(le, risk, other=(), draws=9, **kw):
    real = granger_on_le(le, risk, CFG)
    return nulls.null_controls(
        le,
        risk,
        CFG,
        LAYOUT,
        nulls.NullConfig(draws=draws, **kw),
        seed=0,
        mask="legcnet_ft",
        real_outcome=real,
        other_le=other,
        calibration=True,
    )


def test_planted_cause_is_far_from_every_null():
    le, risk = _planted(1)
    other = [_planted(s)[0] for s in (2, 3)]  # other "seeds": their own driving signal
    recs, calib = _controls(le, risk, other, draws=19)
    assert {r["control"] for r in recs} == {"shuffle", "surrogate", "crossseed"}
    for r in recs:
        assert set(nulls_keys()) <= set(r)
        assert r["real_fraction"] == 0.0  # every weight causes the risk
        assert r["null_fraction"] > 0.4, r
        k = r["draws"]
        assert r["p_value"] == pytest.approx(1 / (k + 1))  # no draw as causal as the real
    assert calib["n_series"] == 19 * LAYOUT.n_weights and len(calib["lag_rejection"]) == 4
    text = " ".join(nulls.verdict(recs))
    assert "is distinguishable from the shuffle null" in text
    assert "is distinguishable from the surrogate null" in text
    # two other seeds: p >= 1/3, the crossseed question cannot be decided at 0.05
    assert "crossseed null: cannot be decided" in text


def nulls_keys():
    return ("seed", "mask", "layer", "control", "real_fraction", "null_fraction", "p_value")


def test_pure_noise_is_not_distinguishable():
    rng = np.random.default_rng(5)
    le = rng.standard_normal((N, LAYOUT.n_weights))
    risk = rng.standard_normal(N)
    other = [rng.standard_normal((N, LAYOUT.n_weights)) for _ in range(2)]
    recs, calib = _controls(le, risk, other, draws=19)
    for r in recs:
        assert abs(r["real_fraction"] - r["null_fraction"]) < 0.25, r
    # pooled over layers and controls the p-values are not small
    assert min(r["p_value"] for r in recs if r["control"] != "crossseed") > 0.05
    assert "INDISTINGUISHABLE" in " ".join(nulls.verdict(recs))
    # calibration: iid noise, the chi2 test at lag 1 rejects roughly alpha; the min over 4 lags
    # rejects more than any single lag
    assert 0.0 < calib["lag_rejection"][0] < 0.15
    assert calib["min_p_rejection"] >= max(calib["lag_rejection"])


def test_empirical_p_value_formula(monkeypatch):
    """p = (1 + #{null fraction <= real}) / (K + 1): with nulls at known fractions."""
    le, risk = _planted(1)
    fractions = iter([0.0, 1.0, 1.0, 0.0, 1.0])  # layer-0 null fraction per draw
    real = granger_on_le(le, risk, CFG)

    def fake(x, y, cfg, **kw):
        out = granger_on_le(x, y, cfg, **kw)
        f = next(fractions)
        p = np.where(np.arange(x.shape[1]) < 24, 0.5 if f == 1.0 else 0.001, out.pmin)
        return pipeline.GrangerOutcome(
            p, out.lag_pvalues, out.status, out.maxlag_used, out.n_windows, out.min_statistic
        )

    monkeypatch.setattr(select_stage, "granger_on_le", fake)  # the kernel nulls.py calls
    recs, _ = nulls.null_controls(
        le,
        risk,
        CFG,
        LAYOUT,
        nulls.NullConfig(controls=("shuffle",), draws=5),
        seed=0,
        mask="legcnet_ft",
        real_outcome=real,
    )
    layer0 = next(r for r in recs if r["layer"] == 0)
    assert layer0["real_fraction"] == 0.0 and layer0["null_fractions"] == [0, 1, 1, 0, 1]
    assert layer0["p_value"] == pytest.approx((1 + 2) / 6)


def test_one_kernel_call_per_draw_not_per_weight(monkeypatch):
    le, risk = _planted(1)
    real = granger_on_le(le, risk, CFG)
    calls = []

    def counting(x, y, cfg, **kw):
        calls.append(x.shape)
        return granger_on_le(x, y, cfg, **kw)

    monkeypatch.setattr(select_stage, "granger_on_le", counting)
    nulls.null_controls(
        le,
        risk,
        CFG,
        LAYOUT,
        nulls.NullConfig(controls=("shuffle", "surrogate"), draws=4, max_per_layer=10),
        seed=0,
        mask="legcnet_ft",
        real_outcome=real,
    )
    assert len(calls) == 8  # 2 controls x 4 draws, each with every sampled weight
    assert all(shape == (N, 20) for shape in calls)  # 10 sampled per layer, both layers


def test_iaaft_keeps_values_exactly_and_spectrum_approximately():
    rng = np.random.default_rng(0)
    n, w = 256, 6
    x = np.zeros((n, w))
    e = rng.standard_normal((n, w))
    for t in range(1, n):  # AR(1), a strongly coloured spectrum
        x[t] = 0.9 * x[t - 1] + e[t]
    x = np.exp(x / 3)  # and a skewed value distribution
    s = nulls.iaaft(x, np.random.default_rng(1), iterations=30)
    np.testing.assert_array_equal(np.sort(s, axis=0), np.sort(x, axis=0))
    assert not np.allclose(s, x)
    amp_x = np.abs(np.fft.rfft(x - x.mean(0), axis=0))[1:]
    amp_s = np.abs(np.fft.rfft(s - s.mean(0), axis=0))[1:]
    shuffled = nulls.shuffle_series(x, np.random.default_rng(2))
    amp_sh = np.abs(np.fft.rfft(shuffled - shuffled.mean(0), axis=0))[1:]
    err_s = np.linalg.norm(amp_s - amp_x) / np.linalg.norm(amp_x)
    err_sh = np.linalg.norm(amp_sh - amp_x) / np.linalg.norm(amp_x)
    assert err_s < 0.2 and err_s < 0.4 * err_sh  # a shuffle whitens the spectrum, IAAFT not
    # seeded
    np.testing.assert_array_equal(s, nulls.iaaft(x, np.random.default_rng(1), iterations=30))


def test_shuffle_is_a_seeded_permutation_and_untestable_columns_stay_nan():
    x = np.arange(40.0).reshape(10, 4)
    a = nulls.shuffle_series(x, np.random.default_rng(3))
    np.testing.assert_array_equal(np.sort(a, axis=0), x)
    assert not np.array_equal(a, x)
    np.testing.assert_array_equal(a, nulls.shuffle_series(x, np.random.default_rng(3)))
    y = x.copy()
    y[:, 1] = np.nan
    y[2, 0] = np.nan
    p = nulls._prepare(y, 0.0)
    assert np.all(np.isnan(p[:, 1])) and p[2, 0] == 0.0
    assert np.all(np.isnan(nulls._surrogates(p, np.random.default_rng(0), 3)[:, 1]))


def test_config_and_flag_errors():
    assert nulls.parse_controls("none") == ()
    assert nulls.parse_controls("shuffle, crossseed") == ("shuffle", "crossseed")
    for bad in ("", "shufle", "shuffle,bogus"):
        with pytest.raises(ValueError, match="--null"):
            nulls.parse_controls(bad)
    with pytest.raises(ValueError, match="draws"):
        nulls.NullConfig(draws=0)
    with pytest.raises(ValueError, match="unknown"):
        nulls.NullConfig(controls=("x",))


# ---------------------------------------------------------------- batched draws == one call each
def _reference_null_controls(le, risk, cfg, layout, ncfg, *, seed, mask, real_outcome, other_le=(), calibration=False):
    """The per-draw loop before the draws were batched (one Granger / IAAFT call per draw), kept
    as the reference the batched implementation must reproduce exactly."""
    groups_all = [np.arange(layout.offsets[i], layout.offsets[i + 1]) for i in range(layout.n_layers)]
    analysed = nulls.prune.analysed_weights(layout, cfg.selection.layers)
    groups_all = [g[analysed[g]] for g in groups_all]
    nc, tb = nulls.noncausal_flags(real_outcome, cfg)
    real = nulls._fractions(nc, tb, groups_all)
    samples = nulls.sample_weights(layout, cfg.selection.layers, ncfg.max_per_layer, seed)
    idx = np.concatenate(samples)
    bounds = np.cumsum([0] + [s.size for s in samples])
    local = [np.arange(bounds[i], bounds[i + 1]) for i in range(len(samples))]
    x_real = nulls._prepare(le[:, idx], cfg.selection.nan_fill)
    records, calib = [], None
    for control in ncfg.controls:
        if control == "crossseed":
            draws = [nulls._prepare(o[: le.shape[0], idx], cfg.selection.nan_fill) for o in other_le]
            if not draws:
                continue
        else:
            rng = np.random.default_rng([seed, nulls.CONTROLS.index(control), 0xC0DE, 0 if mask == "legcnet_ft" else 1])
            draws = None
        fractions, lag_reject, min_reject, n_tested = [], 0.0, 0.0, 0
        k = len(draws) if draws is not None else ncfg.draws
        for j in range(k):
            if draws is not None:
                x = draws[j]
            elif control == "shuffle":
                x = nulls.shuffle_series(x_real, rng)
            else:
                x = nulls._surrogates(x_real, rng, ncfg.iaaft_iterations)
            out = select_stage.granger_on_le(x, risk, cfg, local=True)
            nc_n, tb_n = nulls.noncausal_flags(out, cfg)
            fractions.append(nulls._fractions(nc_n, tb_n, local))
            if calibration and control == "shuffle":
                ok = out.status == 0
                with np.errstate(invalid="ignore"):
                    lag_reject = lag_reject + np.sum(out.lag_pvalues[ok] < cfg.selection.alpha, axis=0)
                    min_reject += float(np.sum(out.pmin[ok] < cfg.selection.alpha))
                n_tested += int(ok.sum())
        fractions = np.asarray(fractions)
        for i in range(layout.n_layers):
            if not groups_all[i].size:
                continue
            f = fractions[:, i]
            p = (1 + int(np.sum(f <= real[i]))) / (k + 1) if np.isfinite(real[i]) else None
            records.append(
                {
                    "seed": int(seed),
                    "mask": mask,
                    "layer": i,
                    "control": control,
                    "real_fraction": nulls._num(real[i]),
                    "null_fraction": nulls._num(np.nanmean(f)),
                    "p_value": p,
                    "draws": int(k),
                    "null_fraction_sd": nulls._num(np.nanstd(f)),
                    "null_fractions": [nulls._num(v) for v in f],
                    "n_sampled": int(samples[i].size),
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


@pytest.mark.parametrize("widths", [(4, 6, 3), (20, 12, 3)], ids=["below-one-chunk", "stacked"])
@pytest.mark.parametrize("batch_draws", [2, 50], ids=["several-stacks", "one-stack"])
def test_batched_draws_equal_the_per_draw_loop(widths, batch_draws, monkeypatch):
    # (20, 12, 3): 250 + 36 = 286 sampled weights >= one kernel chunk (256): draws are stacked
    # along the weight axis; (4, 6, 3): 42 weights, Granger per draw, IAAFT / shuffles stacked.
    n = 60
    _, params = init_mlp(widths, seed=0)
    layout = kernel_layout(params)
    rng = np.random.default_rng(11)
    common = rng.standard_normal(n)
    le = 0.5 * rng.standard_normal((n, layout.n_weights)) + common[:, None]
    le[:, 3] = np.nan  # one weight that never moved: untestable in every draw
    le[5:9, 7] = np.nan  # NaN windows: filled as the real test does
    risk = np.r_[0.0, 0.7 * common[:-1]] + 0.3 * rng.standard_normal(n)
    other = [le + 0.3 * rng.standard_normal(le.shape) for _ in range(2)]
    ncfg = nulls.NullConfig(draws=5, max_per_layer=250, iaaft_iterations=3)
    real = granger_on_le(le, risk, CFG)
    kw = dict(seed=3, mask="legcnet_ft", real_outcome=real, other_le=other, calibration=True)
    want = _reference_null_controls(le, risk, CFG, layout, ncfg, **kw)
    monkeypatch.setattr(nulls, "BATCH_BYTES", batch_draws * n * (layout.n_weights) * 8)
    # several stacks: kernel calls of 512 series, so draws straddle calls (and one call holds
    # parts of two stacks); one stack: the default call width, one call per control
    width = 512 if batch_draws == 2 else nulls.GRANGER_CALL_COLUMNS
    monkeypatch.setattr(nulls, "GRANGER_CALL_COLUMNS", width)
    calls = []
    real_granger = select_stage.granger_on_le
    monkeypatch.setattr(
        select_stage, "granger_on_le", lambda x, *a, **k: calls.append(x.shape) or real_granger(x, *a, **k)
    )
    recs, calib = nulls.null_controls(le, risk, CFG, layout, ncfg, **kw)
    w = sum(r["n_sampled"] for r in recs if r["control"] == "shuffle")
    # shuffle and surrogate: 5 draws each; crossseed: 2
    if w >= 256:  # calls of at most `width` series, the draws' series side by side
        assert len(calls) == 2 * -(-5 * w // width) + -(-2 * w // width)
        assert all(c[0] == n and c[1] <= width for c in calls)
        assert sum(c[1] for c in calls) == (5 + 5 + 2) * w
    else:  # below one chunk: one call per draw
        assert len(calls) == 2 * 5 + 2 and set(calls) == {(n, w)}
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in recs] == want[0]
    assert calib == want[1]
    assert {r["control"] for r in recs} == {"shuffle", "surrogate", "crossseed"}


def test_stacked_draw_generation_is_the_per_draw_stream():
    x = np.random.default_rng(0).standard_normal((30, 7))
    x[:, 2] = np.nan
    a, b = np.random.default_rng(4), np.random.default_rng(4)
    np.testing.assert_array_equal(
        nulls._shuffle_draws(x, a, 3), np.stack([nulls.shuffle_series(x, b) for _ in range(3)])
    )
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(
        nulls._surrogate_draws(x, a, 3, 4), np.stack([nulls._surrogates(x, b, 4) for _ in range(3)])
    )


def test_controls_reuse_the_select_stage_outcomes(tmp_path, monkeypatch):
    from jaxprune import controls, rundir

    le, risk = _planted(4)
    cfg = CFG.replace(pt_windows=40)
    analysis = select_stage.analyze(le, risk, PARAMS, cfg, seed=0)
    path = rundir.seed_dir(tmp_path, 0) / "analysis.npz"
    path.parent.mkdir(parents=True)
    rundir.save_analysis(path, analysis)

    def same(got):
        assert set(got) == set(analysis.granger) == {"legcnet_ft", "legcnet_pt"}
        for m, want in analysis.granger.items():
            assert (got[m].maxlag_used, got[m].n_windows) == (want.maxlag_used, want.n_windows)
            for f in ("pmin", "lag_pvalues", "status", "min_statistic"):
                np.testing.assert_array_equal(getattr(got[m], f), getattr(want, f))

    calls = []
    real_granger = select_stage.granger_on_le
    monkeypatch.setattr(select_stage, "granger_on_le", lambda *a, **k: calls.append(1) or real_granger(*a, **k))
    same(controls.stage_outcomes(tmp_path, 0, le, risk, cfg, LAYOUT.n_weights))
    assert not calls  # read from analysis.npz, not re-tested
    # an analysis.npz without the per-lag p-values (older runs), or none: recomputed, the same
    arrays = rundir.load_analysis(tmp_path, 0)
    np.savez(path, **{k: v for k, v in arrays.items() if not k.startswith("lagp_")})
    same(controls.stage_outcomes(tmp_path, 0, le, risk, cfg, LAYOUT.n_weights))
    path.unlink()
    same(controls.stage_outcomes(tmp_path, 0, le, risk, cfg, LAYOUT.n_weights))
    assert len(calls) == 4


def test_iaaft_rank_order_by_scatter_equals_double_argsort():
    """The IAAFT rank step (one argsort and a scatter) gives the permutation of the double-argsort
    gather it replaced, ties included: the surrogates are unchanged."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 9))
    x[:, :3] = np.round(x[:, :3])  # ties in the values
    start = np.round(rng.standard_normal((40, 9)), 1)  # and in the start
    with jax.enable_x64(True):
        sorted_vals = jnp.sort(x, axis=0)
        got = np.asarray(nulls._iaaft_jit(jnp.asarray(x), jnp.asarray(start), 1))
        # one iteration: the spectrum imposed on the start, then the rank step (the old way)
        amp = jnp.abs(jnp.fft.rfft(x, axis=0))
        spec = jnp.fft.rfft(start, axis=0)
        s = jnp.fft.irfft(amp * spec / jnp.where(jnp.abs(spec) > 0, jnp.abs(spec), 1.0), n=40, axis=0)
        ranks = jnp.argsort(jnp.argsort(s, axis=0), axis=0)
        want = np.asarray(jnp.take_along_axis(sorted_vals, ranks, axis=0))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape,iterations", [((40, 9), 3), ((248, 300), 10), ((61, 50), 10)])
def test_iaaft_numpy_equals_the_jitted_kernel(shape, iterations):
    """The CPU path of the surrogates (NumPy FFT, stable argsort, scatter) gives the jitted
    kernel's numbers exactly, ties in values and start included: the backend does not change a
    null draw."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape)
    x[:, :3] = np.round(x[:, :3])  # ties in the values
    start = nulls.shuffle_series(x, rng)
    with jax.enable_x64(True):
        want = np.asarray(nulls._iaaft_jit(jnp.asarray(x), jnp.asarray(start), iterations))
    got = nulls._iaaft_numpy(x, start, iterations)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(x, axis=0))  # exact values


@pytest.mark.parametrize("shape,iterations", [((40, 9), 3), ((248, 700), 10), ((61, 50), 10), ((25, 300), 4)])
def test_iaaft_series_major_equals_the_time_major_form(shape, iterations):
    """The IAAFT on the transposed (series-major) layout gives the time-major form's numbers bit
    for bit, ties in values and start included: the faster layout changes no null draw."""
    rng = np.random.default_rng(shape[1])
    x = np.cumsum(rng.standard_normal(shape), axis=0)
    x[:, :3] = np.round(x[:, :3])  # ties in the values
    start = nulls.shuffle_series(x, rng)
    start[:, 3:5] = np.round(start[:, 3:5])  # and in the start
    x[:, 5] = 2.0  # a constant series: its spectrum step gives tied values
    want = nulls._iaaft_numpy_time_major(x, start, iterations)
    np.testing.assert_array_equal(nulls._iaaft_numpy(x, start, iterations), want)


def test_rank_order_of_rows_with_ties_is_the_stable_order():
    """The IAAFT rank step's fast path (unstable argsort, tied rows re-ranked stably) places the
    values exactly as a stable argsort of every row, for rows with and without ties."""
    rng = np.random.default_rng(7)
    s = rng.standard_normal((50, 31))
    s[::3] = np.round(s[::3])  # every third row with ties
    s[4] = 1.0  # one row all tied
    vals = np.sort(rng.standard_normal((50, 31)), axis=1)
    want = np.empty_like(s)
    np.put_along_axis(want, np.argsort(s, axis=1, kind="stable"), vals, axis=1)
    np.testing.assert_array_equal(nulls._rank_order_rows(s, vals), want)
