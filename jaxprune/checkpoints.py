"""Persistence of a training run: everything `jaxprune.train.Trainer` keeps on the host or on disk
between epochs, so that the training loop itself has no file code.

* `WindowStore` -- host copies of every recorded window's accuracy, end step and (optionally)
  ``window_fn`` output; part of each checkpoint.
* `Checkpointer` -- orbax checkpoints of (train state, window store, history) at epoch ends, with
  a fallback to the previous checkpoint when the newest is unreadable. `Trainer` builds one from
  its ``checkpoint_dir``; any object with the same three methods (`CheckpointerLike`) can be
  passed instead (``Trainer(checkpointer=...)``).
* `PopulationCheckpointer` -- orbax checkpoints of a population chunk's state (members' params
  and optimizer state, frozen members' params, per-member bookkeeping) at epoch ends.
* `TrajectoryFile` -- the full trajectory ``(T, n_weights)`` float32 as a memory-mapped ``.npy``
  (``keep_trajectory``), continued in place when a run resumes.
* `save_params` / `load_params` (``.npz`` of a pytree's leaves) and `save_metrics` (strict JSON):
  the files ``jaxprune train`` and the pipeline write next to a run.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jax
import numpy as np

if TYPE_CHECKING:  # train imports this module; the names are only annotations here
    from jaxprune.train import RecordedWindow, TrainState

PyTree = Any

__all__ = [
    "WindowStore",
    "Checkpointer",
    "CheckpointerLike",
    "PopulationCheckpointer",
    "TrajectoryFile",
    "save_params",
    "load_params",
    "save_metrics",
]


class WindowStore:
    """Host copies of every window's accuracy, end step and (optionally) `window_fn` output.

    Preallocated for the whole run (`n_windows` slots; memory ``n_windows * (16 + output
    bytes)``), filled in order by `add`.

    Attributes:
      count: windows recorded so far.
      accuracy: ``(slots,)`` float64, accuracy at each window's end step.
      end_steps: ``(slots,)`` int64, each window's end step.
      outputs: pytree of ``(slots, ...)`` host arrays (the `window_fn` outputs), or None.
    """

    def __init__(self, n_windows: int, output_struct: PyTree | None):
        # At least one slot: orbax cannot save zero-size arrays (a run shorter than one window).
        n_windows = max(n_windows, 1)
        self.count = 0
        self.accuracy = np.zeros((n_windows,), np.float64)
        self.end_steps = np.zeros((n_windows,), np.int64)
        self.keep_outputs = output_struct is not None
        # pytree of (n_windows, ...) host arrays, one slot per window of the run
        self.outputs = None
        if output_struct is not None:
            self.outputs = jax.tree.map(lambda s: np.zeros((n_windows,) + tuple(s.shape), s.dtype), output_struct)

    def add(self, win: RecordedWindow) -> None:
        k = self.count
        self.accuracy[k] = win.accuracy
        self.end_steps[k] = win.end_step
        if self.keep_outputs:
            value = jax.device_get(win.value)
            jax.tree.map(lambda o, v: o.__setitem__(k, v), self.outputs, value)
        self.count += 1

    def outputs_so_far(self) -> PyTree | None:
        """Copies of the recorded outputs, ``(count, ...)`` per leaf, or None when not kept."""
        if self.outputs is None:
            return None
        return jax.tree.map(lambda o: o[: self.count].copy(), self.outputs)

    def as_tree(self, count: int | None = None) -> dict:
        """The first `count` (default: all recorded) windows as a pytree of host arrays."""
        n = max(self.count if count is None else count, 1)  # see __init__: never zero-size
        tree = {"accuracy": self.accuracy[:n], "end_steps": self.end_steps[:n]}
        if self.outputs is not None:
            tree["outputs"] = jax.tree.map(lambda o: o[:n], self.outputs)
        return tree

    def load(self, tree: dict, count: int) -> None:
        """Inverse of `as_tree`: the first `count` windows from a restored tree."""
        self.count = count
        self.accuracy[:count] = np.asarray(tree["accuracy"])[:count]
        self.end_steps[:count] = np.asarray(tree["end_steps"])[:count]
        if self.outputs is not None and "outputs" in tree:
            jax.tree.map(
                lambda o, v: o.__setitem__(slice(0, count), np.asarray(v)[:count]),
                self.outputs,
                tree["outputs"],
            )


def _checkpoint_manager(directory: Path):
    """An orbax ``CheckpointManager`` keeping the two newest checkpoints (creates `directory`)."""
    import orbax.checkpoint as ocp  # imported here: orbax is slow to import

    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def _restore_newest(manager, directory: Path, restore):
    """``restore(step)`` of the newest checkpoint that restores; a corrupt one is skipped with a
    warning (the previous one is tried), None when none restores."""
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            return restore(int(step))
        except Exception as err:  # noqa: BLE001 - tensorstore / JSON / shape errors of a damaged file
            warnings.warn(
                f"checkpoint {directory}/{step} is unreadable "
                f"({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
                "; falling back to the previous checkpoint",
                stacklevel=3,
            )
    return None


class CheckpointerLike(Protocol):
    """What `Trainer.fit` needs of its checkpointer (`Checkpointer` is the orbax one)."""

    def save(self, epoch: int, state: TrainState, store: WindowStore, history: dict) -> None: ...

    def restore_latest(
        self, state: TrainState, store: WindowStore
    ) -> tuple[TrainState, WindowStore, dict, int] | None: ...

    def close(self) -> None: ...


class Checkpointer:
    """orbax checkpoints of (train state, window store, history) at epoch ends.

    Keeps the two newest checkpoints under `directory` (one folder per epoch, the directory is
    created now). `close` releases the orbax manager; a later `save` / `restore_latest` opens it
    again, so one checkpointer can serve several `Trainer.fit` calls.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        # opened now: creates the directory, as a run directory's layout expects
        self._manager = self._open()

    def _open(self):
        return _checkpoint_manager(self.directory)

    @property
    def manager(self):
        """The orbax ``CheckpointManager`` (reopened after `close`)."""
        if self._manager is None:
            self._manager = self._open()
        return self._manager

    def save(self, epoch: int, state: TrainState, store: WindowStore, history: dict) -> None:
        """Write checkpoint `epoch` (epochs done) and wait until it is on disk."""
        import orbax.checkpoint as ocp

        self.manager.save(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state._asdict()),
                windows=ocp.args.StandardSave(store.as_tree()),
                history=ocp.args.JsonSave({**history, "windows_recorded": store.count}),
            ),
        )
        self.manager.wait_until_finished()

    def restore_latest(self, state: TrainState, store: WindowStore) -> tuple[TrainState, WindowStore, dict, int] | None:
        """The newest checkpoint that restores, as ``(state, store, history, epoch)``; a corrupt
        one is skipped with a warning (the previous one is used, or None: training restarts).

        `state` and `store` give the shapes and dtypes to restore into; `store` is filled.
        """
        return _restore_newest(self.manager, self.directory, lambda epoch: self._restore(epoch, state, store))

    def _restore(self, epoch: int, state: TrainState, store: WindowStore):
        import orbax.checkpoint as ocp

        # The history (JSON) says how many windows were recorded, which fixes the shapes to restore.
        history = dict(self.manager.restore(epoch, args=ocp.args.Composite(history=ocp.args.JsonRestore()))["history"])
        count = int(history.pop("windows_recorded"))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state._asdict())
        abstract_win = jax.tree.map(ocp.utils.to_shape_dtype_struct, store.as_tree(count))
        restored = self.manager.restore(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                windows=ocp.args.StandardRestore(abstract_win),
            ),
        )
        store.load(restored["windows"], count)
        s = restored["state"]
        new_state = state._replace(params=s["params"], opt_state=s["opt_state"], step=s["step"], ring=s["ring"])
        return new_state, store, history, int(epoch)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


class PopulationCheckpointer:
    """orbax checkpoints of one chunk of a population (`jaxprune.population.PopulationTrainer.fit`
    with a ``checkpoint_dir``): a pytree of arrays (the members' state and the host bookkeeping)
    and a JSON ``meta`` dict, at epoch ends. Keeps the two newest; an unreadable newest one
    falls back to the previous (with a warning), none readable gives None.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.manager = _checkpoint_manager(self.directory)

    def save(self, step: int, state: PyTree, meta: dict) -> None:
        """Write checkpoint `step` (increasing) and wait until it is on disk."""
        import orbax.checkpoint as ocp

        self.manager.save(
            int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        )
        self.manager.wait_until_finished()

    def restore_latest(self, like: Any) -> tuple[PyTree, dict] | None:
        """``(state, meta)`` of the newest readable checkpoint, or None. `like(meta)` returns a
        pytree of arrays with the shapes and dtypes to restore into (they depend on the meta)."""
        import orbax.checkpoint as ocp

        def restore(step):
            meta = dict(self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like(meta))
            state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
            return jax.tree.map(np.array, state["state"]), meta  # writable host copies

        return _restore_newest(self.manager, self.directory, restore)

    def close(self) -> None:
        self.manager.close()


class TrajectoryFile:
    """The full trajectory ``(n_steps, n_weights)`` float32 in a memory-mapped ``.npy`` file.

    `open` sizes the file for a run; `write` puts one epoch's rows at their step; `close` flushes.
    Only the pages being written sit in memory.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._array: np.memmap | None = None

    def open(self, n_steps: int, n_weights: int, steps_done: int = 0) -> None:
        """Open (create) the file for ``(n_steps, n_weights)``; on resume the steps already written
        (`steps_done`) are kept, also when the file was made for fewer epochs.

        Raises ValueError when the file on disk cannot hold a continuation (other width, or fewer
        rows than `steps_done`).
        """
        shape = (n_steps, n_weights)
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        old = np.load(path, mmap_mode="r") if steps_done and path.exists() else None
        if old is not None and old.shape == shape:
            del old
            self._array = np.load(path, mmap_mode="r+")
            return
        if old is not None and (old.shape[1] != shape[1] or old.shape[0] < steps_done):
            raise ValueError(f"{path} holds {old.shape}; cannot continue a {shape} trajectory in it")
        # written beside the target and renamed: a crash never leaves a half-initialised file
        tmp = path.with_name(path.name + ".tmp")
        new = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        if old is not None:
            new[:steps_done] = old[:steps_done]
            del old
        new.flush()
        os.replace(tmp, path)
        self._array = new

    def write(self, first_step: int, rows: np.ndarray) -> None:
        """Store `rows` ``(S, n_weights)`` as steps ``first_step .. first_step + S - 1`` (0-based)."""
        self._array[first_step : first_step + len(rows)] = rows

    def close(self) -> None:
        if self._array is not None:
            self._array.flush()
            self._array = None


def save_metrics(path: str | os.PathLike, metrics: dict) -> None:
    """Write a metrics dict as strict, pretty JSON (numpy values converted, NaN / inf -> null)."""
    from jaxprune.rundir import write_json

    write_json(path, metrics)


def save_params(path: str | os.PathLike, params: PyTree, init_params: PyTree | None = None) -> None:
    """Save params (and the initial params) as ``.npz``: leaves in pytree order, keys
    ``params_<i>`` and ``init_<i>``."""
    arrays = {f"params_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}
    if init_params is not None:
        arrays.update({f"init_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(init_params))})
    np.savez(path, **arrays)


def load_params(path: str | os.PathLike | Any, like: PyTree, prefix: str = "params") -> PyTree:
    """Inverse of `save_params`: rebuild a pytree shaped like `like` from a ``.npz`` path (or
    an already loaded mapping of its arrays); ``prefix="init"`` reads the initial params.

    Raises FileNotFoundError for a missing file, ValueError for a file of another net.
    """
    if isinstance(path, (str, os.PathLike)):
        from jaxprune.rundir import load_npz

        data = load_npz(path)  # reads every array now: a bad CRC is an error naming the file
        if data is None:
            raise FileNotFoundError(f"no such params file: {path}")
    else:
        data = path
    leaves, treedef = jax.tree.flatten(like)
    keys = [f"{prefix}_{i}" for i in range(len(leaves))]
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing[:3]}: saved from another net?")
    loaded = [np.asarray(data[k]) for k in keys]
    for k, a, b in zip(keys, loaded, leaves):
        if a.shape != np.shape(b):
            raise ValueError(f"{path}: {k} has shape {a.shape}, expected {np.shape(b)}")
    return jax.tree.unflatten(treedef, loaded)
