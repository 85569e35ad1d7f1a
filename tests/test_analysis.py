"""jaxprune.analysis (paired tests, IoU, ESD alpha), figures and the extended report on a fake
run directory with the pipeline's file layout (no training: fast)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from jaxprune import analysis as an
from jaxprune import figures, report, rundir
from jaxprune.figures import make_figures


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(0.9, 0.02, 8)
    b = a - rng.normal(0.01, 0.003, 8)
    res = an.paired_test(a, b, name_a="FT", name_b="random pruning")
    ref = stats.ttest_rel(a, b)
    d = a - b
    assert res["p_t"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert res["t"] == pytest.approx(ref.statistic, rel=1e-12)
    assert res["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue, rel=1e-12)
    assert res["d_z"] == pytest.approx(d.mean() / d.std(ddof=1))
    half = stats.t.ppf(0.975, 7) * d.std(ddof=1) / np.sqrt(8)
    assert res["ci_low"] == pytest.approx(d.mean() - half)
    assert res["significant"] and res["verdict"].startswith("FT is better than random pruning")
    # no Wilcoxon below 6 seeds; a plain "does not" when not significant
    res5 = an.paired_test(
        [0.9, 0.8, 0.85, 0.7, 0.6], [0.85, 0.82, 0.8, 0.72, 0.5], name_a="FT", name_b="random pruning at equal sparsity"
    )
    assert res5["p_wilcoxon"] is None and not res5["significant"]
    assert res5["verdict"].startswith("FT does not beat random pruning at equal sparsity (mean diff +3.20 pp")
    assert "5 seeds" in res5["verdict"]


def test_paired_test_degenerate_cases():
    same = an.paired_test([0.9, 0.8], [0.9, 0.8], name_a="FT", name_b="B")
    assert "identical in all 2 seeds" in same["verdict"] and np.isnan(same["p_t"])
    const = an.paired_test([0.9, 0.8, 0.7], [0.8, 0.7, 0.6], name_a="FT", name_b="B")
    assert "constant" in const["verdict"]
    one = an.paired_test([0.9], [0.8])
    assert "too few" in one["verdict"]


def test_compare_methods_pairs_by_seed_and_name():
    runs = []
    for s in range(3):
        for name, acc in (("dense", 0.9), ("legcnet_ft", 0.88 + 0.01 * s), ("random", 0.87), ("magnitude", 0.89)):
            runs.append(
                {
                    "name": name,
                    "method": name.split("_")[0] if name != "legcnet_ft" else name,
                    "seed": s,
                    "test_accuracy": acc,
                    "macro_f1": acc,
                    "pruned_per_layer": [0, 0] if name == "dense" else [2, 1],
                    "sparsity": 0.1,
                }
            )
    res = {f"{c['a']}|{c['b']}": c for c in an.compare_methods(runs)}
    assert set(res) == {"legcnet_ft|random", "legcnet_ft|magnitude", "legcnet_ft|dense"}
    assert res["legcnet_ft|random"]["seeds"] == [0, 1, 2]
    assert res["legcnet_ft|random"]["mean_diff"] == pytest.approx(0.02)
    assert res["legcnet_ft|random"]["equal_sparsity"]


def test_compare_methods_missing_seed_unequal_counts_against_scipy():
    """A baseline missing for one seed is paired on the common seeds only; one seed with other
    per-layer counts makes the comparison unequal; p-values are scipy's on the paired values."""
    rng = np.random.default_rng(5)
    acc = {n: rng.uniform(0.7, 0.9, 4) for n in ("legcnet_ft", "random", "magnitude", "dense")}
    runs = []
    for s in range(4):
        for name in acc:
            if name == "random" and s == 2:
                continue  # this seed's random baseline never finished
            pruned = [0, 0] if name == "dense" else [3, 1]
            if name == "magnitude" and s == 1:
                pruned = [2, 2]  # same total, other layers: not equal sparsity per layer
            runs.append(
                {
                    "name": name,
                    "method": name,
                    "seed": s,
                    "test_accuracy": float(acc[name][s]),
                    "pruned_per_layer": pruned,
                    "sparsity": sum(pruned) / 20,
                }
            )
    res = {f"{c['a']}|{c['b']}": c for c in an.compare_methods(runs)}
    r = res["legcnet_ft|random"]
    assert r["seeds"] == [0, 1, 3] and r["equal_sparsity"]
    ref = stats.ttest_rel(acc["legcnet_ft"][[0, 1, 3]], acc["random"][[0, 1, 3]])
    assert r["p_t"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert r["t"] == pytest.approx(ref.statistic, rel=1e-12)
    m = res["legcnet_ft|magnitude"]
    assert m["seeds"] == [0, 1, 2, 3] and not m["equal_sparsity"]
    assert m["p_t"] == pytest.approx(stats.ttest_rel(acc["legcnet_ft"], acc["magnitude"]).pvalue, rel=1e-12)
    assert res["legcnet_ft|dense"]["equal_sparsity"]  # dense is the unpruned reference


def test_iou_and_chance():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 0, 1, 1], bool)
    assert an.iou(a, b) == pytest.approx(2 / 4)
    assert an.iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    # chance IoU is what random sets give on average
    rng = np.random.default_rng(1)
    n, k1, k2 = 200, 30, 50
    sims = []
    for _ in range(4000):
        x = np.zeros(n, bool)
        y = np.zeros(n, bool)
        x[rng.choice(n, k1, replace=False)] = True
        y[rng.choice(n, k2, replace=False)] = True
        sims.append(an.iou(x, y))
    assert an.chance_iou(k1, k2, n) == pytest.approx(np.mean(sims), rel=0.03)


def test_mask_stability_tables():
    keep = {
        s: {
            "legcnet_ft": np.array([0, 1, 1, 1, 0, 1], bool),
            "legcnet_pt": np.array([0, 1, 1, 1, 1, 1], bool),
            "magnitude": np.array([0, 1, 1, 1, 1, 0], bool),
            "random": np.array([1, 0, 1, 1, 0, 1], bool),
        }
        for s in (0, 1)
    }
    st = an.mask_stability(keep, [0, 3, 6])
    assert st["within"]["legcnet_ft|legcnet_pt"]["iou"] == pytest.approx(1 / 2)
    assert st["within"]["legcnet_ft|magnitude"]["iou"] == pytest.approx(1 / 3)
    assert st["across"]["legcnet_ft"]["iou"] == 1.0 and st["across"]["legcnet_ft"]["pairs"] == 1


@pytest.mark.parametrize("alpha", [2.0, 2.5, 3.5])
def test_powerlaw_fit_recovers_exponent(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    tail = (1 - rng.random(3000)) ** (-1 / (alpha - 1))  # Pareto, xmin 1
    bulk = rng.random(2000) * 0.99  # below xmin: the fit must find xmin ~ 1
    fit = an.powerlaw_fit(np.r_[tail, bulk])
    assert fit["alpha"] == pytest.approx(alpha, abs=0.15)
    assert 0.9 <= fit["xmin"] <= 1.5


def test_esd_alpha_heavy_tailed_matrix():
    # Random matrices with Pareto(mu) entries, mu < 2: ESD tail exponent 1 + mu/2
    # (Martin & Mahoney's heavy-tailed universality classes).
    rng = np.random.default_rng(0)
    for mu in (0.5, 1.0):
        w = rng.pareto(mu, size=(1500, 400)) * rng.choice([-1, 1], size=(1500, 400))
        fit = an.esd_alpha(w)
        assert fit["n_eigs"] == 400
        # measured 1.24 and 1.55: the +-0.1 ranges do not overlap, so the two classes differ
        assert fit["alpha"] == pytest.approx(1 + mu / 2, abs=0.1)
    # a Gaussian (Marchenko-Pastur) matrix has no heavy tail: a large alpha
    assert an.esd_alpha(rng.normal(size=(1500, 400)))["alpha"] > 4
    tiny = an.esd_alpha(rng.normal(size=(4, 6)))
    assert np.isnan(tiny["alpha"]) and tiny["n_eigs"] == 4


# ------------------------------------------------------------------------------ fake run dir
SHAPES = [(5, 4), (4, 3)]
NAMES = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt")


def _fake_run(tmp_path, seeds=(0, 1, 2), retrained=True):
    rng = np.random.default_rng(0)
    sizes = [a * b for a, b in SHAPES]
    n = sum(sizes)
    runs, per_seed = [], []
    for s in seeds:
        d = tmp_path / f"seed_{s}"
        d.mkdir(parents=True)
        le = rng.normal(0.5, 0.3, (30, n))
        le[:, 0] = np.nan  # a weight that never moves
        leaves = {}
        for i, (a, b) in enumerate(SHAPES):
            leaves[f"params_{2 * i}"] = rng.normal(size=b)
            leaves[f"params_{2 * i + 1}"] = rng.normal(size=(a, b))
            leaves[f"init_{2 * i}"] = rng.normal(size=b)
            leaves[f"init_{2 * i + 1}"] = rng.normal(size=(a, b))
        np.savez(
            d / "dense.npz",
            le=le,
            risk=np.linspace(0.6, 0.1, 30),
            train_accuracy_history=np.linspace(0.4, 0.9, 12),
            **leaves,
        )
        masks = {}
        for name in NAMES:
            keep = np.ones(n, bool)
            if name != "dense":
                keep[rng.choice(n, 4, replace=False)] = False
            masks[f"mask_{name}"] = keep
        pmin = rng.random(n)
        pmin[0] = np.nan
        np.savez(d / "analysis.npz", **masks, pmin_legcnet_ft=pmin, pmin_legcnet_pt=pmin[::-1])
        for name in NAMES:
            keep = masks[f"mask_{name}"]
            pruned = [int((~keep[: sizes[0]]).sum()), int((~keep[sizes[0] :]).sum())]
            runs.append(
                {
                    "name": name,
                    "method": name.split("_")[0] if "legcnet" not in name else name,
                    "seed": s,
                    "matched_to": None,
                    "test_accuracy": 0.8 + 0.05 * rng.random(),
                    "macro_f1": 0.8,
                    "macro_precision": 0.8,
                    "macro_recall": 0.8,
                    "sparsity": sum(pruned) / n,
                    "flops": 100,
                    "epochs": 10,
                    "pruned_per_layer": pruned,
                    "kept_per_layer": [sz - p for sz, p in zip(sizes, pruned)],
                    "reached_threshold": True,
                    "epochs_to_threshold": 10,
                }
            )
            if retrained:
                params = {
                    "layers": {
                        str(i): {"kernel": rng.normal(size=sh), "bias": np.zeros(sh[1])} for i, sh in enumerate(SHAPES)
                    }
                }
                rundir.save_retrained(
                    tmp_path, s, name, params, {"train_accuracy": list(np.linspace(0.3, 0.9, 8)), "loss": [1.0] * 8}
                )
        summ = {
            "n_windows": 30,
            "maxlag_used": 5,
            "pruned": [2, 2],
            "pruned_total": 4,
            "sparsity": 4 / n,
            "untestable": [1, 0],
            "le_undefined": 1,
            "pruned_if_keep": 4,
            "pruned_if_prune": 5,
            "corrections": {"none": {"pruned_if_keep": 4, "pruned_if_prune": 5, "n_weights": n}},
        }
        per_seed.append(
            {
                "seed": s,
                "summaries": {"legcnet_ft": summ, "legcnet_pt": summ},
                "timings": {"train_and_le": 1.0, "retrain": 1.0},
                "dense_full_run": {
                    "train_accuracy": 0.9,
                    "test_accuracy": 0.85,
                    "epochs": 12,
                    "steps": 100,
                    "n_windows": 30,
                },
            }
        )
    results = {
        "dataset": "fake",
        "seeds": list(seeds),
        "runs": runs,
        "per_seed": per_seed,
        "config": {
            "train": {
                "hidden": [4],
                "activation": "sigmoid",
                "loss": "mse",
                "optimizer": "sgd",
                "learning_rate": 0.1,
                "batch_size": 8,
                "epochs": 12,
                "window": 30,
                "stride": 27,
            },
            "le_mode": "fast",
            "test": "ssr_chi2test",
            "maxlag": 5,
            "alpha": 0.05,
            "correction": "none",
            "untestable": "keep",
            "pt_windows": 10,
            "target_accuracy": 0.8,
            "max_retrain_epochs": None,
            "layers": None,
        },
        "jax": {"backend": "cpu", "devices": ["cpu:0"], "version": "x"},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    return results


def test_figures_and_report_from_fake_run_dir(tmp_path):
    results = _fake_run(tmp_path)
    figs, errors = make_figures(tmp_path, results)
    assert not errors, errors
    assert set(figs) == {"le_heatmap", "risk", "pmin_hist", "accuracy_epochs", "pruned_per_layer", "accuracy_sparsity"}
    for rel in figs.values():
        assert (tmp_path / rel).stat().st_size > 1000
    path = report.report_from_dir(tmp_path)
    text = path.read_text()
    for needle in (
        "| legcnet_ft |",
        "## Does the causal criterion beat",
        "## Mask stability",
        "## Weight spectra",
        "![Test accuracy vs sparsity](figures/accuracy_sparsity.png)",
        "FT does not beat random pruning",
        "LEGCNet-FT vs magnitude (FT sparsity)",
    ):
        assert needle in text, needle
    assert (tmp_path / "analyses.json").exists()
    assert report.main([str(tmp_path)]) == 0


def test_report_degrades_without_per_seed_files(tmp_path):
    results = _fake_run(tmp_path, retrained=False)
    for s in results["seeds"]:
        for f in (tmp_path / f"seed_{s}").iterdir():
            f.unlink()
    text = report.write_report(results, tmp_path / "report.md").read_text()
    assert "| legcnet_ft |" in text and "Not available" in text
    # paired tests need only results.json; the verdict is pinned (seeded fake accuracies) and
    # its p-value is scipy's paired t-test on those accuracies
    acc = {n: [r["test_accuracy"] for r in results["runs"] if r["name"] == n] for n in ("legcnet_ft", "random")}
    assert round(stats.ttest_rel(acc["legcnet_ft"], acc["random"]).pvalue, 2) == 0.51
    assert (
        "* FT does not beat random pruning at equal sparsity (mean diff -0.72 pp, 95% CI "
        "[-4.63, +3.20], d=-0.45, p=0.51, 3 seeds)."
    ) in text


# ------------------------------------------------------------------------------ RunData
GOLDEN = Path(__file__).parent / "data"


def _fake_run_variant(tmp_path, variant):
    results = _fake_run(tmp_path, retrained=variant == "full")
    if variant == "no_seed_files":
        for s in results["seeds"]:
            for f in (tmp_path / f"seed_{s}").iterdir():
                f.unlink()
    return results


@pytest.mark.parametrize(
    "variant,golden",
    [
        ("full", "report_fake_run.md"),
        ("no_retrained", "report_fake_run_no_retrained.md"),
        ("no_seed_files", "report_fake_run_no_seed_files.md"),
    ],
)
def test_report_text_unchanged(tmp_path, variant, golden):
    # the golden files are the reports the package wrote for these fake runs before the report
    # and the figures were built from one in-memory RunData; the text must not change
    results = _fake_run_variant(tmp_path, variant)
    text = report.write_report(results, tmp_path / "report.md").read_text()
    assert text == (GOLDEN / golden).read_text()
    # the same from a RunData, loaded once
    data = rundir.load_run_data(tmp_path, results)
    assert report.render(data, extras=report.analyse_run(data)) == text


def test_load_run_data_records_missing_and_corrupt_files(tmp_path):
    results = _fake_run(tmp_path)
    (tmp_path / "seed_1" / "analysis.npz").unlink()
    (tmp_path / "seed_0" / "retrained_random.npz").unlink()
    (tmp_path / "seed_2" / "dense.npz").write_bytes(b"not a zip file")
    data = rundir.load_run_data(tmp_path)  # results.json read from the directory
    assert data.results == results and list(data.seeds) == [0, 1, 2]
    assert set(data.missing) == {"seed_1/analysis.npz", "seed_0/retrained_random.npz"}
    assert list(data.errors) == ["seed_2/dense.npz"]
    assert "seed_2/dense.npz is corrupt" in data.errors["seed_2/dense.npz"]
    assert data.seeds[2].dense is None and data.seeds[1].analysis is None
    assert "random" not in data.seeds[0].retrained and "random" in data.seeds[1].retrained
    # the LE series of the first seed only; the report's parts of dense.npz, not the LE
    assert data.le_seed == 0 and data.le.shape == (30, sum(a * b for a, b in SHAPES))
    assert "le" not in data.seeds[1].dense and data.seeds[1].dense["risk"].shape == (30,)
    assert set(data.masks()) == {0, 2}
    # whatever needed the unreadable file says why; the rest is drawn
    out = report.analyse_run(data)
    assert "risk: CorruptFileError" in out["notes"]["figures"]
    assert "le_heatmap" in out["figures"] and "pmin_hist" in out["figures"]
    assert out["notes"]["esd"].startswith("CorruptFileError")
    with pytest.raises(FileNotFoundError, match="no results.json in"):
        rundir.load_run_data(tmp_path / "nowhere")


def test_analysis_of_in_memory_run_data_needs_no_directory(tmp_path):
    results = _fake_run(tmp_path)
    loaded = rundir.load_run_data(tmp_path, results)
    # the same arrays, held in memory only: nothing to read, nothing written
    data = rundir.RunData(results=results, seeds=loaded.seeds, le=loaded.le, le_seed=loaded.le_seed)
    extras = report.analyse(data)
    text = report.render(data)
    assert not (tmp_path / "figures").exists() and not (tmp_path / "analyses.json").exists()
    assert "figures" not in extras and "## Mask stability" in text
    assert "## Deployment" not in text  # the deployment table reads the directory's masks
    # the same numbers as the analysis of the directory (which also draws the figures)
    on_disk = report.analyse_run(tmp_path, results)
    assert len(on_disk.pop("figures")) == 6
    assert rundir.json_safe(extras) == rundir.json_safe(on_disk)


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_functions_take_arrays(tmp_path):
    rng = np.random.default_rng(1)
    offsets = [0, 12, 20]
    le = rng.normal(size=(15, 20))
    le[:, 3] = np.nan
    pmin = rng.random(20)
    out = tmp_path / "figs"
    p = figures.le_heatmap(le, offsets, out / "le.png", pmin=pmin, alpha=0.05, seed=7)
    assert p == out / "le.png" and _png(p)
    assert _png(figures.risk_series({0: np.linspace(0.5, 0.1, 15), 1: rng.random(15)}, out / "risk.png", pt_windows=5))
    assert _png(
        figures.pmin_hist({"legcnet_ft": [pmin], "legcnet_pt": [pmin[::-1], pmin]}, out / "pmin.png", alpha=0.05)
    )
    assert _png(
        figures.accuracy_epochs(
            {0: {"legcnet_ft": np.linspace(0.3, 0.9, 6), "random": np.array([])}},
            {0: np.linspace(0.2, 0.95, 9)},
            out / "acc.png",
            target_accuracy=0.9,
        )
    )
    # nothing to draw: no file
    assert figures.risk_series({}, out / "r0.png", pt_windows=5) is None
    assert figures.pmin_hist({"legcnet_ft": []}, out / "p0.png", alpha=0.05) is None
    assert figures.accuracy_epochs({}, {}, out / "a0.png", target_accuracy=0.9) is None
    assert sorted(f.name for f in out.iterdir()) == ["acc.png", "le.png", "pmin.png", "risk.png"]
