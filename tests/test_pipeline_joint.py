"""`run`'s retrain stage: every seed's masks as ONE population (`retrain_seeds_population`).

Each member trains on its seed's split, from its seed's initial weights, in its seed's batch
order; under float64 (x64, conftest) the joint population's records equal those of each seed
retrained alone; a resumed run that lost one seed's file rewrites it identically; one compiled
epoch for the whole population, chunked by the memory budget.
"""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxprune import pipeline, population, prune, rundir
from jaxprune.data import load_dataset
from jaxprune.pipeline import LegcnetConfig
from jaxprune.train import TrainConfig

# iris, 120 training examples, batch 8 -> 15 steps per epoch; members reach the threshold at
# different epochs (or never, the sparsest), so freezing is exercised too.
CFG = LegcnetConfig(
    train=TrainConfig(hidden=(6,), batch_size=8, epochs=12, learning_rate=0.5),
    target_accuracy=0.8,
)
SEEDS = (0, 1)
DIGEST = "d" * 64


def _jobs(cfg=CFG, dtype=np.float64):
    """Per seed (seed, its iris split, its init params, {dense, sparse30, sparse80 masks})."""
    jobs = []
    for seed in SEEDS:
        ds = load_dataset("iris", seed=seed)
        init = jax.tree.map(lambda a: np.asarray(a, dtype), pipeline._init_params(ds, cfg, seed)[1])
        masks = {
            "dense": jax.tree.map(lambda a: np.ones(np.shape(a), bool), init),
            "sparse30": jax.tree.map(np.asarray, prune.random_mask(init, 0.3, seed=10 + seed)),
            "sparse80": jax.tree.map(np.asarray, prune.random_mask(init, 0.8, seed=20 + seed)),
        }
        jobs.append((seed, ds, init, masks))
    return jobs


def _strip(rec):
    return {k: v for k, v in rec.items() if k != "seconds"}


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    """The joint population of both seeds (float64), with its trainers recorded."""
    out = tmp_path_factory.mktemp("joint")
    made = []
    init = population.PopulationTrainer.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(population.PopulationTrainer, "__init__", spy)
        recs, info = pipeline.retrain_seeds_population(_jobs(), CFG, out, digest=DIGEST)
    return out, recs, info, made


def test_joint_population_records_equal_each_seed_retrained_alone(joint, tmp_path):
    out, recs, info, _ = joint
    assert all(info[s]["members"] == 6 and info[s]["seconds"] > 0 for s in SEEDS)
    for seed, ds, init, masks in _jobs():
        alone, seconds = pipeline.retrain_seed_population(ds, CFG, seed, tmp_path, init, masks, digest=DIGEST)
        assert seconds > 0
        got = recs[seed]
        assert [r["name"] for r in got] == list(masks) and all(r["seed"] == seed for r in got)
        for a, b in zip(got, alone, strict=True):
            # discrete fields exactly, metrics to float64 rounding
            for k in ("epochs", "steps", "reached_threshold", "epochs_to_threshold", "pruned_per_layer", "flops"):
                assert a[k] == b[k], (seed, a["name"], k)
            for k in ("test_accuracy", "train_accuracy", "macro_f1", "sparsity"):
                assert a[k] == pytest.approx(b[k], abs=1e-12), (seed, a["name"], k)
            x = rundir.load_retrained(out, seed, a["name"])
            y = rundir.load_retrained(tmp_path, seed, a["name"])
            for u, v in zip(x["kernels"] + x["biases"], y["kernels"] + y["biases"], strict=True):
                np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(x["train_accuracy_history"], y["train_accuracy_history"], atol=1e-12)
    # the threshold froze members at different epochs (the property is not vacuous)
    epochs = {r["epochs"] for s in SEEDS for r in recs[s]}
    assert len(epochs) > 1


def test_joint_population_is_one_compiled_epoch_program(joint):
    *_, made = joint
    assert len(made) == 1  # one population for both seeds
    trainer = made[0]
    assert trainer.per_member_data and list(trainer.data_index) == [0, 0, 0, 1, 1, 1]
    assert trainer.trace_count == 1 and trainer.compile_count == 1


def test_joint_population_chunks_by_the_memory_budget(tmp_path, monkeypatch):
    made = []
    init = population.PopulationTrainer.__init__

    def spy(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(population.PopulationTrainer, "__init__", spy)
    probe = population.PopulationTrainer(
        CFG.train, np.zeros((2, 120, 4), np.float32), np.zeros((2, 120), np.int32), n_classes=3,
        x_test=np.zeros((2, 30, 4), np.float32), y_test=np.zeros((2, 30), np.int32),
    )  # fmt: skip
    per = probe.member_bytes(np.float32)
    cfg = CFG.replace(memory_budget_mb=2.5 * per / 2**20)  # room for 2 of the 6 members
    made.clear()
    recs, info = pipeline.retrain_seeds_population(_jobs(cfg, np.float32), cfg, tmp_path)
    assert len(made) == 1 and made[0].compile_count == 1
    assert [n for n, _ in made[0]._compiled.values()] == [2]  # 3 chunks of 2, one program
    assert info[0]["members"] == 6 and len(recs[1]) == 3


def test_resume_after_losing_one_seed_file_rewrites_it_identically(joint, tmp_path):
    out, recs, _, _ = joint
    part = tmp_path / "part"
    shutil.copytree(out, part)
    (part / "seed_1" / "retrain_sparse30.json").unlink()
    rundir.retrained_path(part, 1, "sparse30").unlink()
    kept = {p: p.stat().st_mtime_ns for p in part.glob("seed_*/retrain*")}
    again, info = pipeline.retrain_seeds_population(_jobs(), CFG, part, resume=True, digest=DIGEST)
    assert info[1]["members"] == 6  # the whole joint population trained again
    assert [[_strip(r) for r in again[s]] for s in SEEDS] == [[_strip(r) for r in recs[s]] for s in SEEDS]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # only the missing files written
    a = json.loads((out / "seed_1" / "retrain_sparse30.json").read_text())
    b = json.loads((part / "seed_1" / "retrain_sparse30.json").read_text())
    assert _strip(a) == _strip(b) and b["run_digest"] == DIGEST
    x, y = rundir.load_retrained(out, 1, "sparse30"), rundir.load_retrained(part, 1, "sparse30")
    for u, v in zip(x["kernels"] + x["biases"], y["kernels"] + y["biases"], strict=True):
        np.testing.assert_array_equal(u, v)
    # nothing missing: nothing trains
    _, info = pipeline.retrain_seeds_population(_jobs(), CFG, part, resume=True, digest=DIGEST)
    assert info[0] == info[1] == {"seconds": 0.0, "members": 0}


def test_seeds_with_other_split_shapes_form_their_own_population(tmp_path):
    """A seed whose split has another size (a data set of another length) cannot share the
    vmapped data axis: it trains as its own population, the others stay joint."""
    import dataclasses

    jobs = _jobs(dtype=np.float32)
    seed, ds, init, masks = jobs[1]
    short = dataclasses.replace(ds, x_train=ds.x_train[:-8], y_train=ds.y_train[:-8])
    jobs[1] = (seed, short, init, masks)
    recs, info = pipeline.retrain_seeds_population(jobs, CFG, tmp_path)
    assert info[0]["members"] == info[1]["members"] == 3
    assert [r["seed"] for r in recs[1]] == [1, 1, 1]
    with pytest.raises(ValueError, match="seeds repeat"):
        pipeline.retrain_seeds_population([jobs[0], jobs[0]], CFG, tmp_path)


def test_interrupted_population_resumes_from_its_checkpoints(joint, tmp_path, monkeypatch):
    """A run interrupted inside the joint population continues it from its orbax checkpoints on
    resume (only the epochs after the last checkpoint train) with the uninterrupted run's
    records; a fresh (not resumed) run discards them; the checkpoints go once it has finished."""
    out, recs, _, _ = joint
    calls = {"n": 0, "stop": None}
    epoch_fn = population.PopulationTrainer._epoch_fn

    def counting(self, *a, **k):
        calls["n"] += 1
        if calls["stop"] is not None and calls["n"] > calls["stop"]:
            raise RuntimeError("interrupted")
        return epoch_fn(self, *a, **k)

    monkeypatch.setattr(population.PopulationTrainer, "_epoch_fn", counting)
    monkeypatch.setattr(population, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every epoch
    pipeline.retrain_seeds_population(_jobs(), CFG, tmp_path / "whole", digest=DIGEST)
    total = calls["n"]
    assert total == CFG.train.epochs  # one program, no member reached the end early
    ckpt = tmp_path / "run" / rundir.POPULATION_CHECKPOINTS / "retrain"
    for resume in (True, False):
        calls.update(n=0, stop=5)
        with pytest.raises(RuntimeError, match="interrupted"):
            pipeline.retrain_seeds_population(_jobs(), CFG, tmp_path / "run", digest=DIGEST)
        assert len(list(ckpt.iterdir())) == 1  # population_<fingerprint>
        calls.update(n=0, stop=None)
        got, _ = pipeline.retrain_seeds_population(_jobs(), CFG, tmp_path / "run", resume=resume, digest=DIGEST)
        assert calls["n"] == (total - 5 if resume else total)
        assert not (tmp_path / "run" / rundir.POPULATION_CHECKPOINTS).exists()
        for seed in SEEDS:
            assert [_strip(r) for r in got[seed]] == [_strip(r) for r in recs[seed]]
            for name in ("dense", "sparse30", "sparse80"):
                a, b = rundir.load_retrained(out, seed, name), rundir.load_retrained(tmp_path / "run", seed, name)
                for u, v in zip(a["kernels"] + a["biases"], b["kernels"] + b["biases"], strict=True):
                    np.testing.assert_array_equal(u, v)
        shutil.rmtree(tmp_path / "run")
