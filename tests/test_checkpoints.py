"""Training persistence (jaxprune.checkpoints): the Trainer gets it through an object, the orbax
checkpointer reopens after close, the trajectory file continues in place."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import checkpoints, train
from jaxprune.checkpoints import Checkpointer, TrajectoryFile, WindowStore
from jaxprune.train import TrainConfig, Trainer, TrainState

CFG = TrainConfig(hidden=(4,), batch_size=16, epochs=5, window=4, stride=3)


def _data(n=64, features=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n).astype(np.int32)
    x = (rng.normal(size=(3, features))[y] * 2 + rng.normal(size=(n, features))).astype(np.float32)
    return x, y


def _trainer(**kw):
    x, y = _data()
    return Trainer(CFG, x, y, n_classes=3, checkpoint_every_s=0.0, **kw)


class MemoryCheckpointer:
    """A checkpointer without files: host copies of the newest save (any `CheckpointerLike`)."""

    def __init__(self):
        self.saved = None
        self.epochs_saved = []
        self.closed = 0

    def save(self, epoch, state, store, history):
        self.epochs_saved.append(epoch)
        self.saved = (epoch, jax.device_get(state), copy.deepcopy(store.as_tree()), store.count, copy.deepcopy(history))

    def restore_latest(self, state, store):
        if self.saved is None:
            return None
        epoch, s, tree, count, history = self.saved
        store.load(tree, count)
        return TrainState(*s), store, copy.deepcopy(history), epoch

    def close(self):
        self.closed += 1


@pytest.mark.timeout(120)
def test_trainer_checkpoints_through_the_object_it_is_given():
    full = _trainer().fit()
    ckpt = MemoryCheckpointer()
    _trainer(checkpointer=ckpt).fit(epochs=2)
    assert ckpt.epochs_saved == [1, 2] and ckpt.closed == 1
    resumed = _trainer(checkpointer=ckpt).fit(resume=True)
    assert ckpt.epochs_saved == [1, 2, 3, 4, 5] and ckpt.closed == 2
    assert resumed.epochs == full.epochs == 5
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(full.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(resumed.window_end_steps, full.window_end_steps)
    np.testing.assert_array_equal(resumed.window_accuracy, full.window_accuracy)
    assert resumed.history["loss"] == full.history["loss"]


def test_checkpoint_dir_and_checkpointer_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_dir or checkpointer, not both"):
        _trainer(checkpoint_dir=tmp_path, checkpointer=MemoryCheckpointer())


def _state(step):
    # device arrays, as a Trainer's state holds
    params = {"w": jnp.full((3,), float(step), jnp.float32)}
    return TrainState(params, {"m": jnp.zeros((3,), jnp.float32)}, jnp.int32(step), jnp.zeros((4, 3), jnp.float32))


def test_checkpointer_reopens_after_close(tmp_path):
    ck = Checkpointer(tmp_path / "ck")
    assert (tmp_path / "ck").is_dir()  # created when built, as before the move
    store = WindowStore(3, None)
    ck.save(1, _state(1), store, {"loss": [0.5]})
    ck.close()
    ck.close()  # idempotent
    ck.save(2, _state(2), store, {"loss": [0.5, 0.25]})
    restored = ck.restore_latest(_state(0), WindowStore(3, None))
    ck.close()
    state, _, history, epoch = restored
    assert epoch == 2 and history == {"loss": [0.5, 0.25]} and int(state.step) == 2
    np.testing.assert_array_equal(state.params["w"], [2.0, 2.0, 2.0])


def test_trajectory_file_continues_in_place(tmp_path):
    path = tmp_path / "sub" / "traj.npy"
    rows = np.arange(24, dtype=np.float32).reshape(8, 3)
    f = TrajectoryFile(path)
    f.open(6, 3)
    f.write(0, rows[:3])
    f.write(3, rows[3:6])
    f.close()
    np.testing.assert_array_equal(np.load(path), rows[:6])
    # resumed after 4 steps into a longer run: the 4 steps are kept, the rest is new
    f.open(8, 3, steps_done=4)
    f.write(4, rows[4:8])
    f.close()
    np.testing.assert_array_equal(np.load(path), rows)
    assert not path.with_name("traj.npy.tmp").exists()
    with pytest.raises(ValueError, match=r"holds \(8, 3\); cannot continue a \(8, 5\)"):
        TrajectoryFile(path).open(8, 5, steps_done=4)


def test_old_homes_still_export_the_persistence_names():
    for name in ("save_metrics", "save_params", "load_params"):
        assert getattr(train, name) is getattr(checkpoints, name)
    assert train._WindowStore is WindowStore and train._Checkpointer is Checkpointer


def test_population_checkpointer_falls_back_past_a_damaged_newest_checkpoint(tmp_path):
    """The population checkpointer shares the Trainer's fallback: a damaged newest checkpoint
    is named in a warning and the previous one is restored; none readable gives None."""
    ck = checkpoints.PopulationCheckpointer(tmp_path / "pop")
    like = lambda meta: {"w": np.zeros((meta["members"], 3), np.float32)}
    for step in (1, 2):
        ck.save(step, {"w": np.full((2, 3), step, np.float32)}, {"members": 2, "epoch": step})
    state, meta = ck.restore_latest(like)
    assert meta["epoch"] == 2 and np.all(state["w"] == 2)
    for f in (tmp_path / "pop" / "2").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    with pytest.warns(UserWarning, match=r"pop/2 is unreadable.*falling back"):
        state, meta = ck.restore_latest(like)
    assert meta["epoch"] == 1 and np.all(state["w"] == 1)
    for f in (tmp_path / "pop" / "1").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert ck.restore_latest(like) is None
    ck.close()
