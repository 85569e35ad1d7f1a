"""The dense stage of many seeds at once: ``P`` dense nets (own seed, own init, own batch order,
own data split) trained by ONE jitted epoch function vmapped over a leading member axis, each
member recording its weight trajectory for the Lyapunov windows.

The epoch (`DensePopulationTrainer.epoch_fn`) is a ``lax.scan`` over the epoch's ``S`` steps
whose body runs the optimizer step of every member (``jax.vmap``) and outputs every member's
kernels after the step (``flatten_kernels``, float32), i.e. the epoch's trajectory rows
``(S, P, n_weights)``; at a step that completes a window it also computes every member's risk
accuracy (``risk="train"``: the whole training split under that step's weights, in a
``lax.cond`` on the step counter, which all members share; ``risk="batch"``: the step's batch).
Seeds, initial params and data are arguments, so a new seed or data split never recompiles
(only a new member count, data shape or config does).

The Lyapunov kernel runs OUTSIDE the scan (XLA:CPU runs code inside loops and conditionals
slowly): on the host, per completed window, the members' raw windows ``(P, window, n_weights)``
are laid side by side, ``(window, P * n_weights)``, and go through `jaxprune.lyapunov.window_le`
once (the kernel is elementwise over the weight axis), then are split per member. The result per
member is a `jaxprune.stages.DenseRun`, as `jaxprune.pipeline.fit_dense` returns for one seed.

Exactness: a member's trajectory equals a lone `jaxprune.train.Trainer` of the same seed in
float64 up to the association of vmapped matmul sums (~1e-15), and in float32 to rounding. On
XLA:CPU the vmapped matmuls give results that depend on the member count ``P`` at the ~1e-8
level, so a seed's LE series (and a borderline Granger decision) can depend on which seeds it
trained with: see docs/population.md.

Memory: a population larger than the memory budget (`member_bytes` per member) is trained in
chunks of equal size (the budget's chunk lowered to ``ceil(P / n_chunks)``; the last padded
with a copy of its last member, whose results are dropped), so every chunk runs the same
compiled program. The host keeps the last ``ceil((window - 1) / S) + 1`` epochs' trajectory
rows of the chunk on the device and cuts each window out of them there (no host copy of the
trajectory); only the LE, status, risk and verify sample come back per window.

Checkpoints: none inside the population. A killed dense population is recomputed from scratch
on resume (the members' ``dense.npz`` files are written together once it has finished), which
gives the identical result, since the same members train in the same chunks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import models
from jaxprune.stages import DenseRun
from jaxprune.train import (
    TrainConfig,
    TrainingDiverged,
    _progress,
    accuracy,
    batch_order,
    diverged_reason,
    make_optimizer,
    make_step,
)
from jaxprune.weights import flatten_kernels, kernel_layout
from jaxprune.windows import n_windows as window_count
from jaxprune.windows import steps_per_epoch

PyTree = Any

__all__ = ["DensePopulationTrainer", "equal_chunk", "fit_dense_population", "population_inputs"]

# compiled epochs shared by every trainer of the same program (architecture, config, data
# shapes, member count): a new run in the same process does not recompile
_EPOCH_CACHE: dict = {}


def _stack(trees: Sequence[PyTree]) -> PyTree:
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *trees)


def _take(tree: PyTree, idx) -> PyTree:
    return jax.tree.map(lambda a: np.asarray(a)[idx], tree)


@functools.partial(jax.jit, static_argnames=("window",))
def _window_rows(pieces: tuple, start, *, window: int) -> jax.Array:
    """Rows ``[start, start + window)`` of the concatenated trajectory pieces (each ``(S, C,
    n_weights)``, oldest first) as the ``(window, C * n_weights)`` side-by-side layout (a
    reshape of step-major rows, no transpose); `start` is traced: one program per chunk."""
    rows = jax.lax.dynamic_slice_in_dim(jnp.concatenate(pieces), start, window, axis=0)
    return rows.reshape(window, -1)


@functools.partial(jax.jit, static_argnums=0)
def _test_accuracy(apply, params, x, y) -> jax.Array:
    """Every member's accuracy ``(P,)`` on its own split ``x (P, m, f)``, ``y (P, m)``."""
    return jax.vmap(lambda p, a, b: accuracy(apply, p, a, b))(params, x, y)


@jax.jit
def _lanes(win: jax.Array, lanes: jax.Array) -> jax.Array:
    """The verify sample's columns ``(window, n_lanes)`` of a side-by-side window."""
    return win[:, lanes]


class DensePopulationTrainer:
    """Trains ``P`` dense MLPs of one architecture, each on its own data split, recording the
    trajectory of every member.

    Args:
      config: the `TrainConfig` (its ``seed`` is ignored: every member has its own).
      n_features, n_classes: the data's input width and class count (all splits alike).
      n_train: training examples per member; n_test: test examples per member (0: none).
      tx: the optax optimizer (default `make_optimizer(config)`).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        n_features: int,
        n_classes: int,
        n_train: int,
        n_test: int = 0,
        binary_output: bool = False,
        tx: optax.GradientTransformation | None = None,
    ):
        if n_train < 1:
            raise ValueError(f"n_train must be >= 1, got {n_train}")
        self.config = config
        n_out = 1 if (binary_output and n_classes == 2) else n_classes
        self.widths = (int(n_features), *config.hidden, n_out)
        self.apply, template = models.init_mlp(self.widths, activation=config.activation, init=config.init, seed=0)
        self.layout = kernel_layout(template)
        self.n_weights = self.layout.n_weights
        self.tx = tx if tx is not None else make_optimizer(config)
        self.n_train, self.n_test = int(n_train), int(n_test)
        self.steps_per_epoch = steps_per_epoch(self.n_train, config.batch_size)
        self.trace_count = 0  # times the epoch function was traced (a new program)
        self._custom_tx = tx is not None
        self._jit = None

    # ----------------------------------------------------------------- members
    def seeded_params(self, seeds: Sequence[int]) -> PyTree:
        """Every seed's init (as `Trainer` draws it), stacked ``(P, ...)``."""
        c = self.config
        return _stack(
            [models.init_mlp(self.widths, activation=c.activation, init=c.init, seed=int(s))[1] for s in seeds]
        )

    def member_bytes(self) -> int:
        """Estimated device bytes one member adds: params and optimizer state (twice: input and
        output of the epoch), gradients, its data split, one batch's activations forward and
        backward, the trajectory rows ``(S, n_weights)`` float32 of this epoch and of the last
        ``K = ceil((window - 1) / S) + 1`` epochs, one window, and the accuracy pass over its
        training split."""
        n_params = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(self._template_params()))
        b = 8 if jax.config.jax_enable_x64 else 4  # params may be float64 under x64
        state = n_params * b * 3  # params + (at most) two optimizer moments
        units = sum(self.widths[1:])
        data = (self.n_train + self.n_test) * (self.widths[0] + 1) * 4
        batch = self.config.batch_size * (self.widths[0] + 3 * units) * b
        # the epoch's rows, the last K epochs' rows kept for the windows, one cut-out window
        S, window = self.steps_per_epoch, self.config.window
        K = -(-(window - 1) // S) + 1
        traj = (K + 1) * S * (self.n_weights * 4 + 16) + window * self.n_weights * 4
        evaluation = (self.n_train + self.n_test) * units * b
        return int(2 * state + n_params * b + data + batch + traj + evaluation)

    def _template_params(self) -> PyTree:
        c = self.config
        return models.init_mlp(self.widths, activation=c.activation, init=c.init, seed=0)[1]

    def chunk_size(self, n_members: int, memory_budget_bytes: float | None) -> int:
        """Members per chunk: all, or as many as `memory_budget_bytes` holds (at least one)."""
        if memory_budget_bytes is None:
            return n_members
        return int(max(1, min(n_members, memory_budget_bytes // self.member_bytes())))

    # ----------------------------------------------------------------- compiled
    def _epoch_impl(self, params, opt_state, seeds, epoch, step0, x_train, y_train):
        """One epoch of every member: params / opt_state leaves ``(P, ...)``, seeds ``(P,)``,
        epoch and step0 (steps done before it) int32 scalars shared by all members, x_train
        ``(P, n, f)``, y_train ``(P, n)`` -> (params, opt_state, traj ``(S, P, n_weights)``
        float32, loss ``(S, P)``, batch accuracy ``(S, P)``, risk accuracy ``(S, P)`` float32
        (meaningful at window end steps only), train accuracy ``(P,)``, largest ``|w|`` of each
        member's params ``(P,)``). The test accuracy is needed after the last epoch only
        (`_test_accuracy`), not in every epoch."""
        self.trace_count += 1  # a Python side effect: runs only when JAX traces a new program
        cfg = self.config
        window, stride = cfg.window, cfg.stride
        step_fn = make_step(self.apply, self.tx, cfg.loss)
        idx, wts = jax.vmap(lambda s: batch_order(s, epoch, self.n_train, cfg.batch_size))(seeds)
        idx, wts = jnp.swapaxes(idx, 0, 1), jnp.swapaxes(wts, 0, 1)  # (S, P, B)

        def one(p, o, x, y, bidx, bw):
            return step_fn(p, o, x[bidx], y[bidx], bw)

        acc_all = jax.vmap(lambda p, x, y: accuracy(self.apply, p, x, y))

        def body(carry, batch):
            p, o, step = carry
            bidx, bw = batch
            p, o, loss, batch_acc = jax.vmap(one)(p, o, x_train, y_train, bidx, bw)
            w = jax.vmap(flatten_kernels)(p).astype(jnp.float32)
            n_rec = step + 1
            complete = (n_rec >= window) & ((n_rec - window) % stride == 0)
            if cfg.risk == "train":
                # the step counter is shared by all members: a real conditional, not a select
                acc = jax.lax.cond(
                    complete,
                    lambda q: acc_all(q, x_train, y_train).astype(jnp.float32),
                    lambda q: jnp.zeros(seeds.shape, jnp.float32),
                    p,
                )
            else:
                acc = batch_acc.astype(jnp.float32)
            return (p, o, n_rec), (w, loss, batch_acc, acc)

        (params, opt_state, _), (traj, loss, batch_acc, acc) = jax.lax.scan(
            body, (params, opt_state, step0), (idx, wts)
        )
        train_acc = acc_all(params, x_train, y_train)
        # per member the largest |w| of all params (the divergence check, without a host copy)
        maxabs = [jnp.max(jnp.abs(a), axis=tuple(range(1, a.ndim))) for a in jax.tree.leaves(params) if a[0].size]
        worst = jnp.max(jnp.stack(maxabs), axis=0) if maxabs else jnp.zeros(seeds.shape, jnp.float32)
        return params, opt_state, traj, loss, batch_acc, acc, train_acc, worst

    def epoch_fn(self) -> Callable:
        """The jitted epoch (see `_epoch_impl`); one program per (member count, dtypes)."""
        if self._jit is None:
            key = (
                self.widths,
                json.dumps(self.config.to_dict(), sort_keys=True),
                self.n_train,
                self.n_test,
            )
            if self._custom_tx or key not in _EPOCH_CACHE:
                fn = jax.jit(self._epoch_impl)
                if self._custom_tx:
                    self._jit = fn
                    return fn
                _EPOCH_CACHE[key] = (self, fn)
            owner, fn = _EPOCH_CACHE[key]
            self._jit = fn
            self._owner = owner  # whose trace_count counts the program's traces
        return self._jit

    @property
    def traces(self) -> int:
        """Traces of this trainer's epoch program (shared with trainers of the same program)."""
        return getattr(self, "_owner", self).trace_count

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        seeds: Sequence[int],
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        *,
        le_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        sample_idx: Sequence[np.ndarray] | None = None,
        epochs: int | None = None,
        target_accuracy: float | None = None,
        on_window: Callable[[int, int, np.ndarray, float, int], None] | None = None,
        memory_budget_bytes: float | None = None,
        chunk_size: int | None = None,
        init_params: PyTree | None = None,
        progress: bool = False,
    ) -> list[DenseRun]:
        """Train every member for `epochs` (default ``config.epochs``); one `DenseRun` each.

        Args:
          seeds: ``(P,)`` ints: each member's init (unless `init_params`) and batch order.
          x_train, y_train: ``(P, n, f)`` float32 and ``(P, n)`` int: each member's split;
            x_test, y_test ``(P, n_test, f)`` / ``(P, n_test)`` or None.
          le_fn: raw windows ``(window, K)`` float32 (a JAX array) -> (slope ``(K,)``, status ``(K,)``): the
            Lyapunov kernel, called once per window index with the chunk's members side by side.
          sample_idx: per member, the flat weight indices whose raw windows are kept (verify).
          target_accuracy: only for ``dense_epochs_to_threshold`` (training never stops early).
          on_window(member, index, le ``(n_weights,)``, risk, end_step): after each window.
          memory_budget_bytes / chunk_size: split the population into chunks.
          init_params: stacked ``(P, ...)`` initial params instead of the seeded inits.
          progress: a tqdm bar over each chunk's epochs.
        """
        seeds = np.asarray(seeds)
        if seeds.ndim != 1 or seeds.size < 1 or not np.issubdtype(seeds.dtype, np.integer):
            raise ValueError(f"seeds must be a non-empty 1-D list of ints, got {seeds!r}")
        P = int(seeds.size)
        x_train, y_train = np.asarray(x_train, np.float32), np.asarray(y_train)
        if x_train.shape[:2] != (P, self.n_train) or y_train.shape != (P, self.n_train):
            raise ValueError(
                f"x_train must be ({P}, {self.n_train}, f) and y_train ({P}, {self.n_train}); "
                f"got {x_train.shape}, {y_train.shape}"
            )
        if self.n_test:
            x_test, y_test = np.asarray(x_test, np.float32), np.asarray(y_test)
            if x_test.shape[:2] != (P, self.n_test) or y_test.shape != (P, self.n_test):
                raise ValueError(f"x_test must be ({P}, {self.n_test}, f); got {np.shape(x_test)}")
        else:
            x_test = np.zeros((P, 0, x_train.shape[2]), np.float32)
            y_test = np.zeros((P, 0), np.int32)
        init = self.seeded_params(seeds) if init_params is None else init_params
        sample_idx = [np.zeros(0, np.int64)] * P if sample_idx is None else [np.asarray(s) for s in sample_idx]
        epochs = self.config.epochs if epochs is None else int(epochs)
        C = int(chunk_size) if chunk_size is not None else self.chunk_size(P, memory_budget_bytes)
        C = equal_chunk(P, C)
        runs: list[DenseRun] = []
        for c in range(math.ceil(P / C)):
            members = np.arange(c * C, min((c + 1) * C, P))
            # pad with copies of the last member (results dropped): one program for all chunks
            padded = np.concatenate([members, np.full(C - len(members), members[-1])])
            runs += self._fit_chunk(
                seeds[padded],
                _take(init, padded),
                [a[padded] for a in (x_train, y_train, x_test, y_test)],
                [sample_idx[i] for i in padded],
                len(members),
                epochs,
                le_fn,
                target_accuracy,
                None if on_window is None else (lambda i, *a, off=int(members[0]): on_window(off + i, *a)),
                progress,
            )
        return runs

    def _fit_chunk(self, seeds, init, data, samples, n_real, epochs, le_fn, target, on_window, progress=False):
        cfg = self.config
        C, nw, window, stride = len(seeds), self.n_weights, cfg.window, cfg.stride
        S = self.steps_per_epoch
        fn = self.epoch_fn()
        x_tr, y_tr, x_te, y_te = (jnp.asarray(a) for a in data)
        x_tr = x_tr.astype(jnp.float32)
        x_te = x_te.astype(jnp.float32)
        y_tr, y_te = y_tr.astype(jnp.int32), y_te.astype(jnp.int32)
        params = jax.tree.map(jnp.asarray, init)
        opt_state = jax.vmap(self.tx.init)(params)
        seeds_d = jnp.asarray(seeds, jnp.int32)
        total = window_count(epochs * S, window, stride)
        le = None
        status = np.zeros((C, total, nw), np.int8)
        risk = np.zeros((C, total), np.float64)
        ends = np.zeros(total, np.int64)
        sample = [np.zeros((total, window, len(s)), np.float32) for s in samples]
        hist = {k: np.zeros((C, epochs)) for k in ("loss", "train_accuracy", "epoch_seconds")}
        # the last K epochs' trajectory rows stay on the device, oldest first: every window that
        # ends in the current epoch lies inside them (K - 1 earlier epochs cover window - 1 rows)
        K = -(-(window - 1) // S) + 1
        zeros = jnp.zeros((S, C, nw), jnp.float32)
        pieces = [zeros] * K
        # the verify sample's lanes in the (window, C * nw) side-by-side layout
        lanes = np.concatenate([i * nw + np.asarray(s, np.int64) for i, s in enumerate(samples)])
        lanes_d = jnp.asarray(lanes, jnp.int32)
        k = 0
        train_acc = test_acc = np.full(C, np.nan)
        t_start = time.perf_counter()
        bar = _progress(epochs, 0, progress, f"dense + LE, {n_real} seed(s)")
        for epoch in range(epochs):
            if bar is not None:
                bar.update(0 if epoch == 0 else 1)
            t0 = time.perf_counter()
            step0 = epoch * S
            params, opt_state, traj, loss, _, acc, tr, worst = fn(
                params, opt_state, seeds_d, jnp.int32(epoch), jnp.int32(step0), x_tr, y_tr
            )
            pieces = [*pieces[1:], traj]
            base = step0 + S - K * S  # global step index of the first row of the pieces
            acc = np.asarray(acc)
            while k < total and stride * k + window <= step0 + S:
                end = stride * k + window
                # (window, C * nw), oldest step first: a member's lanes are contiguous
                wins = _window_rows(tuple(pieces), jnp.int32(end - window - base), window=window)
                slope, st = le_fn(wins)
                slope = np.asarray(slope).reshape(C, nw)
                if le is None:
                    le = np.zeros((C, total, nw), slope.dtype)
                le[:, k] = slope
                status[:, k] = np.asarray(st).reshape(C, nw)
                a = acc[end - step0 - 1]
                ends[k] = end
                if lanes.size:
                    kept = np.asarray(_lanes(wins, lanes_d))
                    o = 0
                    for i in range(C):
                        sample[i][k] = kept[:, o : o + samples[i].size]
                        o += samples[i].size
                for i in range(C):
                    risk[i, k] = 1.0 - float(a[i])  # as RecordedWindow.risk: 1 - float32 accuracy
                if on_window is not None:
                    for i in range(n_real):
                        on_window(i, k, le[i, k], risk[i, k], end)
                k += 1
            loss = np.asarray(loss)
            worst = np.asarray(worst)
            train_acc = np.asarray(tr)
            dt = time.perf_counter() - t0
            for i in range(n_real):
                hist["loss"][i, epoch] = float(np.mean(loss[:, i]))
                why = diverged_reason(hist["loss"][i, epoch], float(worst[i]))
                if why is not None:
                    raise TrainingDiverged(
                        f"seed {int(seeds[i])}: training diverged in epoch {epoch + 1} ({why}; optimizer "
                        f"{cfg.optimizer}, learning rate {cfg.learning_rate:g}): lower the learning rate"
                    )
                hist["train_accuracy"][i, epoch] = float(train_acc[i])
                hist["epoch_seconds"][i, epoch] = dt
        if bar is not None:
            bar.update(1 if epochs else 0)
            bar.close()
        if epochs and self.n_test:
            test_acc = np.asarray(_test_accuracy(self.apply, params, x_te, y_te))
        seconds = time.perf_counter() - t_start
        if total == 0:
            raise ValueError(
                f"training made {epochs * S} steps: fewer than one window of {window}; "
                "train longer or use a shorter --window"
            )
        params = jax.device_get(params)
        out = []
        for i in range(n_real):
            acc_h = hist["train_accuracy"][i]
            reached = np.nonzero(acc_h >= target)[0] if target is not None else np.zeros(0, int)
            out.append(
                DenseRun(
                    le=le[i],
                    le_status=status[i],
                    sample_windows=sample[i],
                    sample_idx=samples[i],
                    risk=risk[i],
                    end_steps=ends.copy(),
                    train_accuracy_history=acc_h.copy(),
                    loss_history=hist["loss"][i].copy(),
                    epoch_seconds=hist["epoch_seconds"][i].copy(),
                    # the member's share of the chunk's wall time
                    seconds=float(seconds / n_real),
                    train_accuracy=float(train_acc[i]) if epochs else float("nan"),
                    test_accuracy=float(test_acc[i]) if (epochs and self.n_test) else float("nan"),
                    dense_epochs_to_threshold=int(reached[0] + 1 if reached.size else -1),
                    steps=int(epochs * S),
                    epochs=int(epochs),
                    init_leaves=tuple(np.asarray(a) for a in jax.tree.leaves(_take(init, i))),
                    param_leaves=tuple(np.asarray(a) for a in jax.tree.leaves(_take(params, i))),
                )
            )
        return out


def le_host_fn(cfg) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The host-side Lyapunov kernel of a `jaxprune.config.LegcnetConfig`: raw windows
    ``(window, K)`` float32 -> (slope ``(K,)`` in the mode's dtype, status ``(K,)`` int8): the
    pipeline's window function (`jaxprune.pipeline.le_window_fn`, through `jaxprune.sharding`
    when the config asks for it), without a verify sample, with host outputs."""
    from jaxprune.pipeline import le_window_fn  # lazy: pipeline imports this module

    window_fn = le_window_fn(cfg, np.zeros(0, np.int64))

    def fn(win):
        out = window_fn(jnp.asarray(win))
        return np.asarray(out["le"]), np.asarray(out["status"])

    return fn


def equal_chunk(n_members: int, chunk: int) -> int:
    """The chunk size `fit` trains `n_members` with at most `chunk` per chunk: the same number
    of chunks, of equal size (``ceil(P / n_chunks)``), so the padding computed for nothing
    stays below one member per chunk."""
    chunk = max(1, min(int(chunk), n_members))
    return math.ceil(n_members / math.ceil(n_members / chunk))


def population_inputs(datasets: Sequence, config: TrainConfig) -> tuple[DensePopulationTrainer, list[np.ndarray]]:
    """The trainer for the seeds' `jaxprune.data.Dataset` splits (same shapes and classes, else
    a ValueError) and `fit`'s stacked data: ``[x_train (P, n, f), y_train (P, n), x_test
    (P, m, f), y_test (P, m)]``."""
    first = datasets[0]
    shapes = {(d.x_train.shape, d.x_test.shape, d.n_classes) for d in datasets}
    if len(shapes) != 1:
        raise ValueError(f"the seeds' data splits differ in shape: {sorted(shapes)}")
    trainer = DensePopulationTrainer(
        config,
        n_features=first.x_train.shape[1],
        n_classes=first.n_classes,
        n_train=first.x_train.shape[0],
        n_test=first.x_test.shape[0],
    )
    return trainer, [np.stack([getattr(d, k) for d in datasets]) for k in ("x_train", "y_train", "x_test", "y_test")]


def fit_dense_population(
    datasets: Sequence,
    cfg,
    seeds: Sequence[int],
    *,
    on_window: Callable[[int, int, np.ndarray, float, int], None] | None = None,
    memory_budget_bytes: float | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
) -> tuple[list[DenseRun], dict]:
    """The dense stage (`jaxprune.pipeline.fit_dense`) of every seed as one population.

    datasets: per seed its `jaxprune.data.Dataset` (same shapes); cfg: a
    `jaxprune.config.LegcnetConfig`; memory_budget_bytes: default the config's memory budget.
    Returns (one `DenseRun` per seed, without digest; ``DenseRun.seconds`` is the member's share
    of the population's wall time) and ``{"seconds", "le_seconds", "members", "chunk_size", "traces"}``
    (``le_seconds``: wall time of the host-side Lyapunov kernel, all windows of all members).
    """
    from jaxprune.pipeline import verify_sample_indices
    from jaxprune.select import budget_bytes

    seeds = [int(s) for s in seeds]
    if len(datasets) != len(seeds):
        raise ValueError(f"{len(datasets)} data sets for {len(seeds)} seeds")
    trainer, arrays = population_inputs(datasets, cfg.train)
    samples = [verify_sample_indices(trainer.n_weights, cfg.verify_sample, s) for s in seeds]
    budget = budget_bytes(cfg) if memory_budget_bytes is None else memory_budget_bytes
    C = chunk_size if chunk_size is not None else trainer.chunk_size(len(seeds), budget)
    kernel = le_host_fn(cfg)
    le_seconds = [0.0]

    def timed_le(win):  # the host-side kernel's wall time (it returns host arrays: synced)
        t = time.perf_counter()
        out = kernel(win)
        le_seconds[0] += time.perf_counter() - t
        return out

    t0 = time.perf_counter()
    runs = trainer.fit(
        seeds,
        *arrays,
        le_fn=timed_le,
        sample_idx=samples,
        target_accuracy=cfg.retrain.target_accuracy,
        on_window=on_window,
        chunk_size=C,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    runs = [dataclasses.replace(r, seconds=seconds / len(seeds)) for r in runs]
    info = {
        "seconds": seconds,
        "le_seconds": le_seconds[0],
        "members": len(seeds),
        "chunk_size": equal_chunk(len(seeds), C),
    }
    return runs, {**info, "traces": trainer.traces}
