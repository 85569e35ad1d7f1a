"""Accuracy-vs-sparsity curves: ranking, per-layer counts, masks, AUC and paired tests against
NumPy / SciPy references, and a tiny end-to-end run (results.json + report.md sections)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate, stats

from jaxprune import curves, prune
from jaxprune.controls import render_section, run_controls
from jaxprune.data import load_dataset
from jaxprune.models import init_mlp
from jaxprune.nulls import NullConfig
from jaxprune.pipeline import GrangerOutcome, LegcnetConfig, run
from jaxprune.train import TrainConfig
from jaxprune.weights import flatten_kernels, kernel_layout

_, PARAMS = init_mlp((5, 4, 3), seed=0)  # 20 + 12 weights
LAYOUT = kernel_layout(PARAMS)


def _outcome(pmin, stat=None):
    n = pmin.size
    stat = np.zeros(n) if stat is None else stat
    status = np.where(np.isnan(pmin), 2, 0)
    return GrangerOutcome(pmin, np.tile(pmin[:, None], (1, 2)), status, 2, 30, stat)


def test_order_larger_p_first_ties_by_smaller_statistic_untestable_by_policy():
    p = np.array([0.5, 0.01, 0.5, np.nan, 0.9, 0.5])
    st = np.array([2.0, 9.0, 1.0, np.nan, 0.1, 2.0])
    rank = curves.causal_order_key(p, st, "keep")
    # 0.9 first; then the three 0.5s by statistic (1.0, then 2.0 twice by index); then 0.01;
    # the untestable weight last (keep: no evidence, the original's rule keeps it)
    assert list(np.argsort(rank)) == [4, 2, 0, 5, 1, 3]
    rank = curves.causal_order_key(p, st, "prune")
    assert list(np.argsort(rank)) == [3, 4, 2, 0, 5, 1]


@pytest.mark.parametrize("s", [0.25, 0.5, 0.8])
def test_causal_curve_mask_prunes_least_causal_per_layer(s):
    rng = np.random.default_rng(0)
    p = rng.random(LAYOUT.n_weights)
    mask = curves.causal_curve_mask(_outcome(p), PARAMS, s)
    pruned = ~prune.flat_keep(mask)
    for i in range(LAYOUT.n_layers):
        sl = LAYOUT.layer_slice(i)
        n_i = sl.stop - sl.start
        k = int(np.round(s * n_i))
        assert pruned[sl].sum() == k
        # the pruned ones are exactly the k largest p of the layer
        assert set(np.flatnonzero(pruned[sl])) == set(np.argsort(-p[sl])[:k])


def test_curve_masks_match_per_layer_counts_and_global_total():
    rng = np.random.default_rng(1)
    outs = {"legcnet_ft": _outcome(rng.random(LAYOUT.n_weights)), "legcnet_pt": _outcome(rng.random(LAYOUT.n_weights))}
    cfg = LegcnetConfig()
    masks = curves.curve_masks({"granger": outs}, PARAMS, (0.3, 0.7), cfg, seed=0)
    assert len(masks) == 2 * len(curves.CURVE_METHODS)
    mag = np.abs(np.asarray(flatten_kernels(PARAMS), np.float64))
    for s in (0.3, 0.7):
        got = {m: ~prune.flat_keep(k) for m, ss, k in masks if ss == s}
        assert set(got) == set(curves.CURVE_METHODS)
        ref = prune.per_layer_counts(got["causal_ft"], LAYOUT)
        assert ref.tolist() == [int(np.round(s * 20)), int(np.round(s * 12))]
        for m in ("causal_pt", "magnitude", "random"):
            assert prune.per_layer_counts(got[m], LAYOUT).tolist() == ref.tolist(), m
        assert got["magnitude_global"].sum() == ref.sum()
        # global magnitude: the ref.sum() smallest |w| over both layers
        assert set(np.flatnonzero(got["magnitude_global"])) == set(np.argsort(mag)[: ref.sum()])


def test_auc_and_paired_tests_against_scipy():
    s = [0.8, 0.2, 0.5]
    a = [0.6, 0.9, 0.85]
    order = np.argsort(s)
    ref = integrate.trapezoid(np.asarray(a)[order], np.asarray(s)[order]) / 0.6
    assert curves.auc(s, a) == pytest.approx(ref, rel=1e-14)
    assert curves.auc([0.5], [0.7]) == 0.7
    rng = np.random.default_rng(3)
    recs = []
    for seed in range(4):
        for m, shift in (("causal_ft", 0.02), ("magnitude", 0.0), ("random", -0.05)):
            for sp in (0.2, 0.5, 0.8):
                recs.append(
                    {
                        "method": m,
                        "seed": seed,
                        "sparsity": sp,
                        "test_accuracy": 0.9 - 0.3 * sp + shift + 0.01 * rng.random(),
                    }
                )
    table = curves.auc_table(recs)
    comps = {(c["name_a"], c["name_b"]): c for c in curves.auc_comparisons(recs)}
    assert set(comps) == {("causal_ft", "magnitude"), ("causal_ft", "random")}
    for b in ("magnitude", "random"):
        x = [table["causal_ft"][k] for k in range(4)]
        y = [table[b][k] for k in range(4)]
        assert comps[("causal_ft", b)]["p_t"] == pytest.approx(stats.ttest_rel(x, y).pvalue)


def test_parse_sparsities():
    assert curves.parse_sparsities("0.8,0.2") == (0.2, 0.8)
    assert curves.parse_sparsities("none") == ()
    for bad in ("0", "1.0", "0.2,0.2", "a", "1.5"):
        with pytest.raises(ValueError, match="--sparsities"):
            curves.parse_sparsities(bad)


# iris, 120 training examples, batch 8 -> 15 steps per epoch; 30 epochs -> 16 windows
TINY = LegcnetConfig(
    train=TrainConfig(hidden=(4,), batch_size=8, epochs=30, window=30, stride=27, learning_rate=0.1),
    maxlag=3,
    pt_windows=10,
    target_accuracy=0.7,
    le_mode="fast",
    verify_sample=0,
    baselines_for=("legcnet_ft",),
)


@pytest.mark.timeout(300)
def test_end_to_end_results_and_report_sections(tmp_path):
    out = tmp_path / "run"
    res = run(
        lambda s: load_dataset("iris", seed=s), TINY, [0, 1], out, nulls=NullConfig(draws=3), sparsities=(0.3, 0.6)
    )
    saved = json.loads((out / "results.json").read_text())
    recs = saved["null_controls"]
    assert {r["control"] for r in recs} == {"shuffle", "surrogate", "crossseed"}
    assert {r["mask"] for r in recs} == {"legcnet_ft", "legcnet_pt"}
    for r in recs:
        for k in ("seed", "mask", "layer", "control", "real_fraction", "null_fraction", "p_value"):
            assert k in r
    assert len(saved["null_calibration"]) == 2
    assert len(saved["curves"]) == 2 * 2 * len(curves.CURVE_METHODS)
    for r in saved["curves"]:
        assert set(curves.RECORD_KEYS) <= set(r)
        assert r["reached_threshold"] == (r["epochs_to_threshold"] is not None)
    text = (out / "report.md").read_text()
    assert "## Null controls" in text and "## Accuracy-vs-sparsity curves" in text
    assert "**Verdict:**" in text and "Paired tests of the AUC" in text
    assert (out / "figures" / "calibration.png").exists()
    assert (out / "figures" / "accuracy_sparsity_curves.png").exists()
    # the causal curve's per-layer counts are those of every other method at that sparsity
    assert res["curves"] == saved["curves"]
    # resume reuses the stage files: identical records, no retraining
    again = run(
        lambda s: load_dataset("iris", seed=s),
        TINY,
        [0, 1],
        out,
        resume=True,
        nulls=NullConfig(draws=3),
        sparsities=(0.3, 0.6),
    )
    assert again["curves"] == saved["curves"]
    assert again["null_controls"] == saved["null_controls"]
    # --null none / no sparsities: both sections say why they are empty
    skip = run_controls(None, TINY, [0], out, nulls=None, sparsities=())
    assert skip["null_controls"] == [] and skip["curves"] == []
    text = render_section({**saved, **skip}, None)
    assert "Skipped (`--null none`)" in text and "No curves" in text


def test_cli_rejects_bad_flags_with_exit_2(tmp_path):
    for flags in (["--null", "bogus"], ["--sparsities", "0.2,1.5"], ["--null-draws", "0"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from jaxprune.cli import main; sys.exit(main())",
                "run",
                "--dataset",
                "iris",
                "--out",
                str(tmp_path / "x"),
                *flags,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, (flags, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1].startswith(("jaxprune", "usage")) or "error" in proc.stderr


@pytest.mark.timeout(240)
def test_curves_of_several_seeds_in_one_population_equal_each_seed_alone():
    """Every seed's curve masks in ONE population (each member on its seed's split, from its
    seed's init) give the records of retraining that seed's masks alone."""
    import jax

    from jaxprune.pipeline import _init_params

    cfg = TINY.replace(max_retrain_epochs=8)
    items = []
    for seed in (0, 1):
        ds = load_dataset("iris", seed=seed)
        init = jax.tree.map(lambda a: np.asarray(a, np.float64), _init_params(ds, cfg, seed)[1])
        masks = [
            (m, s, prune.random_mask(init, s, seed=10 * seed + k))
            for k, (m, s) in enumerate([("random", 0.3), ("magnitude", 0.6), ("causal_ft", 0.6)])
        ]
        items.append((ds, init, masks, seed))
    together = curves.retrain_curves_seeds(items, cfg)
    assert list(together) == [0, 1]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]
    for ds, init, masks, seed in items:
        alone = curves.retrain_curves(ds, cfg, init, masks, seed)
        assert strip(together[seed]) == strip(alone)
        assert [r["seed"] for r in together[seed]] == [seed] * 3
    # the two splits differ, so the seeds' records are not each other's
    assert strip(together[0]) != [{**r, "seed": 0} for r in strip(together[1])]
