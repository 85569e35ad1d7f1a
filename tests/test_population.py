"""Population training: every member equals the single-net retraining path (same seed, mask,
init), masks and seeds are data (one compiled program), freezing at the threshold, chunking."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import data, pipeline, prune
from jaxprune.population import MEMBER_AXIS, PopulationTrainer, retrain_population
from jaxprune.train import TrainConfig, batch_order

# digits: 1,257 training images of 64 pixels; batch 64 -> 20 steps per epoch (last one partial).
# Cross-entropy learns within a few epochs, so thresholds are reached at different epochs.
TCFG = TrainConfig(hidden=(16, 12), loss="cross_entropy", learning_rate=0.2, batch_size=64, epochs=6)
SEEDS = (3, 11, 5)
SPARSITY = (0.0, 0.5, 0.9)

# Runs in a subprocess with 4 forced CPU devices (XLA_FLAGS must be set before JAX starts).
_FOUR_DEVICES = """
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jaxprune import data, prune
from jaxprune.population import MEMBER_AXIS, PopulationTrainer
from jaxprune.train import TrainConfig
assert len(jax.devices()) == 4
cfg = TrainConfig(hidden=(16, 12), loss="cross_entropy", learning_rate=0.2, batch_size=64, epochs=3)
ds = data.load_dataset("digits", seed=0)
seeds = [3, 11, 5, 7, 2, 9]
kw = dict(n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test)
one = PopulationTrainer(cfg, ds.x_train, ds.y_train, **kw)
four = PopulationTrainer(cfg, ds.x_train, ds.y_train, devices=jax.devices(), **kw)
inits = jax.tree.map(lambda a: a.astype(np.float64), one.seeded_params(seeds))
masks = [jax.tree.map(np.asarray, prune.random_mask(jax.tree.map(lambda a: a[0], inits), s, seed=i))
         for i, s in enumerate(np.linspace(0, 0.8, 6))]
a = one.fit(seeds, init_params=inits, masks=masks)
b = four.fit(seeds, init_params=inits, masks=masks)
out_sharding = jax.tree.leaves(next(iter(four._compiled.values()))[1].output_shardings)[0]
diff = max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
json.dump({"diff": diff, "chunk": b.chunk_size, "n_chunks": b.n_chunks,
           "spec": str(out_sharding.spec), "mesh": int(out_sharding.mesh.size),
           "acc_equal": bool(np.array_equal(a.history["train_accuracy"], b.history["train_accuracy"])),
           "moved": float(np.max(np.abs(jax.tree.leaves(b.params)[1] - jax.tree.leaves(inits)[1])))},
          open(sys.argv[1], "w"))
"""


def _f64(tree):
    # float64 params under x64 (conftest): both paths then train in float64
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


@pytest.fixture(scope="module")
def four_devices_proc(tmp_path_factory):
    """The 4-device run (`_FOUR_DEVICES`) in a subprocess, started before the other tests so that
    it runs while they do (XLA compiles on one core)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    )
    out = tmp_path_factory.mktemp("four") / "out.json"
    proc = subprocess.Popen([sys.executable, "-c", _FOUR_DEVICES, str(out)], env=env, cwd=root)
    yield proc, out
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def four_devices(four_devices_proc):
    proc, out = four_devices_proc
    assert proc.wait(timeout=280) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def setup(four_devices_proc):
    ds = data.load_dataset("digits", seed=0)
    cfg = pipeline.LegcnetConfig(train=TCFG, max_retrain_epochs=TCFG.epochs, target_accuracy=1.0)
    inits = [_f64(pipeline._init_params(ds, cfg, s)[1]) for s in SEEDS]
    masks = [prune.random_mask(inits[i], SPARSITY[i], seed=100 + i) for i in range(len(SEEDS))]
    masks = [jax.tree.map(np.asarray, m) for m in masks]
    trainer = PopulationTrainer(
        TCFG, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
    )
    free = trainer.fit(SEEDS, init_params=inits, masks=masks)  # no threshold: all epochs
    return ds, cfg, inits, masks, trainer, free


def _max_diff(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


@pytest.mark.timeout(240)
def test_members_equal_single_net_retrain_with_threshold(setup):
    """With a threshold that members reach at different epochs (or never), every member's
    params, stopping epoch and per-epoch history equal `pipeline.retrain` of that member alone."""
    ds, cfg, inits, masks, _, free = setup
    acc = free.history["train_accuracy"]  # (P, E), every member trained all epochs
    assert acc.shape == (3, TCFG.epochs) and not np.isnan(acc).any()
    target = float(acc[1, 2])  # member 1 reaches it at epoch <= 3
    hit = acc >= target
    expect = np.where(hit.any(1), hit.argmax(1) + 1, -1)
    assert len(set(expect.tolist())) >= 2, f"threshold does not separate members: {expect}"
    tcfg = cfg.replace(target_accuracy=target)
    records, res = retrain_population(ds, tcfg, inits, masks, SEEDS)
    np.testing.assert_array_equal(res.epochs_to_threshold, expect)
    np.testing.assert_array_equal(res.reached, expect > 0)
    for i, seed in enumerate(SEEDS):
        record, params, hist = pipeline.retrain(ds, tcfg, inits[i], masks[i], seed=seed)
        assert record["epochs"] == res.epochs[i] == (expect[i] if expect[i] > 0 else TCFG.epochs)
        assert record["epochs_to_threshold"] == (int(expect[i]) if expect[i] > 0 else None)
        # float64: vmapped and single matmuls may associate sums differently (last-bit level)
        assert _max_diff(params, res.member_params(i)) < 1e-12
        mine = res.member_history(i)
        assert mine["train_accuracy"] == hist["train_accuracy"]
        np.testing.assert_allclose(mine["loss"], hist["loss"], rtol=1e-6)  # float32 step losses
        assert set(records[i]) == set(record)
        for k in record:  # the same record as retrain's (test metrics, sparsity, FLOPs, epochs)
            if k != "seconds":
                assert records[i][k] == pytest.approx(record[k], abs=1e-9), k
        # a frozen member stops changing: same params as the run without a threshold only if it
        # never froze, else different (it trained fewer epochs)
        same = _max_diff(free.member_params(i), res.member_params(i)) < 1e-12
        assert same == (expect[i] in (-1, TCFG.epochs))


@pytest.mark.timeout(120)
def test_masked_weights_stay_exactly_zero(setup):
    _, _, inits, masks, _, free = setup
    for i in range(len(SEEDS)):
        p = free.member_params(i)
        n_pruned = sum(int((~m).sum()) for m in jax.tree.leaves(masks[i]))
        assert (n_pruned > 0) == (SPARSITY[i] > 0)
        changed = kept = 0
        for w, m, w0 in zip(jax.tree.leaves(p), jax.tree.leaves(masks[i]), jax.tree.leaves(inits[i])):
            assert np.all(w[~m] == 0.0)
            changed, kept = changed + int(np.sum(w[m] != w0[m])), kept + int(m.sum())
        # kept weights did train (not all: some digits pixels are always 0, and a unit whose
        # outgoing weights are all pruned gets no gradient)
        assert changed > (0.5 * kept if SPARSITY[i] == 0 else 0)


@pytest.mark.timeout(120)
def test_new_masks_and_seeds_do_not_recompile(setup):
    _, _, inits, _, trainer, free = setup
    assert trainer.compile_count == 1  # the fixture's run
    other = [jax.tree.map(np.asarray, prune.random_mask(inits[0], x, seed=9)) for x in (0.3, 0.7, 0.2)]
    b = trainer.fit([8, 9, 10], init_params=inits[0], masks=other, epochs=2)
    assert trainer.compile_count == 1 and trainer.trace_count == 1
    assert _max_diff(free.params, b.params) > 1e-3  # it did train other members
    trainer.fit([1], init_params=inits[0], epochs=1)  # a new member count is a new program
    assert trainer.compile_count == 2 and trainer.trace_count == 2


@pytest.mark.timeout(180)
def test_chunked_equals_unchunked_and_budget(setup):
    ds, _, inits, masks, trainer, free = setup
    per = trainer.member_bytes(jnp.float64)
    budget = trainer.shared_bytes() + 2.5 * per  # room for 2 members
    assert trainer.chunk_size(3, budget, jnp.float64) == 2
    tr = PopulationTrainer(TCFG, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test)
    res = tr.fit(SEEDS, init_params=inits, masks=masks, memory_budget_bytes=budget)
    assert (res.chunk_size, res.n_chunks) == (2, 2)
    assert tr.compile_count == 1  # the last chunk is padded to the same shape
    assert _max_diff(res.params, free.params) < 1e-12
    np.testing.assert_array_equal(res.history["train_accuracy"], free.history["train_accuracy"])
    with pytest.raises(ValueError, match="holds no member"):
        tr.chunk_size(3, trainer.shared_bytes() + per / 2, jnp.float64)
    # the estimate bounds what XLA allocates per extra member (3- vs 2-member programs), within 4x
    b3, b2 = trainer.compiled_bytes()[3], tr.compiled_bytes()[2]
    assert b3 - b2 <= per <= 4 * (b3 - b2), (b3 - b2, per)


@pytest.mark.timeout(120)
def test_bad_input_gets_clear_errors(setup):
    _, _, inits, masks, trainer, _ = setup
    with pytest.raises(ValueError, match="3 given for 2 members"):
        trainer.fit([1, 2], init_params=inits, epochs=1)
    with pytest.raises(ValueError, match="seeds"):
        trainer.fit([-1], epochs=1)
    with pytest.raises(ValueError, match="seeds"):
        trainer.fit([], epochs=1)
    with pytest.raises(ValueError, match="bool"):
        trainer.fit([1], masks=jax.tree.map(lambda m: m.astype(np.float32), masks[0]), epochs=1)


@pytest.mark.timeout(120)
def test_batch_order_of_traced_seed_equals_python_seed():
    seeds = jnp.asarray([0, 7, 2**31 - 1], jnp.int32)
    got = jax.jit(jax.vmap(lambda s: batch_order(s, jnp.int32(4), 300, 32)))(seeds)
    for i, s in enumerate([0, 7, 2**31 - 1]):
        idx, w = batch_order(s, 4, 300, 32)
        np.testing.assert_array_equal(got[0][i], idx)
        np.testing.assert_array_equal(got[1][i], w)
    assert not np.array_equal(got[0][0], got[0][1])  # seeds do change the order


@pytest.mark.timeout(300)
def test_member_axis_sharded_over_four_devices_equals_one_device(four_devices):
    r = four_devices
    # 6 members padded to 8 = 2 per device, one chunk; the member axis is split over 4 devices
    assert (r["chunk"], r["n_chunks"], r["mesh"]) == (8, 1, 4)
    assert MEMBER_AXIS in r["spec"]
    assert r["moved"] > 1e-3  # it trained
    assert r["diff"] < 1e-12 and r["acc_equal"], r


@pytest.mark.timeout(240)
def test_per_member_data_equals_each_member_on_its_own_split(setup):
    """Members with their own data split (vmapped with the members) equal the member trained
    alone on that split; members sharing a split equal the shared-data population."""
    ds, cfg, inits, masks, trainer, free = setup
    ds2 = data.load_dataset("digits", seed=1)
    assert not np.array_equal(ds.x_train, ds2.x_train)
    records, res = retrain_population([ds, ds2, ds], cfg, inits, masks, SEEDS)
    for i in (0, 2):  # on ds, as in the shared-data population
        assert _max_diff(res.member_params(i), free.member_params(i)) < 1e-12
        np.testing.assert_array_equal(res.history["train_accuracy"][i], free.history["train_accuracy"][i])
    record, params, hist = pipeline.retrain(ds2, cfg, inits[1], masks[1], seed=SEEDS[1])
    assert _max_diff(params, res.member_params(1)) < 1e-12
    assert res.member_history(1)["train_accuracy"] == hist["train_accuracy"]
    for k in record:  # evaluated on its own test split
        if k != "seconds":
            assert records[1][k] == pytest.approx(record[k], abs=1e-9), k
    # two distinct splits stored once each; the budget counts each member's data
    tr = PopulationTrainer(
        TCFG,
        np.stack([ds.x_train, ds2.x_train]),
        np.stack([ds.y_train, ds2.y_train]),
        n_classes=ds.n_classes,
        x_test=np.stack([ds.x_test, ds2.x_test]),
        y_test=np.stack([ds.y_test, ds2.y_test]),
        data_index=[0, 1, 0],
    )
    assert tr.shared_bytes() == 0
    assert tr.member_bytes() >= trainer.member_bytes() + ds.x_train.nbytes // 2 + ds.x_test.nbytes // 2
    chunked = tr.fit(SEEDS, init_params=inits, masks=masks, chunk_size=2)  # last chunk padded
    assert (chunked.chunk_size, chunked.n_chunks) == (2, 2) and tr.compile_count == 1
    assert _max_diff(chunked.params, res.params) < 1e-12
    with pytest.raises(ValueError, match="for 3 members"):
        tr.fit([1, 2], epochs=1)
    with pytest.raises(ValueError, match="data_index must lie"):
        PopulationTrainer(TCFG, tr.x_train, tr.y_train, n_classes=ds.n_classes, data_index=[0, 2])
    with pytest.raises(ValueError, match="2 datasets given for 3 members"):
        retrain_population([ds, ds2], cfg, inits, masks, SEEDS)


@pytest.mark.timeout(240)
def test_compaction_drops_frozen_members_with_the_same_results(setup, monkeypatch):
    """Frozen members leave the compiled population (smaller programs compile), and every
    member's params, epochs and history equal the uncompacted run (float64); without the
    per-epoch test pass the params are the same and no test history is kept."""
    import jaxprune.population as population

    ds, cfg, inits, masks, _, free = setup
    acc = free.history["train_accuracy"]
    target = float(acc[1, 2])
    hit = acc >= target
    assert hit.any(1).sum() >= 1 and len(set(np.where(hit.any(1), hit.argmax(1), -1).tolist())) >= 2
    kw = dict(init_params=inits, masks=masks, target_train_accuracy=target)
    fresh = lambda: PopulationTrainer(  # noqa: E731
        TCFG, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
    )
    plain = fresh()
    ref = plain.fit(SEEDS, compact=False, **kw)
    assert plain.compile_count == 1
    # digits nets are too small to pay for a compilation under the default rule
    assert plain.compaction_size(3, 1, TCFG.epochs) == 3
    monkeypatch.setattr(population, "COMPACT_MIN_FLOPS", 0.0)
    assert plain.compaction_size(3, 1, TCFG.epochs) == 1
    assert plain.compaction_size(4, 3, 5) == 3 and plain.compaction_size(5, 4, 5) == 5  # <= 3/4 active
    tr = fresh()
    got = tr.fit(SEEDS, **kw)
    member_counts = sorted(n for n, _ in tr._compiled.values())
    assert len(member_counts) >= 2 and member_counts[-1] == 3 and member_counts[0] < 3, member_counts
    np.testing.assert_array_equal(got.epochs, ref.epochs)
    np.testing.assert_array_equal(got.epochs_to_threshold, ref.epochs_to_threshold)
    for k in ref.history:
        np.testing.assert_allclose(got.history[k], ref.history[k], atol=1e-12)
    assert _max_diff(got.params, ref.params) < 1e-12
    quiet = fresh().fit(SEEDS, test_history=False, **kw)
    assert quiet.test_accuracy is None and "test_accuracy" not in quiet.history
    np.testing.assert_array_equal(quiet.epochs, ref.epochs)
    np.testing.assert_array_equal(quiet.history["train_accuracy"], ref.history["train_accuracy"])
    assert _max_diff(quiet.params, ref.params) < 1e-12


@pytest.mark.timeout(240)
def test_members_sharing_a_seed_train_as_groups_with_the_same_results(setup, monkeypatch):
    """Members that share a seed (and split) train as groups of one batch order (the batch is
    gathered once per group): every member equals the ungrouped population (float64), also with
    the members interleaved, groups cut by the chunk size and padded, frozen members compacted,
    and per-member data."""
    import jaxprune.population as population

    ds, cfg, inits, masks, _, free = setup
    seeds = [3, 11, 3, 5, 11, 3, 5, 11]  # groups of 3, 3 and 2, interleaved
    kw = dict(
        init_params=[inits[i % 3] for i in range(8)],
        masks=[masks[(i + 1) % 3] for i in range(8)],
        target_train_accuracy=float(free.history["train_accuracy"][1, 2]),
    )
    fresh = lambda: PopulationTrainer(  # noqa: E731
        TCFG, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
    )

    def same(a, b):
        np.testing.assert_array_equal(a.epochs, b.epochs)
        for k in b.history:
            np.testing.assert_allclose(a.history[k], b.history[k], atol=1e-12)
        assert _max_diff(a.params, b.params) < 1e-12

    with monkeypatch.context() as m:
        m.setattr(population, "GROUP_MAX_PADDING", 0.0)  # no groups: the plain vmapped population
        plain = fresh()
        ref = plain.fit(seeds, compact=False, **kw)
    assert ref.group_size == 1 and len(set(ref.epochs.tolist())) >= 2  # members froze at different epochs
    tr = fresh()
    got = tr.fit(seeds, compact=False, **kw)
    assert (got.group_size, got.chunk_size) == (3, 9)  # 3 groups of 3 slots, one padding slot
    same(got, ref)
    tr.fit(seeds[::-1], init_params=inits[0], masks=[masks[i % 3] for i in range(8)], epochs=1)
    assert tr.compile_count == 1  # other members, masks, order: the same grouped program
    # groups cut to the chunk size: pieces of 2 (2 + 1, 2 + 1, 2) in 5 chunks of one group
    cut = fresh().fit(seeds, compact=False, chunk_size=2, **kw)
    assert (cut.group_size, cut.chunk_size, cut.n_chunks) == (2, 2, 5)
    same(cut, ref)
    # compaction of groups: frozen members leave, groups shrink to the most active members
    monkeypatch.setattr(population, "COMPACT_MIN_FLOPS", 0.0)
    comp = fresh()
    same(comp.fit(seeds, **kw), ref)
    sizes = sorted(n for n, _ in comp._compiled.values())
    assert sizes[-1] == 9 and sizes[0] < 9, sizes
    # per-member data: a seed's members on two splits form two groups
    ds2 = data.load_dataset("digits", seed=1)
    split = [ds, ds, ds2, ds, ds2, ds, ds, ds2]
    with monkeypatch.context() as m:
        m.setattr(population, "GROUP_MAX_PADDING", 0.0)
        _, ref2 = retrain_population(split, cfg, kw["init_params"], kw["masks"], seeds, compact=False)
    _, got2 = retrain_population(split, cfg, kw["init_params"], kw["masks"], seeds)
    # groups (seed, split): (3, ds) 2, (11, ds) 1, (3, ds2) 1, (5, ds) 2, (11, ds2) 2 -> 5 x 2 slots
    assert (ref2.group_size, got2.group_size, got2.chunk_size) == (1, 2, 10)
    same(got2, ref2)


@pytest.mark.timeout(240)
def test_interrupted_fit_continues_from_its_checkpoints_with_identical_results(setup, tmp_path, monkeypatch):
    """A fit interrupted in its last chunk continues from its orbax checkpoints (the finished
    chunk is restored, the other one from its last epoch, groups and compaction included):
    results bit-identical to an uninterrupted fit, only the missing epochs run, the folder is
    removed at the end; another population never reads the checkpoints."""
    import jaxprune.population as population

    ds, cfg, inits, masks, _, free = setup
    monkeypatch.setattr(population, "COMPACT_MIN_FLOPS", 0.0)
    seeds = [3, 11, 3, 5, 11, 3, 5, 11]
    kw = dict(
        init_params=[inits[i % 3] for i in range(8)],
        masks=[masks[(i + 1) % 3] for i in range(8)],
        target_train_accuracy=float(free.history["train_accuracy"][1, 2]),
        chunk_size=6,  # 2 groups of 3 slots a chunk: 2 chunks
    )
    calls = {"n": 0, "stop": None}

    def counting(self, *a, **k):
        calls["n"] += 1
        if calls["stop"] is not None and calls["n"] > calls["stop"]:
            raise RuntimeError("interrupted")
        return epoch_fn(self, *a, **k)

    epoch_fn = PopulationTrainer._epoch_fn
    monkeypatch.setattr(PopulationTrainer, "_epoch_fn", counting)
    fresh = lambda: PopulationTrainer(  # noqa: E731
        TCFG, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
    )
    ref = fresh().fit(seeds, **kw)
    total = calls["n"]
    assert ref.n_chunks == 2 and ref.group_size == 3 and total > 6
    calls.update(n=0, stop=total - 2)
    with pytest.raises(RuntimeError, match="interrupted"):
        fresh().fit(seeds, checkpoint_dir=tmp_path, checkpoint_every_s=0.0, **kw)
    (folder,) = tmp_path.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["chunk_0", "chunk_1"]
    # another population (other masks) trains from scratch, next to the first one's folder
    other = dict(kw, masks=[masks[i % 3] for i in range(8)])
    calls.update(n=0, stop=None)
    mine = fresh().fit(seeds, checkpoint_dir=tmp_path, checkpoint_every_s=0.0, **other)
    n_other = calls["n"]
    calls.update(n=0)
    assert _max_diff(mine.params, fresh().fit(seeds, **other).params) == 0.0 and calls["n"] == n_other
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # its own folder removed
    calls.update(n=0)
    got = fresh().fit(seeds, checkpoint_dir=tmp_path, checkpoint_every_s=0.0, **kw)
    assert calls["n"] == 2  # only the epochs after the last checkpoint
    np.testing.assert_array_equal(got.epochs, ref.epochs)
    np.testing.assert_array_equal(got.epochs_to_threshold, ref.epochs_to_threshold)
    for k in ref.history:
        np.testing.assert_array_equal(got.history[k], ref.history[k])
    assert _max_diff(got.params, ref.params) == 0.0
    assert not any(tmp_path.iterdir())
