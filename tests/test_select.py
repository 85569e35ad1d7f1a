"""The select stage (`jaxprune.select.analyze`) and the frozen stage results (`DenseRun`)."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxprune import pipeline, prune, rundir
from jaxprune import select as select_stage
from jaxprune.cli import main as cli_main
from jaxprune.config import LegcnetConfig
from jaxprune.data import load_dataset
from jaxprune.models import init_mlp
from jaxprune.stages import DenseRun
from jaxprune.train import TrainConfig

CFG = LegcnetConfig(train=TrainConfig(hidden=(5,)), maxlag=3, pt_windows=12)


def _case(n_windows=24, seed=0):
    """A 4-5-3 net and LE / risk series where a few weights drive the risk."""
    _, params = init_mlp((4, 5, 3), seed=seed)
    n_w = 4 * 5 + 5 * 3
    rng = np.random.default_rng(seed)
    le = rng.normal(size=(n_windows, n_w))
    risk = np.cumsum(rng.normal(size=n_windows)) * 0.1
    le[:-1, :6] += 30.0 * risk[1:, None]  # weights 0..5 lead the risk by one window
    le[:, 7] = np.nan  # never moved: untestable
    return le, risk, params


def test_analyze_equals_the_stepwise_stage():
    le, risk, params = _case()
    got = select_stage.analyze(le, risk, params, CFG, seed=3)
    assert set(got.masks) == {"legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt", "dense"}
    for method, n in (("legcnet_ft", 24), ("legcnet_pt", 12)):
        outcome = select_stage.granger_on_le(le[:n], risk[:n], CFG)
        mask, summary = select_stage.mask_from_granger(outcome, params, CFG)
        np.testing.assert_array_equal(prune.flat_keep(got.masks[method]), prune.flat_keep(mask))
        np.testing.assert_array_equal(got.granger[method].pmin, outcome.pmin)
        assert got.summaries[method] == summary and got.granger[method].n_windows == n
        assert got.corrections[method] == select_stage.correction_table(outcome, params, CFG)
        tag = "" if method == "legcnet_ft" else "_pt"
        np.testing.assert_array_equal(
            prune.flat_keep(got.masks["random" + tag]), prune.flat_keep(prune.random_mask(params, mask, seed=3))
        )
        np.testing.assert_array_equal(
            prune.flat_keep(got.masks["magnitude" + tag]), prune.flat_keep(prune.magnitude_mask(params, mask))
        )
    assert prune.flat_keep(got.masks["dense"]).all()
    ft = prune.flat_keep(got.masks["legcnet_ft"])
    assert ft[:6].all() and not ft.all()  # the drivers are kept, something is pruned
    assert got.method_summary("legcnet_ft")["le_undefined"] == 1
    # the old dict interface of analyze_dense, and a frozen result
    assert got["masks"] is got.masks and set(got.as_dict()) == {
        "masks",
        "granger",
        "summaries",
        "corrections",
        "seconds",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.masks = {}
    # without baselines: the same FT / PT decisions only (what `jaxprune analyze` writes)
    only = select_stage.analyze(le, risk, params, CFG, baselines=False)
    assert set(only.masks) == {"legcnet_ft", "legcnet_pt"}
    for m in only.masks:
        np.testing.assert_array_equal(prune.flat_keep(only.masks[m]), prune.flat_keep(got.masks[m]))
    with pytest.raises(ValueError, match="needs seed="):
        select_stage.analyze(le, risk, params, CFG)
    # the old import paths resolve to the moved objects
    assert pipeline.granger_on_le is select_stage.granger_on_le
    assert pipeline.GrangerOutcome is select_stage.GrangerOutcome
    assert pipeline.LE_UNDEFINED == select_stage.LE_UNDEFINED == 100


def test_dense_run_round_trip_and_old_files(tmp_path):
    _, like = init_mlp((4, 5), seed=0)
    leaves = tuple(np.asarray(leaf) for leaf in jax.tree.leaves(like))
    dense = DenseRun(
        le=np.zeros((6, 20), np.float32),
        le_status=np.zeros((6, 20), np.int8),
        sample_windows=np.zeros((6, 10, 2), np.float32),
        sample_idx=np.array([1, 4]),
        risk=np.linspace(0, 1, 6),
        end_steps=np.arange(6) * 9 + 10,
        train_accuracy_history=np.array([0.5, 0.9]),
        loss_history=np.array([1.0, 0.5]),
        epoch_seconds=np.array([0.1, 0.1]),
        seconds=0.2,
        train_accuracy=0.9,
        test_accuracy=0.8,
        dense_epochs_to_threshold=2,
        steps=60,
        epochs=2,
        init_leaves=leaves,
        param_leaves=leaves,
        run_digest="abc",
    )
    path = tmp_path / "dense.npz"
    rundir.save_dense(path, dense)
    with np.load(path) as f:  # dense.npz's key set of earlier versions
        assert f.files == [
            "le",
            "le_status",
            "sample_windows",
            "sample_idx",
            "risk",
            "end_steps",
            "train_accuracy_history",
            "loss_history",
            "epoch_seconds",
            "seconds",
            "train_accuracy",
            "test_accuracy",
            "dense_epochs_to_threshold",
            "steps",
            "epochs",
            "init_0",
            "init_1",
            "params_0",
            "params_1",
            "run_digest",
        ]
        assert f["seconds"].dtype == np.float64 and f["steps"].dtype == np.int64
    back = rundir.load_dense_run(path, "abc")
    assert back.run_digest == "abc" and back.epochs == 2 and back.n_windows == 6
    for k, v in dense.to_arrays().items():
        np.testing.assert_array_equal(back[k], v)
    assert rundir.load_dense_run(path, "another run") is None
    # the mapping interface feeds load_params as the old dict did
    assert "init_0" in back
    for a, b in zip(jax.tree.leaves(pipeline.load_params(back, like, "init")), leaves):
        np.testing.assert_array_equal(a, b)
    # an older file without the verify sample or per-epoch times still loads
    old = {
        k: v
        for k, v in dense.to_arrays().items()
        if k not in ("sample_windows", "sample_idx", "epoch_seconds", "run_digest")
    }
    rundir.save_npz(tmp_path / "old.npz", **old)
    loaded = rundir.load_dense_run(tmp_path / "old.npz")
    assert loaded.run_digest is None and loaded.sample_idx.size == 0
    np.testing.assert_array_equal(loaded.le, dense.le)


@pytest.mark.timeout(600)
def test_run_and_analyze_share_one_select_stage(tmp_path, monkeypatch):
    calls = []
    real = select_stage.analyze

    def counting(*args, **kwargs):
        calls.append(kwargs.get("baselines", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(select_stage, "analyze", counting)
    # iris: 120 training examples, batch 8 -> 15 steps per epoch; 12 epochs -> 6 windows of 30
    cfg = LegcnetConfig(
        train=TrainConfig(hidden=(4,), batch_size=8, epochs=12, window=30, stride=27, learning_rate=0.1),
        le_mode="fast",
        maxlag=1,
        pt_windows=5,
        max_retrain_epochs=1,
        baselines_for=("legcnet_ft",),
        verify_sample=0,
    )
    pipeline.run(lambda s: load_dataset("iris", seed=s), cfg, [0], tmp_path / "run", nulls=None, checkpoint_every_s=1e9)
    assert calls == [True]
    out = tmp_path / "train"
    assert (
        cli_main(
            [
                "train",
                "--dataset",
                "iris",
                "--epochs",
                "12",
                "--batch-size",
                "8",
                "--hidden",
                "4",
                "--window",
                "30",
                "--stride",
                "27",
                "--lr",
                "0.1",
                "--le-mode",
                "fast",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = pipeline.analyze_train_dir(out, lambda c: c.replace(maxlag=1, pt_windows=5))
    assert calls == [True, False]
    assert set(summary["summaries"]) == {"legcnet_ft", "legcnet_pt"}
    # analysis.npz is select.analyze's decision on the recorded series
    windows = rundir.load_npz(out / "windows.npz")
    _, like = init_mlp((4, 4, 3), seed=0)
    params = pipeline.load_params(out / "params.npz", like)
    want = real(
        windows["le"],
        windows["risk"],
        params,
        LegcnetConfig(train=TrainConfig(hidden=(4,)), maxlag=1, pt_windows=5),
        baselines=False,
    )
    saved = rundir.load_npz(out / "analysis.npz")
    for m in ("legcnet_ft", "legcnet_pt"):
        np.testing.assert_array_equal(saved[f"mask_{m}"], prune.flat_keep(want.masks[m]))
        np.testing.assert_array_equal(saved[f"pmin_{m}"], want.granger[m].pmin)


@pytest.mark.timeout(600)
def test_parity_run_scopes_x64(tmp_path):
    """pipeline.run switches float64 on for parity mode inside a scoped block only: it works
    with x64 off (the LE kernel refuses float64 without it) and leaves the flag off."""
    cfg = LegcnetConfig(
        train=TrainConfig(hidden=(3,), batch_size=8, epochs=10, window=30, stride=27, learning_rate=0.1),
        le_mode="parity",
        maxlag=1,
        pt_windows=5,
        max_retrain_epochs=1,
        baselines_for=(),
        verify_sample=0,
    )
    with jax.enable_x64(False):
        pipeline.run(
            lambda s: load_dataset("iris", seed=s), cfg, [0], tmp_path / "run", nulls=None, checkpoint_every_s=1e9
        )
        assert not jax.config.read("jax_enable_x64")
    dense = rundir.load_dense_run(tmp_path / "run" / "seed_0" / "dense.npz")
    assert dense.le.dtype == np.float64 and dense.n_windows == 5
