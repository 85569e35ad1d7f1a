"""The command line's glue: `run` flags -> config, `analyze` on both LE sources, and the README's
main command in its own mode (fast LE, x64 off) end to end in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxprune import pipeline
from jaxprune.cli import main
from jaxprune.pipeline import preset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured_run(monkeypatch):
    """`jaxprune run` with the pipeline replaced by a recorder of the config it would run."""
    seen = {}

    def fake_run(load, cfg, seeds, out, **kw):
        seen.update(cfg=cfg, seeds=list(seeds), **kw)
        return {"runs": []}

    monkeypatch.setattr(pipeline, "run", fake_run)
    return seen


def test_run_flags_become_the_config(captured_run, tmp_path):
    args = ["run", "--dataset", "iris", "--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    assert captured_run["cfg"] == preset("iris")
    assert (
        main(
            args
            + [
                "--quick",
                "--correction",
                "holm+bh",
                "--layers=-2,-1",
                "--seeds",
                "3",
                "--epochs",
                "7",
                "--lr",
                "0.2",
                "--alpha",
                "0.01",
                "--stationarity",
                "--round-pvalues",
                "4",
                "--untestable",
                "prune",
                "--resume",
            ]
        )
        == 0
    )
    cfg = captured_run["cfg"]
    quick = preset("iris", quick=True)
    assert quick != preset("iris")  # --quick means something for iris
    assert cfg.correction == ("holm", "bh") and cfg.layers == (-2, -1)
    assert (cfg.alpha, cfg.stationarity, cfg.round_pvalues, cfg.untestable) == (0.01, True, 4, "prune")
    assert cfg.train == quick.train.replace(epochs=7, learning_rate=0.2)
    assert cfg.baselines_for == quick.baselines_for and cfg.le_mode == quick.le_mode
    assert captured_run["seeds"] == [0, 1, 2] and captured_run["resume"] is True
    # a single correction stays a string; the config round-trips through config.json
    assert main(args + ["--correction", "bh", "--le-mode", "fast"]) == 0
    cfg = captured_run["cfg"]
    assert cfg.correction == "bh" and cfg.le_mode == "fast"
    assert pipeline.LegcnetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.timeout(600)
def test_analyze_recorded_and_rebuilt_le_agree(tmp_path, capsys):
    """`jaxprune analyze` on the LE recorded during training (--le-mode parity) and on the LE
    rebuilt from the kept trajectory: same p-values and masks."""
    out = tmp_path / "dense"
    # iris: 120 training examples, batch 8 -> 15 steps per epoch; 40 epochs -> 22 windows of 30
    assert (
        main(
            [
                "train",
                "--dataset",
                "iris",
                "--hidden",
                "6",
                "--batch-size",
                "8",
                "--lr",
                "0.1",
                "--epochs",
                "40",
                "--window",
                "30",
                "--stride",
                "27",
                "--le-mode",
                "parity",
                "--keep-trajectory",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    flags = ["--maxlag", "5", "--pt-windows", "12"]
    assert main(["analyze", str(out), *flags]) == 0
    assert "LE series: recorded during training" in capsys.readouterr().out
    recorded = dict(np.load(out / "analysis.npz"))
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["le_source"] == "recorded during training"
    assert summary["summaries"]["legcnet_pt"]["n_windows"] == 12

    windows = dict(np.load(out / "windows.npz"))
    le = windows.pop("le")
    windows.pop("le_status")
    np.savez(out / "windows.npz", **windows)  # as if trained without --le-mode
    assert main(["analyze", str(out), *flags]) == 0
    assert "computed from trajectory.npy (parity mode)" in capsys.readouterr().out
    rebuilt = dict(np.load(out / "analysis.npz"))
    for method in ("legcnet_ft", "legcnet_pt"):
        keep = recorded[f"mask_{method}"]
        assert 0 < keep.sum() < keep.size, method  # non-trivial: the equality means something
        np.testing.assert_array_equal(rebuilt[f"mask_{method}"], keep)
        np.testing.assert_allclose(rebuilt[f"pmin_{method}"], recorded[f"pmin_{method}"], rtol=1e-9, equal_nan=True)
    # and both are the Granger tests of the recorded series (not e.g. of a stale file)
    cfg = pipeline.LegcnetConfig(maxlag=5, pt_windows=12)
    want = pipeline.granger_on_le(le, windows["risk"], cfg).pmin
    np.testing.assert_allclose(recorded["pmin_legcnet_ft"], want, rtol=1e-12, equal_nan=True)

    os.remove(out / "trajectory.npy")
    assert main(["analyze", str(out)]) == 2
    assert "neither recorded LE series nor trajectory.npy" in capsys.readouterr().err


@pytest.mark.timeout(600)
def test_quick_run_end_to_end_without_x64(tmp_path):
    """The README's main command mode: `jaxprune run --quick` (fast, float32 LE) in a process
    where x64 stays off, as a user's shell has it (this suite's conftest turns x64 on)."""
    out = tmp_path / "run"
    code = (
        "import sys, jax; from jaxprune.cli import main; rc = main(sys.argv[1:]); "
        "assert not jax.config.read('jax_enable_x64'), 'x64 was switched on'; sys.exit(rc)"
    )
    # 12 epochs of 15 steps -> 6 windows of 30 (PT: 5); --quick is fast LE mode for mnist5k
    # only, so iris asks for it
    args = [
        "run",
        "--dataset",
        "iris",
        "--quick",
        "--le-mode",
        "fast",
        "--epochs",
        "12",
        "--batch-size",
        "8",
        "--window",
        "30",
        "--stride",
        "27",
        "--pt-windows",
        "5",
        "--maxlag",
        "3",
        "--max-retrain-epochs",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_ENABLE_X64": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def no_constants(name):
        raise AssertionError(f"results.json holds {name}: not valid JSON")

    results = json.loads((out / "results.json").read_text(), parse_constant=no_constants)
    assert results["config"]["lyapunov"]["le_mode"] == "fast"
    methods = {r["method"] for r in results["runs"]}
    assert methods == {"dense", "legcnet_ft", "legcnet_pt", "random", "magnitude"}
    dense = np.load(out / "seed_0" / "dense.npz")
    assert dense["le"].dtype == np.float32 and dense["le"].shape[0] == 6
    assert np.isfinite(dense["le"]).any()
    assert (out / "report.md").read_text().count("| legcnet_ft |") >= 1


def test_quick_runs_sample_fewer_weights_for_the_nulls():
    """`run --quick` takes QUICK_MAX_PER_LAYER sampled weights per layer for the null controls; a
    full run the default, and an explicit --null-max-per-layer wins in both."""
    from jaxprune import cli
    from jaxprune.nulls import QUICK_MAX_PER_LAYER, NullConfig

    parse = cli.build_parser().parse_args
    base = ["run", "--dataset", "iris", "--out", "x"]
    assert cli._null_config(parse(base + ["--quick"])).max_per_layer == QUICK_MAX_PER_LAYER
    assert cli._null_config(parse(base)).max_per_layer == NullConfig().max_per_layer
    assert cli._null_config(parse(base + ["--quick", "--null-max-per-layer", "77"])).max_per_layer == 77
    assert cli._null_config(parse(base + ["--quick", "--null", "none"])) is None
