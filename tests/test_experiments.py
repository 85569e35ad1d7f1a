"""The studies in experiments/ run end to end on tiny iris configs (CONFIG overrides).

Every retraining compiles its own epoch function, so these take a minute or two each on an idle
2-core CPU (several under load): marked slow."""

import json

import pytest

from experiments import mnist_original, sensitivity, tabular

TINY_TRAIN = {"hidden": (4,), "batch_size": 8, "epochs": 14, "window": 30, "stride": 27, "learning_rate": 0.1}
TINY_CFG = {"maxlag": 2, "pt_windows": 5, "target_accuracy": 0.5, "le_mode": "fast", "verify_sample": 4}


@pytest.fixture
def tiny(monkeypatch):
    for mod in (tabular, mnist_original, sensitivity):
        monkeypatch.setitem(mod.CONFIG, "train_overrides", TINY_TRAIN)
        monkeypatch.setitem(mod.CONFIG, "cfg_overrides", TINY_CFG)
    for mod in (tabular, mnist_original):  # one curve point, few null draws: keeps these fast
        monkeypatch.setitem(mod.CONFIG, "quick_sparsities", (0.5,))
        monkeypatch.setitem(mod.CONFIG, "null_draws", 3)
    monkeypatch.setitem(tabular.CONFIG, "baselines_for", ("legcnet_ft",))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tabular_main(tiny, tmp_path):
    assert (
        tabular.main(["--quick", "--datasets", "iris", "--seeds", "2", "--out", str(tmp_path), "--no-artifacts"]) == 0
    )
    text = (tmp_path / "report.md").read_text()
    assert "[iris](iris/report.md)" in text and "## Verdicts" in text
    sub = (tmp_path / "iris" / "report.md").read_text()
    assert "## Does the causal criterion beat" in sub and "figures/accuracy_sparsity.png" in sub
    assert "## Null controls" in sub and "## Accuracy-vs-sparsity curves" in sub
    res = json.loads((tmp_path / "iris" / "results.json").read_text())
    assert {r["sparsity"] for r in res["curves"]} == {0.5}
    assert {r["draws"] for r in res["null_controls"] if r["control"] != "crossseed"} == {3}
    assert "LEGCNet-FT |" in sub.split("## Weight spectra")[1]  # retrained nets were saved
    assert not list(tmp_path.rglob("*.npz")) and not list(tmp_path.rglob("ckpt_*"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary[0]["dataset"] == "iris"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mnist_original_main_on_iris(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(mnist_original.CONFIG, "dataset", "iris")
    monkeypatch.setitem(mnist_original.CONFIG, "last_two_layers", (-1,))
    assert mnist_original.main(["--quick", "--seeds", "1", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "all weights" in text and "last two layers" in text
    last = json.loads((tmp_path / "last_two_layers" / "results.json").read_text())
    assert all(r["pruned_per_layer"][0] == 0 for r in last["runs"])  # layer filter held


@pytest.mark.timeout(600)
def test_sensitivity_main(tiny, monkeypatch, tmp_path):
    monkeypatch.setitem(sensitivity.CONFIG, "quick_grid", {"alpha": (0.2,)})
    monkeypatch.setitem(sensitivity.CONFIG, "retrain", ("legcnet_ft", "random"))
    assert sensitivity.main(["--quick", "--seeds", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    alphas = [r for r in data["rows"] if r["param"] == "alpha"]
    base = [r for r in data["rows"] if r["param"] == "base"][0]
    # prune when min p >= alpha: a larger alpha prunes fewer weights
    assert alphas and alphas[0]["sparsity_ft"] <= base["sparsity_ft"]
    assert (tmp_path / "figures" / "sensitivity.png").exists()
