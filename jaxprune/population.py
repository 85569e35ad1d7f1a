"""Population training: ``P`` nets of one architecture (own seeds, masks, init params) trained
by ONE compiled epoch function vmapped over a leading member axis.

Masks, seeds and initial params are data (arrays with a leading member axis ``P``), so a new mask
or seed never recompiles; only a new member count (chunk size), data shape or dtype does. Each
member keeps:

* its own batch order: `jaxprune.train.batch_order` of its seed (``fold_in(PRNGKey(seed),
  epoch)``), identical to a single-net `Trainer` with that seed;
* its own stopping point: after every epoch its training accuracy is compared with the threshold
  (as `Trainer.fit` does); a member that reached it is frozen (its params and optimizer state
  stop changing, the compiled program still computes it and discards the result) and its
  ``epochs_to_threshold`` is recorded;
* its own metrics: per-epoch mean loss, training and test accuracy.

Members that share a seed (and split) share their batches: `fit` trains them as groups of one
batch order (`PopulationTrainer.batch_groups`), so a layer's matmul is one wide product with the
shared batch instead of one small product per member (mnist: half the cost per member-epoch).

Shapes (``P`` members, ``S`` steps per epoch, ``E`` epochs run):
params / optimizer state: every leaf ``(P, *leaf_shape)``; masks: bool pytrees shaped like the
params with the same leading ``P`` (True = keep); seeds ``(P,)`` int32. History arrays ``(P, E)``.

Memory per member (`PopulationTrainer.member_bytes`): params and optimizer state twice (the
epoch's output and the frozen members' copy), gradients and updates, one batch of inputs and
activations forward and backward, the epoch's batch order and per-step metrics, and the
per-epoch accuracy passes over the train and test splits (``n * sum(widths[1:])`` activations):
for mnist5k's 784-50-30-10 float32 ~3.1 MB (XLA measures 2.3 MB). The data splits are shared,
or per member (``(D, n, features)`` with a member -> split index, vmapped with the members:
each member its own seed's split; then each member's split counts in its bytes, ~16 MB more).
A population larger than a memory budget is cut into equal chunks (the last one padded with
copies of a member whose results are dropped), so every chunk runs the same compiled program.

Equality with single-net training: under float64 (x64, float64 params) a member equals
`jaxprune.pipeline.retrain` / `Trainer` with the masked optimizer to ~1e-15 after a few epochs
(vmapped matmuls may associate sums differently; tests/test_population.py); in float32 the
members differ from the single-net path by rounding (~1e-6 relative), like any two XLA programs.
See docs/population.md.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxprune import models, prune
from jaxprune.checkpoints import PopulationCheckpointer
from jaxprune.train import (
    TrainConfig,
    accuracy,
    batch_order,
    make_optimizer,
    make_step,
)
from jaxprune.windows import steps_per_epoch

PyTree = Any
MEMBER_AXIS = "members"

# `PopulationTrainer.compaction_size`: compact only when the dropped slots would cost at least
# this many flops (~0.6 s on this project's 2-core CPU, about one epoch program's compilation)
COMPACT_MIN_FLOPS = 5e10
# `PopulationTrainer.batch_groups`: members sharing a batch order train as groups when the
# groups padded to equal size take at most this many slots per member (a grouped slot costs
# about half an ungrouped one on mnist's first layer, so 1.25 always pays there)
GROUP_MAX_PADDING = 1.25
# `PopulationTrainer.fit(checkpoint_dir=...)`: seconds between two checkpoints (a 45-member
# mnist5k population writes ~15 MB in ~0.3 s; one a minute costs < 1 %)
CHECKPOINT_EVERY_S = 60.0


def _stack(trees: Sequence[PyTree]) -> PyTree:
    """List of same-structure pytrees -> one pytree with a leading member axis (host arrays)."""
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *trees)


def _take(tree: PyTree, idx) -> PyTree:
    return jax.tree.map(lambda a: np.asarray(a)[idx], tree)


def _gather_members(a, sel):
    """Rows `sel` of a leaf's leading member axis (a compaction's gather)."""
    return jnp.take(a, sel, axis=0)


def _tree_bytes(tree: PyTree) -> int:
    return int(sum(np.prod(np.shape(a)) * jnp.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)))


@dataclasses.dataclass
class PopulationResult:
    """What `PopulationTrainer.fit` returns (host arrays; ``P`` members, ``E`` epochs run).

    params: final params, every leaf ``(P, ...)``. epochs: ``(P,)`` epochs each member trained
    (its freezing epoch, or all). steps: ``(P,)`` optimizer steps. reached: ``(P,)`` bool.
    epochs_to_threshold: ``(P,)`` int, -1 where the threshold was not reached (or none given).
    train_accuracy / test_accuracy: ``(P,)`` final (test: None without a test split).
    history: ``loss``, ``train_accuracy``, ``test_accuracy`` ``(P, E)`` float64, NaN after a
    member froze. compile_seconds: time spent compiling; seconds: wall time including it.
    chunk_size / n_chunks: how the population was split for the memory budget (slots per
    chunk, padding included). group_size: members per group of one batch order
    (`PopulationTrainer.batch_groups`; 1: none).
    """

    params: PyTree
    epochs: np.ndarray
    steps: np.ndarray
    reached: np.ndarray
    epochs_to_threshold: np.ndarray
    train_accuracy: np.ndarray
    test_accuracy: np.ndarray | None
    history: dict
    compile_seconds: float
    seconds: float
    chunk_size: int
    n_chunks: int
    group_size: int = 1

    @property
    def n_members(self) -> int:
        return len(self.epochs)

    def member_params(self, i: int) -> PyTree:
        return _take(self.params, i)

    def member_history(self, i: int) -> dict:
        """Member `i`'s per-epoch lists (JSON-safe: only the epochs it trained)."""
        n = int(self.epochs[i])
        return {k: [float(v) for v in h[i, :n]] for k, h in self.history.items()}


class PopulationTrainer:
    """Trains populations of masked MLPs of one architecture with one compiled epoch.

    Args:
      config: the `TrainConfig` (net, optimizer, batch size, epochs; its ``seed`` is ignored:
        every member has its own).
      x_train, y_train: ``(n, features)`` float32 and ``(n,)`` int labels shared by every member;
        or per-member data: ``(D, n, features)`` and ``(D, n)``, data set ``data_index[i]`` for
        member ``i`` (each member its own split, e.g. the split of its seed). x_test, y_test
        optional, shaped likewise (``(m, features)`` / ``(m,)`` or ``(D, m, features)`` / ``(D, m)``).
      data_index: with per-member data, ``(P,)`` ints in ``0 .. D-1``: the data set of each
        member of every `fit` (which then takes exactly ``P`` members); default ``arange(D)``.
      n_classes, binary_output: as for `jaxprune.train.Trainer`.
      tx: the inner optax optimizer (default `make_optimizer(config)`); every member trains it
        through `jaxprune.prune.masked` with its own mask (the mask lives in the optimizer
        state, so it is data).
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
        devices: Sequence[jax.Device] | None = None,
        data_index: Sequence[int] | None = None,
    ):
        x_train = np.asarray(x_train)
        y_train = np.asarray(y_train)
        # per-member data: a leading data-set axis (D, n, features)
        self.per_member_data = x_train.ndim == 3
        lead = x_train.shape[:1] if self.per_member_data else ()
        if (
            x_train.ndim not in (2, 3)
            or y_train.shape != x_train.shape[:-1]
            or x_train.shape[-2] < 1
            or (self.per_member_data and x_train.shape[0] < 1)
        ):
            raise ValueError(
                "x_train must be (n>=1, features) with y_train (n,), or per member (D, n, features) with "
                f"y_train (D, n); got {x_train.shape}, {y_train.shape}"
            )
        if (x_test is None) != (y_test is None):
            raise ValueError("give both x_test and y_test, or neither")
        if x_test is not None:
            x_test, y_test = np.asarray(x_test), np.asarray(y_test)
            if x_test.shape[: len(lead)] != lead or x_test.ndim != x_train.ndim or y_test.shape != x_test.shape[:-1]:
                raise ValueError(
                    f"x_test / y_test {x_test.shape} / {y_test.shape} do not match x_train {x_train.shape}"
                )
        if data_index is not None and not self.per_member_data:
            raise ValueError("data_index needs per-member data: x_train of shape (D, n, features)")
        if self.per_member_data:
            idx = np.arange(x_train.shape[0]) if data_index is None else np.asarray(data_index)
            if idx.ndim != 1 or idx.size < 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"data_index must be a non-empty 1-D list of ints, got {data_index!r}")
            if idx.min() < 0 or idx.max() >= x_train.shape[0]:
                raise ValueError(f"data_index must lie in [0, {x_train.shape[0] - 1}], got {idx.min()}..{idx.max()}")
            self.data_index = idx
        else:
            self.data_index = None
        self.config = config
        n_out = 1 if (binary_output and n_classes == 2) else n_classes
        self.widths = (x_train.shape[-1], *config.hidden, n_out)
        self.apply, self._template = models.init_mlp(
            self.widths, activation=config.activation, init=config.init, seed=0
        )
        self.inner_tx = tx if tx is not None else make_optimizer(config)
        # Its update reads the mask from each member's state (prune.MaskedState), never this one.
        all_true = jax.tree.map(lambda a: np.ones(np.shape(a), bool), self._template)
        self.tx = prune.masked(self.inner_tx, all_true)
        self.has_test = x_test is not None
        # per-member data stays on the host; each chunk puts its members' sets on the device
        to = np.asarray if self.per_member_data else jnp.asarray
        self.x_train = to(x_train, np.float32)
        self.y_train = to(y_train, np.int32)
        self.x_test = to(x_test, np.float32) if self.has_test else None
        self.y_test = to(y_test, np.int32) if self.has_test else None
        self.n_train = int(x_train.shape[-2])
        self.steps_per_epoch = steps_per_epoch(self.n_train, config.batch_size)
        self.trace_count = 0  # times the epoch function was traced (a new program)
        self.compile_count = 0
        self._compiled: dict = {}  # shape signature -> (member count, compiled epoch)
        self.mesh = None
        if devices is not None and len(devices) > 1:
            self.mesh = Mesh(np.array(list(devices)), (MEMBER_AXIS,))
        if self.mesh is not None and not self.per_member_data:
            rep = NamedSharding(self.mesh, PartitionSpec())
            self.x_train, self.y_train = jax.device_put((self.x_train, self.y_train), rep)
            if self.has_test:
                self.x_test, self.y_test = jax.device_put((self.x_test, self.y_test), rep)

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    def _shard(self, tree: PyTree) -> PyTree:
        """Put the leading (member) axis of every leaf on the mesh (no-op without one)."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS)))

    # ----------------------------------------------------------------- members
    def seeded_params(self, seeds: Sequence[int]) -> PyTree:
        """The seeded init of every seed (as `Trainer` draws it), stacked ``(P, ...)``."""
        return _stack(
            [
                models.init_mlp(self.widths, activation=self.config.activation, init=self.config.init, seed=int(s))[1]
                for s in seeds
            ]
        )

    def _as_members(self, tree: PyTree | Sequence[PyTree] | None, n: int, what: str, default: PyTree) -> PyTree:
        """A list of pytrees, a stacked pytree or one pytree (broadcast) -> stacked ``(n, ...)``."""
        if tree is None:
            tree = default
        if isinstance(tree, (list, tuple)):
            if len(tree) != n:
                raise ValueError(f"{what}: {len(tree)} given for {n} members")
            tree = _stack(tree)
        tmpl = jax.tree.structure(self._template)
        if jax.tree.structure(tree) != tmpl:
            raise ValueError(f"{what} do not have the net's structure {tmpl}")
        shapes = [np.shape(a) for a in jax.tree.leaves(tree)]
        ref = [np.shape(a) for a in jax.tree.leaves(self._template)]
        if shapes == ref:  # one pytree for all members
            return jax.tree.map(lambda a: np.broadcast_to(np.asarray(a), (n,) + np.shape(a)), tree)
        if shapes != [(n,) + s for s in ref]:
            raise ValueError(f"{what} leaves have shapes {shapes}; expected {ref} or with a leading member axis of {n}")
        return tree

    def initial_state(self, init_params: PyTree, masks: PyTree) -> tuple[PyTree, PyTree]:
        """(params, opt_state) of a stacked population: params masked (`prune.apply_mask`),
        optimizer state `prune.masked(...).init` per member (holding that member's mask)."""
        masks = jax.tree.map(lambda m: jnp.asarray(m, bool), masks)
        params = jax.vmap(prune.apply_mask)(jax.tree.map(jnp.asarray, init_params), masks)

        def init_one(p, m):
            return prune.MaskedState(self.inner_tx.init(p), m)

        return params, jax.vmap(init_one)(params, masks)

    # ------------------------------------------------------------------ memory
    def member_bytes(self, dtype=jnp.float32) -> int:
        """Estimated device bytes one member adds to a chunk (params of `dtype`; see module doc)."""
        b = jnp.dtype(dtype).itemsize
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), dtype), self._template)
        n_params = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(self._template))
        opt = jax.eval_shape(lambda p: self.tx.init(p), params)
        state = n_params * b + _tree_bytes(opt)
        B, S = self.config.batch_size, self.steps_per_epoch
        units = sum(self.widths[1:])
        batch = B * (self.widths[0] * 4 + 4) + 3 * B * units * b  # inputs + fwd/bwd activations
        order = S * B * 8 + self.n_train * 4 + S * 8  # batch indices, weights, perm, loss, acc
        n_eval = self.n_train + (int(self.x_test.shape[-2]) if self.has_test else 0)
        evaluation = n_eval * units * b
        # per-member data: each member's splits (float32 inputs, int32 labels)
        own_data = n_eval * (self.widths[0] * 4 + 4) if self.per_member_data else 0
        # 2x state: the new state and the kept copy (frozen members); grads + updates: 2 params
        return int(2 * state + 2 * n_params * b + batch + order + evaluation + own_data)

    def shared_bytes(self) -> int:
        """Device bytes shared by all members: the data splits (0 with per-member data, counted
        in `member_bytes`)."""
        if self.per_member_data:
            return 0
        n = _tree_bytes([self.x_train, self.y_train])
        if self.has_test:
            n += _tree_bytes([self.x_test, self.y_test])
        return n

    def chunk_size(self, n_members: int, memory_budget_bytes: float | None, dtype=jnp.float32) -> int:
        """Members per chunk: all of them, or as many as `memory_budget_bytes` (per device)
        holds; with several devices a multiple of their number (padding members fill it)."""
        if n_members < 1:
            raise ValueError("a population needs at least one member")
        n_dev = self.n_devices
        if memory_budget_bytes is None:
            return -(-n_members // n_dev) * n_dev
        per = self.member_bytes(dtype)
        free = memory_budget_bytes - self.shared_bytes()
        if free < per:
            raise ValueError(
                f"memory budget {memory_budget_bytes:.0f} B holds no member: the data take "
                f"{self.shared_bytes()} B and one member ~{per} B"
            )
        per_dev = int(min(-(-n_members // n_dev), free // per))
        return per_dev * n_dev

    def compiled_bytes(self) -> dict[int, int]:
        """XLA's memory analysis (temp + arguments + outputs) of every compiled epoch program,
        by its member count (programs of other dtypes overwrite; 0 where the backend has none)."""
        out = {}
        for n, fn in self._compiled.values():
            ma = fn.memory_analysis()
            out[n] = (
                0 if ma is None else int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)
            )
        return out

    # ----------------------------------------------------------------- compiled
    def _epoch_impl(self, params, opt_state, seeds, active, epoch, data, eval_test=True, group_size=1):
        """One epoch of every member: ``(P, ...)`` state, ``(P,)`` seeds and active flags ->
        new state (unchanged where not active), loss / batch accuracy ``(P, S)``, train and test
        accuracy ``(P,)`` after the epoch. `data`: (x_train, y_train, x_test, y_test), shared by
        all members, or per member with a leading ``P`` (vmapped with the members); arguments,
        not constants folded into the program. eval_test=False: no per-epoch test accuracy (0).

        group_size ``M`` > 1: the ``P = G * M`` slots are ``G`` groups of ``M`` consecutive
        members that share one batch order (one seed) and one data split (per-member data then
        has a leading ``G``, one split per group). A group's batch is gathered once and every
        member's matmul with it becomes one ``(B, features) @ (features, M * units)`` product
        instead of ``M`` small batched ones (x2.4 the throughput of mnist's first layer on a
        2-core CPU); the arithmetic of each member is unchanged."""
        self.trace_count += 1  # a Python side effect: runs only when JAX traces a new program
        cfg = self.config
        step_fn = make_step(self.apply, self.tx, cfg.loss)
        acc_fn = functools.partial(accuracy, self.apply)
        M = int(group_size)
        if M > 1:  # the step and the accuracy passes of M members on one shared batch / split
            step_fn = jax.vmap(step_fn, in_axes=(0, 0, None, None, None))
            acc_fn = jax.vmap(acc_fn, in_axes=(0, None, None))

        def keep_frozen(act, new, old):
            # a frozen member keeps its state: select, so that the program is the same for all
            act = jnp.reshape(act, jnp.shape(act) + (1,) * (jnp.ndim(new) - jnp.ndim(act)))
            return jnp.where(act, new, old)

        def unit(p, o, seed, act, data):
            """One member (M == 1) or one group of M members sharing `seed` and `data`."""
            x_train, y_train, x_test, y_test = data
            idx, wts = batch_order(seed, epoch, self.n_train, cfg.batch_size)

            def body(carry, batch):
                p, o = carry
                bidx, bw = batch
                p, o, loss, acc = step_fn(p, o, x_train[bidx], y_train[bidx], bw)
                return (p, o), (loss, acc)

            (p_new, o_new), (losses, accs) = jax.lax.scan(body, (p, o), (idx, wts))
            p_new, o_new = jax.tree.map(functools.partial(keep_frozen, act), (p_new, o_new), (p, o))
            train_acc = acc_fn(p_new, x_train, y_train)
            test_acc = (
                acc_fn(p_new, x_test, y_test)
                if (self.has_test and eval_test)
                else jnp.zeros(jnp.shape(train_acc), train_acc.dtype)
            )
            # per-step metrics (S,) of a member, (S, M) of a group -> member-major
            return p_new, o_new, losses.T, accs.T, train_acc, test_acc

        if M == 1:
            if self.per_member_data:
                return jax.vmap(unit)(params, opt_state, seeds, active, data)
            return jax.vmap(lambda p, o, s, a: unit(p, o, s, a, data))(params, opt_state, seeds, active)
        G = int(np.shape(seeds)[0]) // M
        grouped = lambda a: jnp.reshape(a, (G, M) + jnp.shape(a)[1:])  # noqa: E731
        flat = lambda a: jnp.reshape(a, (G * M,) + jnp.shape(a)[2:])  # noqa: E731
        params, opt_state, active = jax.tree.map(grouped, (params, opt_state, active))
        group_seeds = grouped(seeds)[:, 0]  # every slot of a group holds the group's seed
        if self.per_member_data:
            out = jax.vmap(unit)(params, opt_state, group_seeds, active, data)
        else:
            out = jax.vmap(lambda p, o, s, a: unit(p, o, s, a, data))(params, opt_state, group_seeds, active)
        return jax.tree.map(flat, out)

    def _data(self, members=None, eval_test=True):
        """The epoch's data argument: the shared splits, or (per-member data) the splits of
        `members` (indices into `data_index`) stacked ``(C, ...)`` on the device(s); without
        the test split when `eval_test` is False."""
        test = (self.x_test, self.y_test) if eval_test else (None, None)
        if not self.per_member_data:
            return (self.x_train, self.y_train, *test)
        d = self.data_index[np.asarray(members)]
        take = lambda a: None if a is None else jnp.asarray(a[d])
        return self._shard(tuple(take(a) for a in (self.x_train, self.y_train, *test)))

    def _epoch_fn(self, params, opt_state, seeds, active, epoch, data, eval_test=True, group_size=1):
        """The compiled epoch for these shapes (compiled once per shape/dtype signature and
        group size)."""
        args = (params, opt_state, seeds, active, epoch, data)
        key = (
            bool(eval_test),
            int(group_size),
            jax.tree.structure(args),
            tuple((np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(args)),
        )
        fn = self._compiled.get(key, (None, None))[1]
        compile_s = 0.0
        if fn is None:
            t0 = time.perf_counter()
            # Donating the state lets GPU/TPU update it in place; the CPU backend cannot use it.
            donate = () if jax.default_backend() == "cpu" else (0, 1)
            kw = {}
            if self.mesh is not None:  # members split over devices, data and epoch replicated
                mem = NamedSharding(self.mesh, PartitionSpec(MEMBER_AXIS))
                rep = NamedSharding(self.mesh, PartitionSpec())
                kw = {
                    "in_shardings": (mem, mem, mem, mem, rep, mem if self.per_member_data else rep),
                    "out_shardings": mem,
                }
            impl = functools.partial(self._epoch_impl, eval_test=bool(eval_test), group_size=int(group_size))
            fn = jax.jit(impl, donate_argnums=donate, **kw).lower(*args).compile()
            self._compiled[key] = (int(np.shape(seeds)[0]), fn)
            self.compile_count += 1
            compile_s = time.perf_counter() - t0
        return fn, compile_s

    # ---------------------------------------------------------------------- fit
    def fit(
        self,
        seeds: Sequence[int],
        *,
        init_params: PyTree | Sequence[PyTree] | None = None,
        masks: PyTree | Sequence[PyTree] | None = None,
        epochs: int | None = None,
        target_train_accuracy: float | None = None,
        memory_budget_bytes: float | None = None,
        chunk_size: int | None = None,
        test_history: bool = True,
        compact: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every_s: float | None = None,
    ) -> PopulationResult:
        """Train every member for `epochs` (default ``config.epochs``) or until its training
        accuracy reaches `target_train_accuracy` at an epoch end (then it is frozen).

        Args:
          seeds: ``(P,)`` ints: each member's batch order (and its init when `init_params` is
            None).
          init_params: per-member initial params (list of pytrees, a stacked ``(P, ...)``
            pytree, or one pytree for all); default the seeded init of each seed.
          masks: per-member bool masks in the same forms (True = keep); default all True.
            Pruned positions start at 0 and stay exactly 0 (`prune.masked`).
          memory_budget_bytes: device bytes the population may use; a population that does not
            fit is trained in chunks of equal size (`chunk_size`: the budget's chunk, lowered to
            the population's size over the chunk count). chunk_size: an explicit chunk size
            (an upper bound, balanced the same way) instead.
          test_history: evaluate the test split after every epoch (``history["test_accuracy"]``
            and ``test_accuracy``); False skips it (both None / absent): for callers that only
            need the final params (e.g. accuracy-vs-sparsity curves), ~10 % less work on mnist.
          compact: drop frozen members from the compiled population once enough work is saved
            (`compaction_size`): the remaining members continue in a smaller program. Results
            are deterministic (the rule depends on counts, not timings); in float32 a member
            still trained after a compaction differs from an uncompacted run by rounding
            (vmapped matmuls of another member count).
          checkpoint_dir: orbax checkpoints of the training under
            ``checkpoint_dir/population_<fingerprint>/chunk_<c>`` (`checkpoints.PopulationCheckpointer`),
            at epoch ends at most every `checkpoint_every_s` seconds (default
            `CHECKPOINT_EVERY_S`) and when a chunk ends. A later `fit` of the same population
            (same seeds, init params, masks, data, config, epochs, threshold, chunking: the
            fingerprint) continues from them, with results equal to an uninterrupted run's
            (test); another population never reads them. The folder is removed when the fit
            has finished. A custom ``tx`` is not part of the fingerprint: do not change it
            between a fit and its continuation.
        """
        seeds = np.asarray(seeds)
        if seeds.ndim != 1 or seeds.size < 1 or not np.issubdtype(seeds.dtype, np.integer):
            raise ValueError(f"seeds must be a non-empty 1-D list of ints, got {seeds!r}")
        if seeds.min() < 0 or seeds.max() > np.iinfo(np.int32).max:
            raise ValueError("seeds must lie in [0, 2**31 - 1]")
        n = int(seeds.size)
        if self.per_member_data and n != self.data_index.size:
            raise ValueError(f"the per-member data is for {self.data_index.size} members; fit got {n} seeds")
        epochs = self.config.epochs if epochs is None else int(epochs)
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        default_init = None if init_params is not None else self.seeded_params(seeds)
        init = self._as_members(init_params, n, "init_params", default_init)
        ones = jax.tree.map(lambda a: np.ones(np.shape(a), bool), self._template)
        masks = self._as_members(masks, n, "masks", ones)
        if any(np.asarray(m).dtype != bool for m in jax.tree.leaves(masks)):
            raise ValueError("masks must be bool arrays (True = keep)")
        dtype = jnp.result_type(*jax.tree.leaves(init))
        if chunk_size is None:  # the slots the budget holds (unbounded without one)
            chunk_size = self.chunk_size(np.iinfo(np.int32).max, memory_budget_bytes, dtype)
        n_dev = self.n_devices
        slots = -(-max(1, int(chunk_size)) // n_dev) * n_dev  # whole device groups
        pieces, M = self.batch_groups(seeds, min(slots, n))
        # a chunk holds whole groups of M slots; equal chunks: 75 members under a 53-member
        # budget train as 38 + 37, not 53 + 22 (+31 padding members computed for nothing)
        per_chunk = max(1, min(slots // M, len(pieces)))
        n_chunks = math.ceil(len(pieces) / per_chunk)
        per_chunk = -(-math.ceil(len(pieces) / n_chunks) // n_dev) * n_dev
        eval_test = bool(test_history) and self.has_test

        ckpt_root = None
        checkpoint_every_s = CHECKPOINT_EVERY_S if checkpoint_every_s is None else float(checkpoint_every_s)
        if checkpoint_dir is not None:
            layout = (per_chunk, M, n_chunks, epochs, target_train_accuracy, eval_test, compact)
            ckpt_root = Path(checkpoint_dir) / f"population_{self._fingerprint(seeds, init, masks, layout)}"
        t0 = time.perf_counter()
        compile_s = 0.0
        parts = []
        for c in range(n_chunks):
            real = pieces[c * per_chunk : (c + 1) * per_chunk]
            members = np.concatenate(real)  # this chunk's members, in slot order
            local = {int(m): k for k, m in enumerate(members)}
            # pad the chunk with copies of its last group, and every group to M slots with
            # copies of its last member (inactive, dropped), so that every chunk has the same
            # shape and runs the same compiled program
            slot_src, slot_member = [], []
            for g, piece in enumerate(real + [real[-1]] * (per_chunk - len(real))):
                for j in range(M):
                    slot_src.append(int(piece[min(j, len(piece) - 1)]))
                    slot_member.append(local[int(piece[j])] if g < len(real) and j < len(piece) else -1)
            slot_src = np.asarray(slot_src)
            ckpt = None if ckpt_root is None else PopulationCheckpointer(ckpt_root / f"chunk_{c}")
            try:
                part, cs = self._fit_chunk(
                    seeds[slot_src],
                    _take(init, slot_src),
                    _take(masks, slot_src),
                    np.asarray(slot_member),
                    epochs,
                    target_train_accuracy,
                    self._data(slot_src[::M], eval_test),
                    eval_test=eval_test,
                    compact=compact,
                    group_size=M,
                    checkpoint=ckpt,
                    checkpoint_every_s=checkpoint_every_s,
                )
            finally:  # also when training is interrupted: its checkpoints are on disk
                if ckpt is not None:
                    ckpt.close()
            compile_s += cs
            parts.append((members, part))
        width = max(p["history"]["loss"].shape[1] for _, p in parts)
        order = np.argsort(np.concatenate([m for m, _ in parts]), kind="stable")  # chunk order -> input order
        cat = lambda *xs: np.concatenate(xs)[order]  # noqa: E731
        hist = {
            k: cat(
                *[
                    np.pad(p["history"][k], ((0, 0), (0, width - p["history"][k].shape[1])), constant_values=np.nan)
                    for _, p in parts
                ]
            )
            for k in parts[0][1]["history"]
        }
        if not eval_test:
            hist.pop("test_accuracy")
        parts = [p for _, p in parts]
        if ckpt_root is not None:  # finished: its checkpoints are not needed any more
            shutil.rmtree(ckpt_root, ignore_errors=True)
        return PopulationResult(
            params=jax.tree.map(cat, *[p["params"] for p in parts]),
            epochs=cat(*[p["epochs"] for p in parts]),
            steps=cat(*[p["epochs"] for p in parts]) * self.steps_per_epoch,
            reached=cat(*[p["reached"] for p in parts]),
            epochs_to_threshold=cat(*[p["epochs_to_threshold"] for p in parts]),
            train_accuracy=cat(*[p["train_accuracy"] for p in parts]),
            test_accuracy=cat(*[p["test_accuracy"] for p in parts]) if eval_test else None,
            history=hist,
            compile_seconds=compile_s,
            seconds=time.perf_counter() - t0,
            chunk_size=per_chunk * M,
            n_chunks=n_chunks,
            group_size=M,
        )

    def _fingerprint(self, seeds, init, masks, layout) -> str:
        """A hash of everything a population's training depends on (its checkpoints' name)."""
        h = hashlib.sha256()
        arrays = [seeds, *jax.tree.leaves(init), *jax.tree.leaves(masks)]
        arrays += [a for a in (self.x_train, self.y_train, self.x_test, self.y_test, self.data_index) if a is not None]
        for a in arrays:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.shape}{a.dtype.str}".encode())
            h.update(a.tobytes())
        const = (GROUP_MAX_PADDING, COMPACT_MIN_FLOPS, jax.__version__, jax.default_backend())
        h.update(repr((self.config, self.widths, self.n_devices, layout, const)).encode())
        return h.hexdigest()[:20]

    def batch_groups(self, seeds: Sequence[int], chunk_size: int) -> tuple[list[np.ndarray], int]:
        """How `fit` lays out members: ``(pieces, M)``, every piece a list of member indices (at
        most ``M``) that share a batch order (their seed) and data split, trained in ``M`` slots
        of one group of the compiled program (`_epoch_impl`).

        ``M`` is the largest such group (at most `chunk_size`; larger groups are cut into
        pieces) when the pieces padded to ``M`` slots cost at most `GROUP_MAX_PADDING` times
        the members, on one device; otherwise ``M = 1``: every member alone, in input order
        (the plain vmapped population)."""
        seeds = np.asarray(seeds)
        n = int(seeds.size)
        alone = [np.array([i]) for i in range(n)], 1
        if self.n_devices > 1:  # the member axis is split over devices: no groups
            return alone
        data = self.data_index if self.per_member_data else np.zeros(n, np.int64)
        groups: dict = {}
        for i in range(n):
            groups.setdefault((int(seeds[i]), int(data[i])), []).append(i)
        M = min(max(len(g) for g in groups.values()), int(chunk_size))
        if M <= 1:
            return alone
        pieces = [np.asarray(g[k : k + M]) for g in groups.values() for k in range(0, len(g), M)]
        if len(pieces) * M > GROUP_MAX_PADDING * n:
            return alone
        return pieces, M

    def member_epoch_flops(self) -> float:
        """Floating-point operations of one member's epoch (forward and backward passes of the
        steps, the accuracy passes), the unit of `compaction_size`'s rule."""
        n_params = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(self._template))
        n_eval = self.n_train + (int(self.x_test.shape[-2]) if self.has_test else 0)
        return float(6 * self.steps_per_epoch * self.config.batch_size * n_params + 2 * n_eval * n_params)

    def compaction_size(self, n_slots: int, n_active: int, epochs_left: int) -> int:
        """The member count to compact a population of `n_slots` with `n_active` unfrozen
        members to, before an epoch with `epochs_left` epochs to go; `n_slots` = keep it.

        Compact when at most 3/4 of the slots are active and the slots dropped would still cost
        at least `COMPACT_MIN_FLOPS` (about one epoch program's compilation on a CPU): a new
        member count compiles a new program once, so small nets (tabular sets) never compact.
        Counts only, never timings: the same population compacts at the same epochs every run."""
        n_dev = self.n_devices
        new = -(-max(int(n_active), 1) // n_dev) * n_dev
        if n_active > 0.75 * n_slots or new >= n_slots or not self._saves_enough(n_slots, new, epochs_left):
            return n_slots
        return new

    def _saves_enough(self, n_slots: int, new: int, epochs_left: int) -> bool:
        """Whether dropping ``n_slots - new`` slots for `epochs_left` epochs saves at least
        `COMPACT_MIN_FLOPS` (about one compilation of the smaller program)."""
        return (n_slots - new) * epochs_left * self.member_epoch_flops() >= COMPACT_MIN_FLOPS

    def _compaction_plan(self, slot_active: np.ndarray, group_size: int, epochs_left: int):
        """``(sel, M')``: the slots (indices) a compaction keeps, in groups of ``M'`` (padding
        slots repeat a kept slot of their group), or None when compacting does not pay.

        Ungrouped (``group_size`` 1): `compaction_size`'s rule. Grouped: the groups with an
        active member, each cut to ``M'`` = the most active members of any group; compact when
        that is at most 3/4 of the slots and saves at least `COMPACT_MIN_FLOPS`."""
        n_slots, M = len(slot_active), int(group_size)
        if M == 1:
            new = self.compaction_size(n_slots, int(slot_active.sum()), epochs_left)
            if new >= n_slots:
                return None
            keep = np.flatnonzero(slot_active)
            return np.concatenate([keep, np.full(new - len(keep), keep[-1])]), 1
        act = slot_active.reshape(-1, M)
        counts = act.sum(1)
        M2 = int(counts.max())
        groups = np.flatnonzero(counts)
        new = len(groups) * M2
        if new > 0.75 * n_slots or not self._saves_enough(n_slots, new, epochs_left):
            return None
        sel = []
        for g in groups:
            keep = g * M + np.flatnonzero(act[g])
            sel += [*keep, *[keep[-1]] * (M2 - len(keep))]
        return np.asarray(sel), M2

    def _fit_chunk(
        self,
        seeds,
        init,
        masks,
        slot_member,
        epochs,
        target,
        data=None,
        *,
        eval_test=True,
        compact=False,
        group_size=1,
        checkpoint=None,
        checkpoint_every_s=60.0,
    ):
        """Train one chunk (``C`` slots; `data`: the epoch's data argument, `_data`, one entry per
        group of `group_size` slots with per-member data) -> host results of its members.

        The compiled population has slots; ``slot_member[j]`` is the chunk member (``0 .. R-1``)
        in slot ``j`` (-1: padding, never active); results come in member order. Compaction
        gathers the slots of the unfrozen members (and padding copies of them to fill whole
        groups / device groups) into a smaller population; the params of the members left
        behind are kept on the host.

        checkpoint: a `jaxprune.checkpoints.PopulationCheckpointer` for this chunk (or None):
        the state is saved at epoch ends at most every `checkpoint_every_s` seconds and when
        the chunk ends; training continues from its newest checkpoint, in the same layout and
        programs, so the results equal an uninterrupted run's."""
        data0 = self._data() if data is None else data
        slot_member = np.asarray(slot_member)
        R = int(slot_member.max()) + 1
        params, opt_state = self.initial_state(init, masks)
        st = {  # the chunk's whole state: device arrays (params, opt_state, seeds) and bookkeeping
            "params": params,
            "opt_state": opt_state,
            "seeds": jnp.asarray(seeds, jnp.int32),
            "slot_member": slot_member,
            "data_rows": np.arange(len(slot_member) // int(group_size)),  # each group's row of data0
            "active": np.ones(R, bool),  # per chunk member; padding slots never count as active
            "trained": np.zeros(R, np.int64),
            # host params of members dropped by a compaction (valid where final_set)
            "final": jax.tree.map(lambda a: np.zeros((R, *a.shape[1:]), a.dtype), params),
            "final_set": np.zeros(R, bool),
            "hist": {k: np.full((R, epochs), np.nan) for k in ("loss", "train_accuracy", "test_accuracy")},
            # the accuracy of an untrained member (a run of 0 epochs), as Trainer reports NaN for it
            "train_acc": np.full(R, np.nan),
            "test_acc": np.full(R, np.nan),
        }
        M, epoch, done, restored = int(group_size), 0, False, None
        if checkpoint is not None:

            def like(meta):  # the state's shapes after the layout the meta records
                slots = int(meta["slots"])
                resize = lambda a: np.zeros((slots, *np.shape(a)[1:]), np.asarray(a).dtype)  # noqa: E731
                dev = jax.tree.map(resize, {k: st[k] for k in ("params", "opt_state", "seeds", "slot_member")})
                return {**st, **dev, "data_rows": np.zeros(slots // int(meta["group_size"]), np.int64)}

            restored = checkpoint.restore_latest(like)
            if restored is not None:
                st, meta = restored
                M, epoch, done = int(meta["group_size"]), int(meta["epoch"]), bool(meta["done"])
        compile_s = 0.0

        def group_data():
            """The splits of the groups in the current layout (per-member data: one a group)."""
            rows = functools.partial(_gather_members, sel=jnp.asarray(st["data_rows"]))
            return self._shard(jax.tree.map(rows, data0))

        # a restored layout may have fewer groups (compactions) than the chunk started with
        data = group_data() if self.per_member_data and restored is not None else data0
        params, opt_state, seeds_d = self._shard((st["params"], st["opt_state"], jnp.asarray(st["seeds"])))
        slot_member, active = st["slot_member"], st["active"]
        last_save = time.perf_counter()

        def keep_final(slots):
            """Copy the params of the members in `slots` to the host (once per member)."""
            host = jax.device_get(params)
            for j in slots:
                i = slot_member[j]
                if i >= 0 and not st["final_set"][i]:
                    for f, h in zip(jax.tree.leaves(st["final"]), jax.tree.leaves(host)):
                        f[i] = h[j]
                    st["final_set"][i] = True

        def save(is_done):
            host = jax.device_get({"params": params, "opt_state": opt_state, "seeds": seeds_d})
            state = {**st, **host, "slot_member": slot_member, "active": active}
            meta = {"epoch": epoch, "group_size": M, "slots": len(slot_member), "done": is_done}
            # the final save's step lies beyond every epoch's, so it never collides with one
            checkpoint.save(epochs + 1 if is_done else epoch, state, meta)

        while not done and epoch < epochs and active.any():
            slot_active = (slot_member >= 0) & active[np.maximum(slot_member, 0)]
            plan = self._compaction_plan(slot_active, M, epochs - epoch) if compact else None
            if plan is not None:
                sel, M2 = plan
                keep_final(np.flatnonzero(~slot_active))  # the members left behind
                gather = functools.partial(_gather_members, sel=jnp.asarray(sel))
                params, opt_state, seeds_d = self._shard(jax.tree.map(gather, (params, opt_state, seeds_d)))
                if self.per_member_data:  # one split per group: the kept groups' splits
                    st["data_rows"] = st["data_rows"][sel[::M2] // M]
                    data = group_data()
                # padding slots of the new layout repeat a kept slot: inactive
                first = np.r_[True, sel[1:] != sel[:-1]]
                slot_member = np.where(first & slot_active[sel], slot_member[sel], -1)
                M = M2
                slot_active = slot_member >= 0
            active_d = self._shard(jnp.asarray(slot_active))
            fn, cs = self._epoch_fn(params, opt_state, seeds_d, active_d, jnp.int32(epoch), data, eval_test, M)
            compile_s += cs
            params, opt_state, losses, _, tr, te = fn(params, opt_state, seeds_d, active_d, jnp.int32(epoch), data)
            tr, te, losses = np.asarray(tr), np.asarray(te), np.asarray(losses)
            for j in np.flatnonzero(slot_active):
                i = slot_member[j]
                # float(np.mean(...)) of the float32 per-step losses: as Trainer.fit's history
                st["hist"]["loss"][i, epoch] = float(np.mean(losses[j]))
                st["hist"]["train_accuracy"][i, epoch] = float(tr[j])
                st["hist"]["test_accuracy"][i, epoch] = float(te[j])
                st["train_acc"][i], st["test_acc"][i] = float(tr[j]), float(te[j])
                st["trained"][i] = epoch + 1
                # Python floats compared as in Trainer.fit, so members stop where a lone net stops
                if target is not None and float(tr[j]) >= target:
                    active[i] = False
            epoch += 1
            if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every_s:
                save(False)
                last_save = time.perf_counter()
        if not done:
            keep_final(range(len(slot_member)))
            if checkpoint is not None:
                save(True)
        train_acc, trained = st["train_acc"], st["trained"]
        reached = (np.array([float(a) >= target for a in train_acc]) if target is not None else np.zeros(R, bool)) & (
            trained > 0
        )
        return {
            "params": st["final"],
            "epochs": trained,
            "reached": reached,
            "epochs_to_threshold": np.where(reached, trained, -1),
            "train_accuracy": train_acc,
            "test_accuracy": st["test_acc"],
            "history": {k: v[:, :epoch] for k, v in st["hist"].items()},
        }, compile_s


def retrain_population(
    dataset,
    cfg,
    init_params,
    masks,
    seeds,
    *,
    memory_budget_bytes: float | None = None,
    test_history: bool = True,
    compact: bool = True,
    checkpoint_dir=None,
) -> tuple[list[dict], PopulationResult]:
    """`jaxprune.pipeline.retrain` for many (init params, mask, seed) members at once.

    dataset: a `jaxprune.data.Dataset` shared by all members, or a list of P datasets, one per
    member (each member trains and is evaluated on its own split; the same object given for
    several members is stored once on the host; the splits must share their shapes);
    cfg: a `jaxprune.pipeline.LegcnetConfig` (its ``train``
    config, ``target_accuracy`` and ``retrain_epochs``). init_params / masks: lists of P pytrees
    (or stacked / one for all); seeds: ``(P,)`` ints. Returns one record per member with
    `retrain`'s keys (test metrics, sparsity, FLOPs, epochs, steps, threshold; ``seconds`` is the
    member's share of the population's wall time) and the `PopulationResult`. test_history /
    compact / checkpoint_dir: as for `PopulationTrainer.fit` (the records' test metrics come from
    the final params either way).
    """
    # lazy: pipeline may import this module
    from jaxprune.pipeline import evaluate_record

    if isinstance(dataset, (list, tuple)):
        if len(dataset) != len(np.atleast_1d(seeds)):
            raise ValueError(f"{len(dataset)} datasets given for {len(np.atleast_1d(seeds))} members")
        unique, data_index = [], []
        for ds in dataset:
            hit = next((j for j, u in enumerate(unique) if u is ds), None)
            if hit is None:
                unique.append(ds)
                hit = len(unique) - 1
            data_index.append(hit)
        shapes = {(u.x_train.shape, u.x_test.shape, u.n_classes) for u in unique}
        if len(shapes) != 1:
            raise ValueError(f"per-member datasets must share split shapes and classes, got {sorted(shapes)}")
        per_member = list(dataset)
        trainer = PopulationTrainer(
            cfg.train,
            np.stack([u.x_train for u in unique]),
            np.stack([u.y_train for u in unique]),
            n_classes=unique[0].n_classes,
            x_test=np.stack([u.x_test for u in unique]),
            y_test=np.stack([u.y_test for u in unique]),
            data_index=data_index,
        )
    else:
        per_member = None
        trainer = PopulationTrainer(
            cfg.train,
            dataset.x_train,
            dataset.y_train,
            n_classes=dataset.n_classes,
            x_test=dataset.x_test,
            y_test=dataset.y_test,
        )
    res = trainer.fit(
        seeds,
        init_params=init_params,
        masks=masks,
        epochs=cfg.retrain_epochs,
        target_train_accuracy=cfg.target_accuracy,
        memory_budget_bytes=memory_budget_bytes,
        test_history=test_history,
        compact=compact,
        checkpoint_dir=checkpoint_dir,
    )
    stacked_masks = trainer._as_members(masks, res.n_members, "masks", None)
    records = []
    for i in range(res.n_members):
        mask = _take(stacked_masks, i)
        ds = dataset if per_member is None else per_member[i]
        record = evaluate_record(trainer, res.member_params(i), mask, ds)
        reached = bool(res.reached[i])
        record.update(
            train_accuracy=float(res.train_accuracy[i]),
            epochs=int(res.epochs[i]),
            steps=int(res.steps[i]),
            reached_threshold=reached,
            epochs_to_threshold=int(res.epochs[i]) if reached else None,
            steps_to_threshold=int(res.steps[i]) if reached else None,
            seconds=res.seconds / res.n_members,
        )
        records.append(record)
    return records, res
