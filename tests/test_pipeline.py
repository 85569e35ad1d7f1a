"""LEGCNet end to end on a small data set: results, resume, determinism, edge cases, verify."""

import json
import shutil
import warnings

import jax
import numpy as np
import pytest

from jaxprune import pipeline, prune, rundir
from jaxprune.data import load_dataset
from jaxprune.pipeline import (
    LegcnetConfig,
    effective_maxlag,
    granger_on_le,
    preset,
    run,
)
from jaxprune.train import TrainConfig
from jaxprune.verify import verify_run

# iris, 120 training examples, batch 8 -> 15 steps per epoch; 60 epochs -> 900 steps -> 33 windows.
CFG = LegcnetConfig(
    train=TrainConfig(hidden=(6,), batch_size=8, epochs=60, window=30, stride=27, learning_rate=0.1),
    maxlag=5,
    pt_windows=14,
    target_accuracy=0.8,
    le_mode="parity",
    verify_sample=12,
)


def _iris(seed):
    return load_dataset("iris", seed=seed)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    results = run(_iris, CFG, [0, 1], out, checkpoint_every_s=0.0)
    return out, results


@pytest.mark.timeout(600)
def test_results_json_and_report(finished_run):
    out, results = finished_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(results["runs"]))
    methods = {(r["method"], r["seed"], r["matched_to"]) for r in saved["runs"]}
    for seed in (0, 1):
        for m in ("dense", "legcnet_ft", "legcnet_pt"):
            assert (m, seed, None) in methods
        for m in ("random", "magnitude"):
            assert (m, seed, "legcnet_ft") in methods and (m, seed, "legcnet_pt") in methods
    for r in saved["runs"]:
        for key in ("method", "seed", "test_accuracy", "macro_f1", "sparsity", "flops", "epochs_to_threshold"):
            assert key in r
        assert r["method"] in pipeline.METHODS
        assert 0 <= r["test_accuracy"] <= 1
    report = (out / "report.md").read_text()
    assert "| legcnet_ft |" in report and "± " in report
    # baselines prune exactly as many weights per layer as the mask they are matched to
    for seed in (0, 1):
        by = {(r["name"]): r for r in saved["runs"] if r["seed"] == seed}
        assert by["random"]["pruned_per_layer"] == by["legcnet_ft"]["pruned_per_layer"]
        assert by["magnitude_pt"]["pruned_per_layer"] == by["legcnet_pt"]["pruned_per_layer"]
        assert by["dense"]["sparsity"] == 0.0
        # FT and PT each prune some but not all weights (else the matched baselines and the
        # equalities below would hold vacuously)
        for m in ("legcnet_ft", "legcnet_pt"):
            assert 0 < sum(by[m]["pruned_per_layer"]) < 42 and 0 < by[m]["sparsity"] < 1, m
        dense_flops = by["dense"]["flops"]
        assert by["legcnet_ft"]["flops"] == dense_flops - 2 * sum(by["legcnet_ft"]["pruned_per_layer"])
        # every retrained net is saved: pruned weights exactly 0, curves as long as its epochs
        keep = rundir.load_masks(out, [seed])[seed]
        for name, rec in by.items():
            net = rundir.load_retrained(out, seed, name)
            flat = np.concatenate([k.ravel() for k in net["kernels"]])
            assert np.all(flat[~keep[name]] == 0), name
            assert len(net["train_accuracy_history"]) == rec["epochs"]
            assert float(net["test_accuracy"]) == rec["test_accuracy"]
        # the all-kept "dense" retraining repeats the dense run (same init, the run's seed fixes
        # the batch order), so its curve is the dense curve's start
        dense_curve = np.asarray(rundir.load_dense(out, seed)["train_accuracy_history"])
        again = rundir.load_retrained(out, seed, "dense")["train_accuracy_history"]
        np.testing.assert_array_equal(again, dense_curve[: len(again)])


@pytest.mark.timeout(600)
def test_verify_finds_no_flips_in_parity_mode(finished_run):
    out, _ = finished_run
    report = verify_run(out, sample=6)
    assert report["le_max_abs_diff"] <= 1e-12
    assert report["pvalue_max_rel_diff"] < 1e-6
    assert report["granger_pvalue_max_rel_diff"] < 1e-6  # the kernel alone, on the run's LE
    assert report["decision_flips"] == 0
    # the differences above cover entries finite on both sides only: none may be one-sided
    assert report["nan_mismatches"] == 0
    assert all(s["weights_checked"] == 6 for s in report["seeds"])


@pytest.mark.timeout(600)
def test_resume_after_kill_gives_identical_masks_and_metrics(finished_run, tmp_path):
    out, results = finished_run
    # A run that lost everything of seed 1 (seed 0's stage files kept) resumes: the dense
    # population of both seeds trains again (it keeps no checkpoints; the same population gives
    # the identical result) and seed 1's stages follow.
    part = tmp_path / "part"
    shutil.copytree(out, part)
    seed1 = part / "seed_1"
    for f in seed1.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    (part / "results.json").unlink()
    resumed = run(_iris, CFG, [0, 1], part, resume=True, checkpoint_every_s=0.0)
    a = np.load(out / "seed_1" / "analysis.npz")
    b = np.load(part / "seed_1" / "analysis.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    for key in ("mask_legcnet_ft", "mask_legcnet_pt"):
        assert 0 < a[key].sum() < a[key].size, key
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(resumed["runs"]) == strip(results["runs"])


def test_same_seed_same_masks(finished_run, tmp_path):
    """A seed fixes its masks given the run's seed list (the dense nets of all seeds train as one
    population, whose float32 rounding depends on its member count: docs/population.md)."""
    out, _ = finished_run
    again = run(_iris, CFG.replace(baselines_for=()), [0, 1], tmp_path)
    for seed in (0, 1):
        a = np.load(out / f"seed_{seed}" / "analysis.npz")
        b = np.load(tmp_path / f"seed_{seed}" / "analysis.npz")
        for key in ("mask_legcnet_ft", "mask_legcnet_pt", "pmin_legcnet_ft"):
            np.testing.assert_array_equal(a[key], b[key])
        for key in ("mask_legcnet_ft", "mask_legcnet_pt"):  # non-trivial masks: equality means something
            assert 0 < a[key].sum() < a[key].size, key
    assert {r["method"] for r in again["runs"]} == {"dense", "legcnet_ft", "legcnet_pt"}


def test_no_weight_causal_and_every_weight_causal(tmp_path):
    rng = np.random.default_rng(0)
    le = rng.normal(size=(40, 42))
    risk = np.linspace(0.9, 0.1, 40) + 0.01 * rng.normal(size=40)
    _, params = pipeline._init_params(_iris(0), CFG, 0)
    outcome = granger_on_le(le, risk, CFG)
    # alpha tiny: nothing is causal -> everything pruned; alpha ~1: everything kept
    mask, summary = pipeline.mask_from_granger(outcome, params, CFG.replace(alpha=1e-300))
    assert summary.pruned_total == 42 and not prune.flat_keep(mask).any()
    mask, summary = pipeline.mask_from_granger(outcome, params, CFG.replace(alpha=1 - 1e-16))
    assert summary.pruned_total == 0
    # an all-pruned net still retrains (to nothing useful) without error
    data = _iris(0)
    rec, trained, history = pipeline.retrain(
        data, CFG.replace(max_retrain_epochs=2), params, prune.mask_from_flat(np.zeros(42, bool), params)
    )
    assert len(history["train_accuracy"]) == 2
    assert rec["sparsity"] == 1.0 and rec["epochs"] == 2
    for leaf_mask, leaf in zip(
        jax.tree.leaves(prune.mask_from_flat(np.zeros(42, bool), params)), jax.tree.leaves(trained)
    ):
        assert np.all(np.asarray(leaf)[~np.asarray(leaf_mask)] == 0)


def test_untestable_weights_and_constant_risk():
    rng = np.random.default_rng(1)
    le = rng.normal(size=(30, 5))
    le[:, 2] = np.nan  # a weight that never moved: no LE anywhere
    le[3:7, 3] = np.nan  # some windows without an estimate: filled with 0
    risk = np.linspace(0.5, 0.2, 30) + 0.01 * rng.normal(size=30)
    out = granger_on_le(le, risk, CFG)
    assert out.status[2] == pipeline.LE_UNDEFINED and np.isnan(out.pmin[2])
    assert out.status[3] == 0 and np.isfinite(out.pmin[3])
    flat = granger_on_le(le, np.full(30, 0.3), CFG)
    assert np.all(np.isnan(flat.pmin))
    with pytest.raises(ValueError, match="NaN or inf"):
        granger_on_le(le, np.r_[risk[:-1], np.nan], CFG)
    with pytest.raises(ValueError, match="too few"):
        granger_on_le(le[:4], risk[:4], CFG)


def test_effective_maxlag_matches_statsmodels_limit():
    assert effective_maxlag(254, 14) == 14
    assert effective_maxlag(25, 14) == 7  # 25 > 3 * 7 + 1, not 3 * 8 + 1
    assert effective_maxlag(4, 14) == 0


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="le_mode"):
        LegcnetConfig(le_mode="exact")
    with pytest.raises(ValueError, match="untestable"):
        LegcnetConfig(untestable="drop")
    p = preset("mnist")
    assert (p.train.hidden, p.maxlag, p.pt_windows, p.target_accuracy) == ((50, 30), 14, 25, 0.92)
    assert preset("iris").train.batch_size == 1
    assert LegcnetConfig.from_dict(json.loads(json.dumps(CFG.to_dict()))) == CFG


def test_granger_stage_is_float64_without_x64():
    """Fast-mode runs leave jax_enable_x64 off; the Granger stage must still be statsmodels-exact
    (it once ran in float32 there: 7e-5 relative p-value errors on mnist5k)."""
    from jaxprune.verify import _statsmodels_min_p

    rng = np.random.default_rng(3)
    n, w = 60, 5
    risk = np.cumsum(rng.standard_normal(n)) * 0.01 + 0.5
    le = rng.standard_normal((n, w)).astype(np.float32)
    le[1:, 0] += 0.8 * np.diff(risk).astype(np.float32) * 50  # one weight related to risk
    cfg = LegcnetConfig(maxlag=4)
    with jax.enable_x64(False):
        out = granger_on_le(le, risk.astype(np.float32), cfg)
    assert out.pmin.dtype == np.float64
    for c in range(w):
        want = _statsmodels_min_p(
            risk.astype(np.float32).astype(np.float64), le[:, c].astype(np.float64), 4, "ssr_chi2test"
        )
        np.testing.assert_allclose(out.pmin[c], want, rtol=1e-8)


def _tampered_copy(out, dst, seed_file, **changes):
    """A copy of the finished run with some arrays of ``seed_0/<seed_file>`` replaced."""
    shutil.copytree(out, dst)
    path = dst / "seed_0" / seed_file
    arrays = dict(np.load(path))
    arrays.update(changes)
    np.savez(path, **arrays)
    return dst


@pytest.mark.timeout(600)
def test_verify_counts_one_sided_nan_and_cli_exit_code(finished_run, tmp_path):
    """A run whose sampled LE (or p) went NaN must not pass verify with zero differences."""
    from jaxprune.cli import main

    out, _ = finished_run
    dense = np.load(out / "seed_0" / "dense.npz")
    le = np.array(dense["le"])
    le[:, np.asarray(dense["sample_idx"])] = np.nan
    bad_le = _tampered_copy(out, tmp_path / "le", "dense.npz", le=le)
    rep = verify_run(bad_le, sample=3)
    assert rep["seeds"][0]["le_nan_mismatches"] == 3 * le.shape[0]
    assert rep["nan_mismatches"] >= 3 * le.shape[0]
    assert main(["verify", str(bad_le), "--sample", "3"]) == 1

    analysis = np.load(out / "seed_0" / "analysis.npz")
    pmin = np.array(analysis["pmin_legcnet_ft"])
    assert np.isfinite(pmin[np.asarray(dense["sample_idx"])]).all()
    pmin[np.asarray(dense["sample_idx"])] = np.nan
    bad_p = _tampered_copy(out, tmp_path / "p", "analysis.npz", pmin_legcnet_ft=pmin)
    rep = verify_run(bad_p, sample=3)
    assert rep["seeds"][0]["le_nan_mismatches"] == 0
    assert rep["seeds"][0]["masks"]["legcnet_ft"]["pvalue_nan_mismatches"] == 3
    assert rep["nan_mismatches"] == 3 and rep["decision_flips"] == 0
    assert main(["verify", str(bad_p), "--sample", "3"]) == 1

    # a flipped decision alone also fails the command; the untouched run passes it
    mask = np.array(analysis["mask_legcnet_ft"])
    mask[np.asarray(dense["sample_idx"])] ^= True
    flipped = _tampered_copy(out, tmp_path / "flip", "analysis.npz", mask_legcnet_ft=mask)
    assert main(["verify", str(flipped), "--sample", "3"]) == 1
    assert json.loads((flipped / "verify.json").read_text())["decision_flips"] == 3
    shutil.copytree(out, tmp_path / "ok")
    assert main(["verify", str(tmp_path / "ok"), "--sample", "3"]) == 0


def _statsmodels_lag_p(y, x, maxlag):
    """statsmodels' ssr_chi2test p per lag 1..maxlag of x -> y: (maxlag,)."""
    from statsmodels.tsa.stattools import grangercausalitytests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = grangercausalitytests(np.column_stack([y, x]), maxlag=maxlag)
    return np.array([res[p][0]["ssr_chi2test"][1] for p in range(1, maxlag + 1)])


@pytest.mark.timeout(600)
def test_stationarity_rounding_and_corrections_inside_the_pipeline(finished_run):
    """The analysis stage (Granger on the run's LE series, then the mask) with stationarity=True
    + holm+bh, and with rounded p-values, against adfuller / grangercausalitytests /
    multipletests run weight by weight."""
    from statsmodels.stats.multitest import multipletests
    from statsmodels.tsa.stattools import adfuller

    out, _ = finished_run
    dense = np.load(out / "seed_0" / "dense.npz")
    le, risk = np.asarray(dense["le"], np.float64), np.asarray(dense["risk"], np.float64)
    _, like = pipeline._init_params(_iris(0), CFG, 0)

    def stationary(u):  # the original notebook: difference once when ADF p > 0.05
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # statsmodels' notice about its return type
            p = adfuller(u)[1]
        return np.diff(u) if p > 0.05 else u[1:]

    def stage(cfg):  # what the analysis stage (`analyze_dense`) does for LEGCNet-FT
        outcome = granger_on_le(le, risk, cfg)
        return outcome.pmin, prune.flat_keep(pipeline.mask_from_granger(outcome, like, cfg)[0])

    cfg = CFG.replace(stationarity=True, correction=("holm", "bh"))
    got_p, keep = stage(cfg)
    n = len(risk)
    maxlag = effective_maxlag(n - 1, cfg.maxlag)
    y = stationary(risk)
    x = np.nan_to_num(le, nan=cfg.nan_fill)
    lag_p = np.array([_statsmodels_lag_p(y, stationary(x[:, j]), maxlag) for j in range(x.shape[1])])
    pmin = lag_p.min(axis=1)
    np.testing.assert_allclose(got_p, pmin, rtol=1e-6)
    holm = np.array([multipletests(r, method="holm")[1].min() for r in lag_p])
    assert np.isfinite(holm).all()  # no untestable weight in this run: all 42 form the family
    want = multipletests(holm, alpha=cfg.alpha, method="fdr_bh")[1] < cfg.alpha
    np.testing.assert_array_equal(keep, want)
    assert 0 < want.sum() < len(want)  # the correction decides something here
    # without the correction more weights are kept (the correction is really applied)
    assert (pmin < cfg.alpha).sum() > want.sum()

    cfg = CFG.replace(round_pvalues=2)
    got_p, keep = stage(cfg)
    lag_p = np.array([_statsmodels_lag_p(risk, x[:, j], cfg.maxlag) for j in range(x.shape[1])])
    p_round = np.round(lag_p.min(axis=1), 2)
    np.testing.assert_allclose(got_p, p_round, atol=1e-12)
    np.testing.assert_array_equal(keep, p_round < cfg.alpha)
    # rounding moves a decision here (min p 0.046 -> 0.05: pruned), so it is really applied
    assert (lag_p.min(axis=1) < cfg.alpha).sum() == (p_round < cfg.alpha).sum() + 1


@pytest.mark.timeout(600)
def test_resume_inside_retraining_and_refusal_of_a_changed_config(finished_run, tmp_path):
    """A run killed while retraining seed 1's masks (the random baseline's record and saved net
    gone) resumes to the same records: the joint retraining population trains again, only the
    missing files are written; resuming with another config is refused before anything runs."""
    out, results = finished_run
    part = tmp_path / "part"
    shutil.copytree(out, part)
    seed1 = part / "seed_1"
    (seed1 / "retrain_random.json").unlink()
    rundir.retrained_path(part, 1, "random").unlink()
    (part / "results.json").unlink()
    before = {p.name: p.stat().st_mtime_ns for p in seed1.glob("retrain_*.json")}
    with pytest.raises(ValueError, match="another run: config.alpha=0.05 there, config.alpha=0.01"):
        run(_iris, CFG.replace(alpha=0.01), [0, 1], part, resume=True)
    assert not (seed1 / "retrain_random.json").exists()
    resumed = run(_iris, CFG, [0, 1], part, resume=True, checkpoint_every_s=0.0)

    def strip(rs):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rs]

    assert strip(resumed["runs"]) == strip(results["runs"])
    # the finished records were reused, not retrained
    assert {p.name: p.stat().st_mtime_ns for p in seed1.glob("retrain_*.json") if p.name in before} == before
    a = rundir.load_retrained(out, 1, "random")
    b = rundir.load_retrained(part, 1, "random")
    for x, y in zip(a["kernels"], b["kernels"], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["train_accuracy_history"], b["train_accuracy_history"])


def test_stage_major_run_writes_every_seed_file_and_population_timings(finished_run):
    """The stage-major run (dense population of both seeds, one retraining population of both
    seeds' masks) writes the files of the one-by-one pipeline, and timings.json records the populations."""
    out, results = finished_run
    names = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude")
    for seed in (0, 1):
        d = out / f"seed_{seed}"
        for f in ("dense.npz", "analysis.npz", "timings.json"):
            assert (d / f).is_file(), f
        for n in names:
            assert (d / f"retrain_{n}.json").is_file() and rundir.retrained_path(out, seed, n).is_file(), n
        t = json.loads((d / "timings.json").read_text())
        n_masks = sum(1 for r in results["runs"] if r["seed"] == seed)  # with the PT baselines: 7
        assert n_masks >= len(names)
        # ONE retraining population: every seed's masks
        assert t["dense_population_members"] == 2 and t["retrain_population_members"] == len(results["runs"])
        assert t["train_and_le"] == pytest.approx(t["dense_population_seconds"] / 2)
        assert t["retrain"] <= t["retrain_population_seconds"]
    for s in results["per_seed"]:  # the PT decision is made per member during training
        assert s["pt_decided_during_training"]["step"] > 0
