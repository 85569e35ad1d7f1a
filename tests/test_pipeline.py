"""LEGCNet end to end on a small data set: results, resume, determinism, edge cases, verify."""
import json
import shutil

import jax
import numpy as np
import pytest

from jaxprune import pipeline, prune, rundir
from jaxprune.data import load_dataset
from jaxprune.pipeline import LegcnetConfig, effective_maxlag, granger_on_le, preset, run
from jaxprune.train import TrainConfig
from jaxprune.verify import verify_run

# iris, 120 training examples, batch 8 -> 15 steps per epoch; 60 epochs -> 900 steps -> 33 windows.
CFG = LegcnetConfig(
    train=TrainConfig(hidden=(6,), batch_size=8, epochs=60, window=30, stride=27,
                      learning_rate=0.1),
    maxlag=5, pt_windows=14, target_accuracy=0.8, le_mode="parity", verify_sample=12,
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
        for key in ("method", "seed", "test_accuracy", "macro_f1", "sparsity", "flops",
                    "epochs_to_threshold"):
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
    assert all(s["weights_checked"] == 6 for s in report["seeds"])


@pytest.mark.timeout(600)
def test_resume_after_kill_gives_identical_masks_and_metrics(finished_run, tmp_path):
    out, results = finished_run
    # A run killed inside the dense stage of seed 1 (after seed 0 finished): keep seed 0's stage
    # files, drop everything of seed 1 but its dense checkpoints, and resume.
    part = tmp_path / "part"
    shutil.copytree(out, part)
    seed1 = part / "seed_1"
    for f in seed1.iterdir():
        if f.name != "ckpt_train":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    (part / "results.json").unlink()
    # the dense checkpoint of an interrupted run: keep only an early epoch
    steps = sorted(int(p.name) for p in (seed1 / "ckpt_train").iterdir() if p.name.isdigit())
    for st in steps[1:]:
        shutil.rmtree(seed1 / "ckpt_train" / str(st))
    assert len(steps) >= 2  # an epoch before the last one is kept
    resumed = run(_iris, CFG, [0, 1], part, resume=True, checkpoint_every_s=0.0)
    a = np.load(out / "seed_1" / "analysis.npz")
    b = np.load(part / "seed_1" / "analysis.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(resumed["runs"]) == strip(results["runs"])


def test_same_seed_same_masks(finished_run, tmp_path):
    out, _ = finished_run
    again = run(_iris, CFG.replace(baselines_for=()), [0], tmp_path)
    a = np.load(out / "seed_0" / "analysis.npz")
    b = np.load(tmp_path / "seed_0" / "analysis.npz")
    for key in ("mask_legcnet_ft", "mask_legcnet_pt", "pmin_legcnet_ft"):
        np.testing.assert_array_equal(a[key], b[key])
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
    rec, trained, history = pipeline.retrain(data, CFG.replace(max_retrain_epochs=2), params,
                                             prune.mask_from_flat(np.zeros(42, bool), params))
    assert len(history["train_accuracy"]) == 2
    assert rec["sparsity"] == 1.0 and rec["epochs"] == 2
    for leaf_mask, leaf in zip(jax.tree.leaves(prune.mask_from_flat(np.zeros(42, bool), params)),
                               jax.tree.leaves(trained)):
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
        want = _statsmodels_min_p(risk.astype(np.float32).astype(np.float64),
                                  le[:, c].astype(np.float64), 4, "ssr_chi2test")
        np.testing.assert_allclose(out.pmin[c], want, rtol=1e-8)
