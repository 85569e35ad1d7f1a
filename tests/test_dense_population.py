"""The dense stage of many seeds as one population (jaxprune.dense_population): members equal
lone `fit_dense` runs, own data splits, no recompilation for new seeds, chunking, the pipeline's
per-seed dense.npz cache and resume."""

import jax
import numpy as np
import pytest

from jaxprune import pipeline, rundir
from jaxprune.data import load_dataset
from jaxprune.dense_population import DensePopulationTrainer, fit_dense_population, le_host_fn
from jaxprune.pipeline import LegcnetConfig
from jaxprune.train import TrainConfig

# iris: 120 training examples, batch 8 -> 15 steps per epoch; 14 epochs -> 210 steps -> 7 windows
CFG = LegcnetConfig(
    train=TrainConfig(hidden=(6,), batch_size=8, epochs=14, window=30, stride=27, learning_rate=0.1),
    maxlag=2,
    pt_windows=5,
    target_accuracy=0.7,
    le_mode="parity",
    verify_sample=7,
)
SEEDS = [0, 1, 2]
FIELDS = ("le", "le_status", "risk", "end_steps", "sample_windows", "sample_idx")
HISTORIES = ("train_accuracy_history", "loss_history")


def _data(seeds):
    return [load_dataset("iris", seed=s) for s in seeds]


@pytest.fixture(scope="module")
def population():
    with jax.enable_x64(True):  # parity mode: float64 Lyapunov
        seen = []
        runs, info = fit_dense_population(
            _data(SEEDS), CFG, SEEDS, on_window=lambda i, k, le, risk, end: seen.append((i, k, risk, end))
        )
    return runs, info, seen


@pytest.fixture(scope="module")
def lone():
    with jax.enable_x64(True):
        return [pipeline.fit_dense(d, CFG, s) for d, s in zip(_data(SEEDS), SEEDS, strict=True)]


def _assert_same(a, b, atol=1e-12):
    for f in FIELDS:
        x, y = np.asarray(getattr(a, f)), np.asarray(getattr(b, f))
        assert x.shape == y.shape and x.dtype == y.dtype, f
        np.testing.assert_allclose(x, y, atol=atol, rtol=0, equal_nan=True, err_msg=f)
    for f in HISTORIES:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=atol, rtol=0, err_msg=f)
    for x, y in zip(a.param_leaves + a.init_leaves, b.param_leaves + b.init_leaves, strict=True):
        np.testing.assert_allclose(x, y, atol=atol, rtol=0)
    for f in ("train_accuracy", "test_accuracy", "dense_epochs_to_threshold", "steps", "epochs", "n_windows"):
        assert getattr(a, f) == pytest.approx(getattr(b, f), abs=atol), f


@pytest.mark.timeout(300)
def test_members_equal_lone_fit_dense(population, lone):
    """Every member (own seed, own data split) equals `fit_dense` of that seed alone: the same
    LE series and statuses, risk, verify windows, histories, params (x64 parity; the members
    and the lone nets may differ only by matmul association, far below 1e-12 here)."""
    runs, info, seen = population
    assert info["members"] == 3 and info["chunk_size"] == 3
    for got, want in zip(runs, lone, strict=True):
        assert got.le.dtype == np.float64 and got.n_windows == 7
        _assert_same(got, want)
        assert np.isfinite(got.le).mean() > 0.5  # the LE kernel really ran
    # the splits differ per seed, and so do the members
    d = _data(SEEDS)
    assert not np.array_equal(d[0].x_train, d[1].x_train)
    assert not np.allclose(runs[0].risk, runs[1].risk)
    # on_window: every member's every window in order, with the risk the DenseRun keeps
    for i, run_ in enumerate(runs):
        mine = [(k, r, e) for j, k, r, e in seen if j == i]
        assert [k for k, _, _ in mine] == list(range(run_.n_windows))
        np.testing.assert_array_equal([r for _, r, _ in mine], run_.risk)
        np.testing.assert_array_equal([e for _, _, e in mine], run_.end_steps)


@pytest.mark.timeout(300)
def test_new_seeds_do_not_recompile_and_chunking_is_the_same(population):
    runs, _, _ = population
    d = _data([5, 6, 7])
    with jax.enable_x64(True):
        t = DensePopulationTrainer(CFG.train, n_features=4, n_classes=3, n_train=120, n_test=30)
        stack = lambda key, ds: np.stack([getattr(x, key) for x in ds])  # noqa: E731
        fn = le_host_fn(CFG)
        args = lambda ds: [stack(k, ds) for k in ("x_train", "y_train", "x_test", "y_test")]  # noqa: E731
        t.fit([5, 6, 7], *args(d), le_fn=fn, epochs=2)
        traces = t.traces
        # other seeds and data splits, same member count: the same compiled program
        again = t.fit([0, 1, 2], *args(_data(SEEDS)), le_fn=fn, epochs=2)
        assert t.traces == traces
        assert not np.array_equal(again[0].param_leaves[0], again[1].param_leaves[0])
        # a memory budget of two members: chunks of 2 (the last padded), the same results
        budget = 2 * t.member_bytes() + 1
        assert t.chunk_size(3, budget) == 2 and t.chunk_size(3, None) == 3
        chunked, info = fit_dense_population(_data(SEEDS), CFG, SEEDS, memory_budget_bytes=budget)
        assert info["chunk_size"] == 2
        for a, b in zip(chunked, runs, strict=True):
            _assert_same(a, b, atol=1e-6)  # float32 training: chunks may round differently
    with pytest.raises(ValueError, match="x_train must be"):
        t.fit([1, 2], *args(d), le_fn=fn)
    with pytest.raises(ValueError, match="data sets for"):
        fit_dense_population(_data([0]), CFG, [0, 1])


@pytest.mark.timeout(300)
def test_pipeline_dense_stage_caches_per_seed_and_resumes(population, tmp_path):
    """dense_population_stage saves each member's dense.npz with its stage digest; a second
    call reuses them (no training); a lost file is recomputed to the same result; the PT
    decision is made per member during training."""
    runs, _, _ = population
    datas = _data(SEEDS)
    with jax.enable_x64(True):
        dense, pt, info = pipeline.dense_population_stage(datas, CFG, SEEDS, tmp_path, digest="run")
        assert info["members"] == 3 and sorted(pt) == SEEDS
        for s, want in zip(SEEDS, runs, strict=True):
            _assert_same(dense[s], want)
            saved = rundir.load_dense_run(tmp_path / f"seed_{s}" / "dense.npz", None)
            assert saved.run_digest == pipeline.dense_stage_digest(CFG, datas[s], s)
            assert pt[s]["step"] == int(want.end_steps[CFG.selection.pt_windows - 1])
        before = {s: (tmp_path / f"seed_{s}" / "dense.npz").stat().st_mtime_ns for s in SEEDS}
        (tmp_path / "seed_1" / "dense.npz").unlink()
        dense2, pt2, info2 = pipeline.dense_population_stage(datas, CFG, SEEDS, tmp_path, digest="run")
        # the whole seed list trained again (the same population: the identical result); only
        # the lost file was written, and only its PT decision made
        assert info2["members"] == 3 and sorted(pt2) == [1]
        for s in (0, 2):
            assert (tmp_path / f"seed_{s}" / "dense.npz").stat().st_mtime_ns == before[s]
        _assert_same(dense2[1], runs[1])
        dense3, _, info3 = pipeline.dense_population_stage(datas, CFG, SEEDS, tmp_path, resume=True, digest="run")
        assert info3["members"] == 0
        for s in SEEDS:
            _assert_same(dense3[s], dense2[s], atol=0)
