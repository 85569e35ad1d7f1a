"""Training with trajectory recording: a jitted epoch (``lax.scan`` over batches) that records every
kernel weight after every optimizer step into a device ring buffer and hands out each window of
the trajectory as soon as its epoch is done.

Terms (steps are counted from 1; step ``s`` is the ``s``-th optimizer update):

* trajectory ``w[0..T-1]``: ``w[i]`` are all kernel weights (flat axis of `jaxprune.weights`) after
  step ``i + 1``; biases are not recorded.
* window ``k`` covers ``w[stride*k : stride*k + window]``; its end step is ``stride*k + window``
  (for the paper's 50 / 45 that is ``int(50 * 0.9 * (k + 1) + 5)``). Windows are complete ones
  only: ``n_windows = (T - window) // stride + 1`` (`jaxprune.windows`).
* risk ``k`` = ``1 - accuracy`` at window ``k``'s end step: accuracy of the whole training split
  under the weights after that step (``risk="train"``, default), or of that step's mini-batch in
  its own forward pass (``risk="batch"``: free, noisier).

Where the window function runs: the jitted epoch only records. Its ``lax.scan`` over steps
writes each completed window, raw and ordered oldest first, into the epoch's output slots; the
`Trainer` then applies its `window_fn` (e.g. the Lyapunov kernel, `jaxprune.pipeline.le_window_fn`)
to each of them outside the compiled epoch, from the host, in the order the windows completed.
XLA:CPU runs code inside a scan's conditional (and a ``lax.map``'s loop body) markedly slower than
top-level code: the Lyapunov kernel inside the epoch cost 2.75x the standalone kernel on the same
windows; outside it runs the standalone kernel's lane blocks (docs/scaling.md, "In-epoch LE: where
the 2.75x went").

Memory: the device holds the params, the optimizer state, the ring buffer ``(window, n_weights)``
float32 and, per epoch, the raw windows the epoch completed, ``(slots, window, n_weights)``
float32 with ``slots = max_windows_per_epoch(steps_per_epoch, stride)`` (one slot for mnist5k's 28
steps and stride 45), plus one window's `window_fn` temporaries at a time. The whole history never
sits in memory unless the caller asks for it (`keep_trajectory`, a memory-mapped ``.npy`` file on
the host).

Reproducibility: `TrainConfig.seed` fixes the initial weights (``nnx.Rngs(seed)``) and the
batch order of every epoch (``fold_in(PRNGKey(seed), epoch)``); a run resumed from an epoch-end
checkpoint continues bit for bit as the uninterrupted run.

The window arithmetic lives in `jaxprune.windows`, the persistence (orbax checkpoints, the host
window store, the trajectory file, params / metrics files) in `jaxprune.checkpoints`: `Trainer`
is handed a checkpointer and has no file code of its own. The old names (``window_count``,
``save_params``, ``load_params``, ``save_metrics``, ...) are still importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike

from jaxprune import models
from jaxprune.checkpoints import (  # noqa: F401 - re-exported: their home was this module
    Checkpointer,
    CheckpointerLike,
    TrajectoryFile,
    WindowStore,
    load_params,
    save_metrics,
    save_params,
)
from jaxprune.weights import flatten_kernels, kernel_layout
from jaxprune.windows import (  # noqa: F401 - re-exported: their home was this module
    max_windows_per_epoch,
    n_windows,
    steps_per_epoch,
    window_end_steps,
)

if TYPE_CHECKING:
    from jaxprune.data import Dataset

PyTree = Any
RISK_KINDS = ("train", "batch")


# Optimizers that need more than gradients (a value function) are not usable here.
_NOT_PLAIN_OPTIMIZERS = ("lbfgs", "polyak_sgd")


@functools.cache  # a fact of the installed optax; every TrainConfig checks against it
def optimizer_names() -> tuple[str, ...]:
    """The optax optimizers ``optax.<name>(learning_rate)`` usable by name: the functions of
    optax's optimizer aliases (sgd, adam, ...), not any optax attribute (``apply_updates``)."""
    names = []
    for name in dir(optax):
        obj = getattr(optax, name, None)
        if (
            callable(obj)
            and not name.startswith("_")
            and name not in _NOT_PLAIN_OPTIMIZERS
            and getattr(obj, "__module__", "") == "optax._src.alias"
        ):
            names.append(name)
    return tuple(sorted(names, key=lambda n: (n not in ("sgd", "adam"), n)))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes a training run (net, optimizer, batching, recording, seed).

    The defaults are the original LEGCNet MNIST setup: 784-50-30-10 (``hidden=(50, 30)``, input and
    output sizes come from the data), sigmoid hidden units, MSE on one-hot targets, plain SGD with
    learning rate 0.5, batch 128, 50 epochs, PyTorch's default init; windows of 50 steps with
    stride 45 (10 % overlap).
    """

    hidden: tuple[int, ...] = (50, 30)
    activation: str = "sigmoid"
    loss: str = "mse"
    init: str = "torch"
    optimizer: str = "sgd"
    learning_rate: float = 0.5
    batch_size: int = 128
    epochs: int = 50
    seed: int = 0
    window: int = 50
    stride: int = 45
    risk: str = "train"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.activation not in models.ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(models.ACTIVATIONS)}")
        if self.loss not in models.LOSSES:
            raise ValueError(f"loss must be one of {models.LOSSES}, got {self.loss!r}")
        if self.risk not in RISK_KINDS:
            raise ValueError(f"risk must be one of {RISK_KINDS}, got {self.risk!r}")
        for name in ("batch_size", "epochs", "window", "stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window < 2:
            raise ValueError(f"window must be >= 2 steps, got {self.window}")
        if not (math.isfinite(float(self.learning_rate)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.optimizer not in optimizer_names():
            raise ValueError(
                f"optax has no optimizer named {self.optimizer!r}: use one such "
                f"as {', '.join(optimizer_names()[:8])}, ..."
            )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Named configs. The original's 50 full-MNIST epochs are ~11,500 steps; mnist5k has 28 steps per
# epoch, so its "original" run is sized by steps (400 epochs = 11,200 steps): see docs/method.md.
CONFIGS: dict[str, TrainConfig] = {
    "original_mnist": TrainConfig(),
    "original_mnist5k": TrainConfig(epochs=400),
    "quick": TrainConfig(epochs=60),
}


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax optimizer named by ``config.optimizer`` (one of `optimizer_names`)."""
    if config.optimizer not in optimizer_names():
        raise ValueError(f"optax has no optimizer named {config.optimizer!r}")
    return getattr(optax, config.optimizer)(config.learning_rate)


# Weights beyond this magnitude mean the run blew up (an lr of 1e30 gives ~1e29 after one step)
# even while they are still finite.
DIVERGED_ABS = 1e12


class TrainingDiverged(ValueError):
    """Training produced non-finite (or absurdly large) weights or loss."""


def diverged(params: PyTree, loss: float) -> str | None:
    """Why a state has diverged (NaN / inf loss or weights, |w| > `DIVERGED_ABS`), or None."""
    worst = max((float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(params) if jnp.size(leaf)), default=0.0)
    return diverged_reason(loss, worst)


def diverged_reason(loss: float, worst: float) -> str | None:
    """`diverged` from the loss and the largest ``|w|`` of the params (computed elsewhere, e.g.
    inside a compiled epoch)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    if not math.isfinite(worst):
        return "weights are NaN or inf"
    if worst > DIVERGED_ABS:
        return f"a weight reached |w| = {worst:.3g} (> {DIVERGED_ABS:.0e})"
    return None


# Old name of `jaxprune.windows.n_windows` (same function; its arguments are (n_steps, window,
# stride) as here before).
window_count = n_windows

# Private names the persistence classes had here (jaxprune.checkpoints).
_WindowStore = WindowStore
_Checkpointer = Checkpointer


class TrainState(NamedTuple):
    """Device state carried across steps and epochs (all arrays; a pytree).

    params: the model params (nested dict). opt_state: optax state. step: int32 scalar, steps done.
    ring: ``(window, n_weights)`` float32, ``ring[i % window]`` holds ``w[i]``.
    """

    params: PyTree
    opt_state: PyTree
    step: jax.Array
    ring: jax.Array


class EpochOutput(NamedTuple):
    """What one epoch hands out (device arrays; ``W = windows_per_epoch``, ``S`` steps per epoch).

    windows: `window_fn` outputs stacked ``(W, ...)``; only the first `n_windows` are real.
    n_windows: int32 scalar. end_steps: ``(W,)`` int32. accuracy: ``(W,)`` float32 accuracy at each
    window's end step (see `TrainConfig.risk`). loss, batch_accuracy: ``(S,)`` per step.
    trajectory: ``(S, n_weights)`` float32 when the epoch function records it, else ``None``.
    """

    windows: PyTree
    n_windows: jax.Array
    end_steps: jax.Array
    accuracy: jax.Array
    loss: jax.Array
    batch_accuracy: jax.Array
    trajectory: jax.Array | None


def accuracy(apply: Callable, params: PyTree, x: ArrayLike, y: ArrayLike) -> jax.Array:
    """Fraction of ``y`` (``(n,)`` int) predicted right from ``x`` (``(n, features)``)."""
    return jnp.mean(models.predict_labels(apply(params, x)) == y)


def batch_order(seed: int, epoch: ArrayLike, n_train: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """The example order of one epoch (``S = steps_per_epoch(n_train, batch_size)``).

    Returns:
      ``(idx, weight)``: example indices ``(S, batch_size)`` (int) and float32 weights
      ``(S, batch_size)``, 0 for the padding that fills the last, partial batch.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
    perm = jax.random.permutation(key, n_train)
    n_steps = steps_per_epoch(n_train, batch_size)
    pad = n_steps * batch_size - n_train
    idx = jnp.concatenate([perm, jnp.zeros((pad,), perm.dtype)]).reshape(n_steps, batch_size)
    weight = jnp.concatenate([jnp.ones((n_train,)), jnp.zeros((pad,))]).reshape(idx.shape)
    return idx, weight.astype(jnp.float32)


def make_step(apply: Callable, tx: optax.GradientTransformation, loss_name: str) -> Callable:
    """One optimizer step ``(params, opt_state, xb, yb, wb) -> (params, opt_state, loss, acc)``.

    The loss is the weighted mean of per-example losses (weights 0 mark padding of the last,
    partial batch), so a partial batch trains exactly like PyTorch's smaller last batch.
    """

    def loss_fn(params, xb, yb, wb):
        logits = apply(params, xb)
        per_example = models.per_example_loss(logits, yb, loss_name)
        loss = jnp.sum(per_example * wb) / jnp.sum(wb)
        correct = (models.predict_labels(logits) == yb).astype(jnp.float32)
        return loss, jnp.sum(correct * wb) / jnp.sum(wb)

    def step(params, opt_state, xb, yb, wb):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xb, yb, wb)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, loss, acc

    return step


def make_epoch_fn(
    apply: Callable,
    tx: optax.GradientTransformation,
    config: TrainConfig,
    n_train: int,
    *,
    window_fn: Callable[[jax.Array], PyTree] | None = None,
    record_trajectory: bool = False,
) -> Callable:
    """The jitted epoch ``(state, x_train, y_train, epoch) -> (state, EpochOutput)``.

    Each step records ``flatten_kernels(params)`` into the ring buffer; when a window completes,
    the window (ordered oldest first, ``(window, n_weights)``) goes through `window_fn` (identity
    by default) into the epoch's output slots, with the accuracy at that step.

    `Trainer` builds it without a `window_fn` (the slots hold the raw windows) and applies its
    own window function outside the compiled epoch; a `window_fn` given here runs inside the
    scan's conditional, which XLA:CPU runs markedly slower than top-level code.
    """
    step_fn = make_step(apply, tx, config.loss)
    window, stride = config.window, config.stride
    n_steps = steps_per_epoch(n_train, config.batch_size)
    slots = max_windows_per_epoch(n_steps, stride)
    window_fn = window_fn if window_fn is not None else (lambda w: w)

    def epoch_fn(state: TrainState, x_train, y_train, epoch):
        idx, wts = batch_order(config.seed, epoch, n_train, config.batch_size)
        out_struct = jax.eval_shape(window_fn, state.ring)
        out0 = jax.tree.map(lambda s: jnp.zeros((slots,) + s.shape, s.dtype), out_struct)
        acc0 = jnp.zeros((slots,), jnp.float32)
        end0 = jnp.zeros((slots,), jnp.int32)

        def body(carry, batch):
            state, outs, accs, ends, n_out = carry
            bidx, bw = batch
            params, opt_state, loss, batch_acc = step_fn(
                state.params, state.opt_state, x_train[bidx], y_train[bidx], bw
            )
            w = flatten_kernels(params).astype(jnp.float32)
            ring = state.ring.at[state.step % window].set(w)
            n_rec = state.step + 1
            complete = (n_rec >= window) & ((n_rec - window) % stride == 0)

            def emit(operands):
                outs, accs, ends, n_out = operands
                ordered = jnp.roll(ring, -(n_rec % window), axis=0)
                out = window_fn(ordered)
                if config.risk == "train":
                    acc = accuracy(apply, params, x_train, y_train)
                else:
                    acc = batch_acc
                outs = jax.tree.map(lambda o, v: o.at[n_out].set(v), outs, out)
                accs = accs.at[n_out].set(acc.astype(jnp.float32))
                ends = ends.at[n_out].set(n_rec.astype(jnp.int32))
                return outs, accs, ends, n_out + 1

            outs, accs, ends, n_out = jax.lax.cond(complete, emit, lambda o: o, (outs, accs, ends, n_out))
            new_state = TrainState(params, opt_state, n_rec, ring)
            per_step = (loss, batch_acc, w if record_trajectory else None)
            return (new_state, outs, accs, ends, n_out), per_step

        init = (state, out0, acc0, end0, jnp.int32(0))
        (state, outs, accs, ends, n_out), (losses, batch_accs, traj) = jax.lax.scan(body, init, (idx, wts))
        return state, EpochOutput(outs, n_out, ends, accs, losses, batch_accs, traj)

    # Donating the state lets XLA update params and ring buffer in place on GPU/TPU; the CPU
    # backend cannot use donated buffers and would only warn.
    donate = () if jax.default_backend() == "cpu" else (0,)
    return jax.jit(epoch_fn, donate_argnums=donate)


@dataclasses.dataclass
class RecordedWindow:
    """One completed window as the stream yields it.

    index: window number k. end_step: its end step (1-based). accuracy: accuracy at that step
    (risk = 1 - accuracy). value: ``window_fn`` of the window; by default the weights
    ``(window, n_weights)`` float32 on device, oldest step first.
    """

    index: int
    end_step: int
    accuracy: float
    value: Any

    @property
    def risk(self) -> float:
        return 1.0 - self.accuracy


@dataclasses.dataclass
class TrainResult:
    """What `Trainer.fit` returns (host values)."""

    params: PyTree
    init_params: PyTree
    config: TrainConfig
    epochs: int
    steps: int
    train_accuracy: float
    test_accuracy: float | None
    history: dict
    window_accuracy: np.ndarray  # (n_windows,) accuracy at each window's end step
    window_end_steps: np.ndarray  # (n_windows,)
    window_outputs: Any  # stacked window_fn outputs (n_windows, ...) when kept, else None
    epoch_seconds: list
    n_weights: int

    @property
    def risk(self) -> np.ndarray:
        """Misclassification risk ``1 - accuracy`` at each window's end step."""
        return 1.0 - self.window_accuracy

    def metrics(self) -> dict[str, Any]:
        return {
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "epochs": self.epochs,
            "steps": self.steps,
            "n_weights": self.n_weights,
            "n_windows": int(len(self.window_end_steps)),
            "seconds_per_epoch": float(np.mean(self.epoch_seconds)) if self.epoch_seconds else None,
            "history": self.history,
            "config": self.config.to_dict(),
        }


class Trainer:
    """Trains one MLP on a data set, recording the weight trajectory window by window.

    Args:
      config: the `TrainConfig`.
      x_train, y_train: ``(n, features)`` float32 and ``(n,)`` int labels; x_test, y_test optional.
      n_classes: number of classes; 2 with ``binary_output=True`` gives one sigmoid output unit.
      tx: an optax optimizer; default `make_optimizer(config)`. Wrap it with
        `jaxprune.prune.masked` for sparse training.
      init_params: start from these params instead of the seeded init (sparse retraining).
      window_fn: applied to every completed window ``(window, n_weights)`` float32 (a device
        array; e.g. a Lyapunov kernel) outside the compiled epoch, after the epoch that completed
        it (`completed_windows`); its outputs are kept for the whole run when
        `keep_window_outputs` (the default when window_fn is set).
      keep_trajectory: path of a ``.npy`` file to memory-map the full trajectory
        ``(T, n_weights)`` float32 into (optional).
      checkpoint_dir: orbax checkpoints of the full state at epoch ends: each `fit` builds a
        `jaxprune.checkpoints.Checkpointer` on this directory.
      checkpointer: instead of `checkpoint_dir`, the object that saves and restores the state
        (`jaxprune.checkpoints.CheckpointerLike`: ``save``, ``restore_latest``, ``close``);
        `fit` closes it when it returns. Not both.
      checkpoint_every_s: save at the first epoch end at least this many seconds after the last
        save, and always at the last epoch (0: every epoch). A save costs ~0.1-0.3 s, more than a
        small net's epoch; a resumed run is identical whichever epoch it resumes from.
      epoch_fn_cache: a dict shared by trainers whose optimizers differ only in data their state
        carries (`jaxprune.prune.masked` masks): trainers of the same widths, config and training
        size then reuse one compiled epoch instead of compiling their own (the retraining of a
        seed's masks compiles once). Only for trainers without a `window_fn`.
    """

    def __init__(
        self,
        config: TrainConfig,
        x_train: np.ndarray,
        y_train: np.ndarray,
        *,
        n_classes: int,
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        binary_output: bool = False,
        tx: optax.GradientTransformation | None = None,
        init_params: PyTree | None = None,
        window_fn: Callable[[jax.Array], PyTree] | None = None,
        keep_window_outputs: bool | None = None,
        keep_trajectory: str | os.PathLike | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every_s: float = 30.0,
        epoch_fn_cache: dict | None = None,
        checkpointer: CheckpointerLike | None = None,
    ):
        x_train = np.asarray(x_train)
        y_train = np.asarray(y_train)
        if x_train.ndim != 2 or y_train.shape != (x_train.shape[0],):
            raise ValueError(f"x_train must be (n, features) and y_train (n,); got {x_train.shape}, {y_train.shape}")
        if x_train.shape[0] < 1:
            raise ValueError("x_train is empty")
        if not np.issubdtype(y_train.dtype, np.integer):
            raise TypeError(f"y_train must hold integer class labels, got {y_train.dtype}")
        self.config = config
        n_out = 1 if (binary_output and n_classes == 2) else n_classes
        self.widths = (x_train.shape[1], *config.hidden, n_out)
        self.apply, seeded = models.init_mlp(
            self.widths, activation=config.activation, init=config.init, seed=config.seed
        )
        self.init_params = seeded if init_params is None else init_params
        self.layout = kernel_layout(self.init_params)
        self.tx = tx if tx is not None else make_optimizer(config)
        self.x_train = jnp.asarray(x_train, jnp.float32)
        self.y_train = jnp.asarray(y_train, jnp.int32)
        self.x_test = None if x_test is None else jnp.asarray(x_test, jnp.float32)
        self.y_test = None if y_test is None else jnp.asarray(y_test, jnp.int32)
        self.n_train = int(x_train.shape[0])
        self.steps_per_epoch = steps_per_epoch(self.n_train, config.batch_size)
        self.window_fn = window_fn
        self.keep_window_outputs = (window_fn is not None) if keep_window_outputs is None else keep_window_outputs
        self.keep_trajectory = None if keep_trajectory is None else Path(keep_trajectory)
        if checkpointer is not None and checkpoint_dir is not None:
            raise ValueError("give checkpoint_dir or checkpointer, not both")
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir).absolute()
        self.checkpointer = checkpointer
        self.checkpoint_every_s = float(checkpoint_every_s)
        record = self.keep_trajectory is not None
        key = None
        if epoch_fn_cache is not None:
            if window_fn is not None:
                raise ValueError("epoch_fn_cache serves trainers without a window_fn")
            key = (self.widths, json.dumps(config.to_dict(), sort_keys=True), self.n_train, record)
        if key is not None and key in epoch_fn_cache:
            # same architecture, config and data size: the compiled epoch is reused; the
            # optimizers differ only in data their state carries (e.g. prune.masked's mask)
            self._epoch_fn, self._accuracy = epoch_fn_cache[key]
        else:
            # no window_fn inside: the epoch records raw windows, `completed_windows` applies it
            self._epoch_fn = make_epoch_fn(self.apply, self.tx, config, self.n_train, record_trajectory=record)
            apply = self.apply
            self._accuracy = jax.jit(lambda p, x, y: accuracy(apply, p, x, y))
            if key is not None:
                epoch_fn_cache[key] = (self._epoch_fn, self._accuracy)

    # ----------------------------------------------------------------- state
    @property
    def n_weights(self) -> int:
        return self.layout.n_weights

    def total_windows(self, epochs: int | None = None) -> int:
        epochs = self.config.epochs if epochs is None else epochs
        return window_count(epochs * self.steps_per_epoch, self.config.window, self.config.stride)

    def window_output_struct(self) -> PyTree:
        """Shape and dtype of `window_fn`'s output for one window (a ShapeDtypeStruct pytree)."""
        fn = self.window_fn if self.window_fn is not None else (lambda w: w)
        ring = jax.ShapeDtypeStruct((self.config.window, self.n_weights), jnp.float32)
        return jax.eval_shape(fn, ring)

    def initial_state(self) -> TrainState:
        # A copy: the epoch function may donate the state, and init_params must survive it.
        params = jax.tree.map(lambda a: jnp.array(a, copy=True), self.init_params)
        ring = jnp.zeros((self.config.window, self.n_weights), jnp.float32)
        return TrainState(params, self.tx.init(params), jnp.int32(0), ring)

    def evaluate(self, params: PyTree, split: str = "train") -> float:
        """Accuracy of `params` on the ``train`` or ``test`` split."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        if x is None:
            raise ValueError(f"no {split} split was given")
        return float(self._accuracy(params, x, y))

    # ------------------------------------------------------------ streaming
    def run_epoch(self, state: TrainState, epoch: int) -> tuple[TrainState, EpochOutput]:
        """One jitted epoch (the input state is donated: do not reuse it)."""
        return self._epoch_fn(state, self.x_train, self.y_train, jnp.int32(epoch))

    @staticmethod
    def windows_of(out: EpochOutput, first_index: int) -> list[RecordedWindow]:
        """The completed windows of one epoch, numbered from `first_index`, as the epoch output
        holds them (the `Trainer`'s epoch: the raw windows; see `completed_windows`)."""
        n = int(out.n_windows)
        ends = np.asarray(out.end_steps)[:n]
        accs = np.asarray(out.accuracy)[:n]
        return [
            RecordedWindow(
                first_index + i,
                int(ends[i]),
                float(accs[i]),
                jax.tree.map(lambda a, i=i: a[i], out.windows),
            )
            for i in range(n)
        ]

    def completed_windows(self, out: EpochOutput, first_index: int) -> list[RecordedWindow]:
        """The completed windows of one epoch of this trainer, numbered from `first_index`, each
        ``value`` = `window_fn` of the raw window (the raw ``(window, n_weights)`` float32 window
        without one).

        `window_fn` runs here, outside the compiled epoch, once per window in the order the
        windows completed: called on a device array, it may jit itself or dispatch jitted
        kernels of its own (`jaxprune.lyapunov.window_le` runs the standalone kernel's lane
        blocks there, with one small host sync per window).
        """
        wins = self.windows_of(out, first_index)
        if self.window_fn is not None:
            for win in wins:
                win.value = self.window_fn(win.value)
        return wins

    def stream(self, *, epochs: int | None = None) -> Iterator[RecordedWindow]:
        """Train from the seeded init and yield every window as soon as its epoch ends.

        Only the ring buffer and one epoch's windows live on device at a time.
        """
        state = self.initial_state()
        k = 0
        for epoch in range(self.config.epochs if epochs is None else epochs):
            state, out = self.run_epoch(state, epoch)
            yield from self.completed_windows(out, k)
            k += int(out.n_windows)

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        *,
        epochs: int | None = None,
        resume: bool = False,
        target_train_accuracy: float | None = None,
        on_window: Callable[[RecordedWindow], None] | None = None,
        progress: bool = False,
        progress_desc: str = "train",
    ) -> TrainResult:
        """Train for `epochs` (default ``config.epochs``), checkpointing at every epoch end.

        Args:
          resume: continue from the latest checkpoint in `checkpoint_dir` (identical result to
            an uninterrupted run).
          target_train_accuracy: stop after the first epoch whose end-of-epoch training accuracy
            reaches it (sparse retraining to a threshold); `history` says where it stopped.
          on_window: called with each `RecordedWindow` in order (streaming consumers).
        """
        epochs = self.config.epochs if epochs is None else int(epochs)
        n_windows = self.total_windows(epochs)
        store = WindowStore(n_windows, self.window_output_struct() if self.keep_window_outputs else None)
        history = {"loss": [], "train_accuracy": [], "epoch_seconds": []}
        state = self.initial_state()
        start_epoch = 0
        # Several processes (jaxprune.distributed): no orbax checkpoints. orbax refuses the
        # process-local arrays of this replicated training, and with per-process directories and
        # options its saves still synchronised the processes and deadlocked now and then; a
        # resumed multi-process run restarts an unfinished training from its first epoch.
        multi = jax.process_count() > 1
        ckpt = None if multi else self._open_checkpointer()
        if resume:
            if ckpt is None and not multi:
                raise ValueError("resume=True needs a checkpoint_dir")
            restored = ckpt.restore_latest(state, store) if ckpt is not None else None
            if restored is not None:
                state, store, history, start_epoch = restored
        # a checkpoint saved when the target was reached ends the run: resuming must not train on
        reached = (
            target_train_accuracy is not None
            and bool(history["train_accuracy"])
            and history["train_accuracy"][-1] >= target_train_accuracy
        )
        last_epoch = start_epoch if reached else epochs
        traj = None
        if self.keep_trajectory is not None:
            traj = TrajectoryFile(self.keep_trajectory)
            traj.open(
                epochs * self.steps_per_epoch, self.n_weights, start_epoch * self.steps_per_epoch if resume else 0
            )
        bar = _progress(epochs, start_epoch, progress, progress_desc)
        epoch = start_epoch
        last_save = time.perf_counter()
        try:
            for epoch in range(start_epoch, last_epoch):
                t0 = time.perf_counter()
                state, out = self.run_epoch(state, epoch)
                wins = self.completed_windows(out, store.count)
                train_acc = self.evaluate(state.params, "train")
                dt = time.perf_counter() - t0
                for win in wins:
                    store.add(win)
                    if on_window is not None:
                        on_window(win)
                if traj is not None:
                    traj.write(epoch * self.steps_per_epoch, np.asarray(out.trajectory))
                history["loss"].append(float(np.mean(np.asarray(out.loss))))
                why = diverged(state.params, history["loss"][-1])
                if why is not None:  # never report a blown-up run as a result
                    raise TrainingDiverged(
                        f"training diverged in epoch {epoch + 1} ({why}; optimizer "
                        f"{self.config.optimizer}, learning rate {self.config.learning_rate:g}): "
                        "lower the learning rate"
                    )
                history["train_accuracy"].append(train_acc)
                history["epoch_seconds"].append(dt)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", acc=f"{train_acc:.3f}")
                stop = target_train_accuracy is not None and train_acc >= target_train_accuracy
                due = time.perf_counter() - last_save >= self.checkpoint_every_s
                if ckpt is not None and (due or stop or epoch + 1 == epochs):
                    ckpt.save(epoch + 1, state, store, history)
                    last_save = time.perf_counter()
                if stop:
                    epoch += 1
                    break
            else:
                epoch = last_epoch
        finally:
            if bar is not None:
                bar.close()
            if traj is not None:
                traj.close()
            if ckpt is not None:
                ckpt.close()
        history["reached_target"] = bool(
            target_train_accuracy is not None
            and history["train_accuracy"]
            and history["train_accuracy"][-1] >= target_train_accuracy
        )
        params = jax.device_get(state.params)
        test_acc = self.evaluate(params, "test") if self.x_test is not None else None
        return TrainResult(
            params=params,
            init_params=jax.device_get(self.init_params),
            config=self.config,
            epochs=epoch,
            steps=int(state.step),
            train_accuracy=history["train_accuracy"][-1] if history["train_accuracy"] else float("nan"),
            test_accuracy=test_acc,
            history=history,
            window_accuracy=store.accuracy[: store.count].copy(),
            window_end_steps=store.end_steps[: store.count].copy(),
            window_outputs=store.outputs_so_far(),
            epoch_seconds=list(history["epoch_seconds"]),
            n_weights=self.n_weights,
        )

    def _open_checkpointer(self) -> CheckpointerLike | None:
        """This fit's checkpointer: the one given, else one on `checkpoint_dir`, else None."""
        if self.checkpointer is not None:
            return self.checkpointer
        return None if self.checkpoint_dir is None else Checkpointer(self.checkpoint_dir)


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", dynamic_ncols=True)


def train_on_dataset(dataset: Dataset, config: TrainConfig, **trainer_kwargs: Any) -> tuple[Trainer, TrainResult]:
    """Build a `Trainer` for a `jaxprune.data` dataset and fit it (a convenience)."""
    fit_kwargs = {
        k: trainer_kwargs.pop(k)
        for k in ("resume", "progress", "target_train_accuracy", "on_window", "epochs")
        if k in trainer_kwargs
    }
    trainer = Trainer(
        config,
        dataset.x_train,
        dataset.y_train,
        n_classes=dataset.n_classes,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        **trainer_kwargs,
    )
    return trainer, trainer.fit(**fit_kwargs)
