"""LEGCNet end to end: dense training with on-device Lyapunov windows -> Granger -> masks ->
sparse retraining of LEGCNet-FT / -PT and of random / magnitude baselines at the same sparsity.

The only module that knows every stage (docs/architecture.md, docs/method.md). Each stage is a
function from arrays and a config to a frozen result; `run_seed` / `run` / `analyze_train_dir`
orchestrate them and hand every file to `jaxprune.rundir`. `run` is stage-major (per seed, the
seed fixes the data split, the initial weights and the batch order, hence the masks):

1. dense, ALL seeds as one population (`dense_population_stage` ->
   `jaxprune.dense_population`, one `jaxprune.stages.DenseRun` per seed in seed_K/dense.npz):
   the dense nets train for ``train.epochs`` in one vmapped epoch; every completed window of the
   weight trajectory goes through the Lyapunov kernel on the host, the members side by side, so
   only the per-window exponents ``(n_windows, n_weights)`` and the risk series are kept. A small
   random sample of weights also keeps its raw windows, for `jaxprune verify`. (`fit_dense` /
   `train_dense`: the same stage for one seed through a single `Trainer`, for other callers.)
2. select, per seed (`jaxprune.select.analyze` -> `jaxprune.select.Analysis`): per weight,
   Granger test (LE series -> risk series), min p over lags, mask. LEGCNet-FT uses every window;
   LEGCNet-PT the first ``pt_windows`` (decided during training, as soon as that window
   completes); random / magnitude baselines at their sparsity.
3. retrain, ALL seeds' masks as one population (`retrain_seeds_population` ->
   `jaxprune.population.retrain_population`, one compiled epoch; each member on its seed's
   split, from its seed's initial weights, in its seed's batch order): each mask (and an
   all-True mask for ``dense``) trains masked until the training accuracy reaches
   ``target_accuracy`` or ``max_retrain_epochs`` pass; then test metrics. (`retrain_mask`: one
   mask through a single `Trainer`; `retrain_seed_population`: one seed's masks.)

A seed's results depend on the run's seed list at float32 rounding level (the populations'
member counts change how XLA rounds vmapped matmuls; docs/population.md).

Finished stages are files (``.npz`` / ``.json``); a population that was killed trains again
from scratch (the same population, so a resumed run ends with identical masks and metrics).
Parity mode (float64 Lyapunov) runs inside a scoped ``jax.enable_x64`` block: the global flag
is left as the caller set it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import distributed, lyapunov, metrics, prune, rundir, sharding
from jaxprune import select as select_stage

# the config and the select stage moved to their own modules; their names stay importable here
from jaxprune.config import TABULAR_PRESETS, LegcnetConfig, preset  # noqa: F401
from jaxprune.models import predict_labels
from jaxprune.select import (  # noqa: F401
    LE_UNDEFINED,
    Analysis,
    GrangerOutcome,
    correction_table,
    effective_maxlag,
    granger_on_le,
    mask_from_granger,
)
from jaxprune.select import budget_bytes as _budget_bytes
from jaxprune.select import use_sharding as _use_sharding
from jaxprune.stages import DenseRun, Retrained
from jaxprune.train import TrainConfig, Trainer, TrainingDiverged, load_params, save_metrics

METHODS = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude")


def x64_scope(cfg: LegcnetConfig):
    """``jax.enable_x64(True)`` for parity mode (float64 Lyapunov), else a no-op context: the
    global flag stays as the caller set it."""
    return jax.enable_x64(True) if cfg.lyapunov.le_mode == "parity" else contextlib.nullcontext()


# ------------------------------------------------------------------------------ dense stage
def le_window_fn(cfg: LegcnetConfig, sample_idx: np.ndarray) -> Callable:
    """The window function: window ``(window, n_weights)`` float32 ->
    ``{"le": (n_weights,), "status": (n_weights,) int8, "sample": (window, n_sample) float32}``
    (no ``"sample"`` when `sample_idx` is empty).

    `Trainer` calls it outside the compiled epoch, once per completed window: there
    `lyapunov.window_le` runs the standalone kernel's lane blocks (one small host sync per
    window); under an outer jit it still works (lane blocks with an on-device path choice).
    The float32 weights are exact in float64, so parity mode casts them (needs x64).
    """
    ly = cfg.lyapunov
    params = ly.params
    dtype = jnp.float64 if ly.le_mode == "parity" else jnp.float32
    sample_idx = jnp.asarray(sample_idx, jnp.int32)
    sharded = _use_sharding(cfg) and sharding.window_le_fn(
        memory_budget_bytes=_budget_bytes(cfg), window=cfg.train.window, params=params, mode=ly.le_mode
    )

    def fn(win):
        if sharded:  # weight axis over all devices, chunked to the memory budget
            slope, status = sharded(win)
        else:
            slope, status = lyapunov.window_le(win.astype(dtype), params=params, mode=ly.le_mode)
        out = {"le": slope, "status": status.astype(jnp.int8)}
        if sample_idx.size:  # orbax cannot checkpoint zero-size arrays
            out["sample"] = win[:, sample_idx]
        return out

    return fn


def verify_sample_indices(n_weights: int, k: int, seed: int) -> np.ndarray:
    """The weights whose raw windows are kept for `verify` (sorted, seeded): ``(min(k,
    n_weights),)`` flat indices."""
    rng = np.random.default_rng([seed, 0x5EED])
    return np.sort(rng.choice(n_weights, size=min(k, n_weights), replace=False))


def fit_dense(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    *,
    checkpoint_dir=None,
    resume: bool = False,
    progress: bool = False,
    on_pt: Callable | None = None,
    checkpoint_every_s: float = 30.0,
) -> DenseRun:
    """The dense stage: dense training, each completed window through the Lyapunov kernel
    after its epoch (`Trainer.completed_windows`).

    on_pt(le ``(pt_windows, n_weights)``, risk ``(pt_windows,)``, end_step): called once the
    PT window completes (LEGCNet-PT is decidable then, while training goes on).
    checkpoint_dir / resume: `Trainer`'s orbax checkpoints. Returns a `DenseRun` (no digest).
    """
    tcfg = cfg.train.replace(seed=seed)
    probe = Trainer(tcfg, dataset.x_train[:1], dataset.y_train[:1], n_classes=dataset.n_classes)
    sample = verify_sample_indices(probe.n_weights, cfg.verify_sample, seed)
    pt_windows = cfg.selection.pt_windows
    pt_state = {}

    def on_window(win):
        pt_state.setdefault("le", []).append(np.asarray(win.value["le"]))
        pt_state.setdefault("risk", []).append(win.risk)
        if win.index + 1 == pt_windows and on_pt is not None:
            # LEGCNet-PT is decidable now, while training goes on.
            on_pt(np.stack(pt_state["le"]), np.asarray(pt_state["risk"]), win.end_step)

    trainer = Trainer(
        tcfg,
        dataset.x_train,
        dataset.y_train,
        n_classes=dataset.n_classes,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        window_fn=le_window_fn(cfg, sample),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_s=checkpoint_every_s,
    )
    t0 = time.perf_counter()
    try:
        res = trainer.fit(resume=resume, on_window=on_window, progress=progress, progress_desc=f"seed {seed} dense+LE")
    except TrainingDiverged as err:
        raise TrainingDiverged(f"seed {seed}, dense stage: {err}") from None
    seconds = time.perf_counter() - t0
    outputs = res.window_outputs
    if outputs is None or len(res.window_end_steps) == 0:
        raise ValueError(
            f"training made {res.steps} steps: fewer than one window of {tcfg.window}; "
            "train longer or use a shorter --window"
        )
    hist_acc = np.asarray(res.history["train_accuracy"])
    reached = np.nonzero(hist_acc >= cfg.retrain.target_accuracy)[0]
    return DenseRun(
        le=outputs["le"],
        le_status=outputs["status"],
        # verify_sample=0 records no raw windows (the window function then returns no "sample")
        sample_windows=outputs.get("sample", np.zeros((len(res.window_end_steps), tcfg.window, 0), np.float32)),
        sample_idx=sample,
        risk=res.risk,
        end_steps=res.window_end_steps,
        train_accuracy_history=hist_acc,
        loss_history=np.asarray(res.history["loss"]),
        epoch_seconds=np.asarray(res.epoch_seconds),
        seconds=float(seconds),
        train_accuracy=float(res.train_accuracy),
        test_accuracy=float(res.test_accuracy),
        dense_epochs_to_threshold=int(reached[0] + 1 if reached.size else -1),
        steps=int(res.steps),
        epochs=int(res.epochs),
        init_leaves=tuple(jax.tree.leaves(res.init_params)),
        param_leaves=tuple(jax.tree.leaves(res.params)),
    )


def train_dense(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    seed_dir: Path,
    *,
    resume: bool,
    progress: bool,
    on_pt: Callable | None = None,
    checkpoint_every_s: float = 30.0,
    digest: str | None = None,
) -> DenseRun:
    """The dense stage with its file: `fit_dense`, cached in ``seed_dir/dense.npz``.

    digest: the stage's digest (`dense_stage_digest`), stored in dense.npz (``run_digest``): a
    dense.npz with this digest is reused (it was computed from the same inputs, e.g. copied by
    ``run(reuse_dense_from=...)``); one with another digest, or its checkpoints, never is.
    Without a digest, a dense.npz is reused only when `resume`."""
    seed_dir = Path(seed_dir)
    out = seed_dir / "dense.npz"
    if out.exists() and (resume or digest is not None):
        saved = rundir.load_dense_run(out, digest)
        if saved is not None:
            return saved
        resume = False  # another run's stage: recompute it from scratch
    if not resume:
        rundir.discard_checkpoints(seed_dir / "ckpt_train")  # never continue old checkpoints
    dense = fit_dense(
        dataset,
        cfg,
        seed,
        checkpoint_dir=seed_dir / "ckpt_train",
        resume=resume,
        progress=progress,
        on_pt=on_pt,
        checkpoint_every_s=checkpoint_every_s,
    )
    if digest is not None:
        dense = dataclasses.replace(dense, run_digest=digest)
    rundir.save_dense(out, dense)
    return dense


# ------------------------------------------------------------------------------ retrain stage
def evaluate_record(trainer: Trainer, params, mask, dataset) -> dict:
    """Test metrics, sparsity and FLOPs of a (sparse) net."""
    logits = trainer.apply(params, jnp.asarray(dataset.x_test))
    y_pred = np.asarray(predict_labels(logits))
    cm = metrics.classification_metrics(jnp.asarray(dataset.y_test), jnp.asarray(y_pred), dataset.n_classes)
    summary = prune.mask_summary(mask)
    flops = prune.sparse_flops(mask)
    return {
        "test_accuracy": float(cm["accuracy"]),
        "macro_precision": float(cm["macro_precision"]),
        "macro_recall": float(cm["macro_recall"]),
        "macro_f1": float(cm["macro_f1"]),
        "sparsity": float(summary.sparsity),
        "pruned_per_layer": [int(v) for v in summary.pruned],
        "kept_per_layer": [int(v) for v in summary.kept],
        "flops": flops.total,
        "macs": flops.total_macs,
    }


def retrain(
    dataset,
    cfg: LegcnetConfig,
    init_params,
    mask,
    *,
    seed: int | None = None,
    checkpoint_dir=None,
    resume=False,
    progress=False,
    desc="retrain",
    checkpoint_every_s: float = 30.0,
    epoch_fn_cache: dict | None = None,
) -> tuple[dict, Any, dict]:
    """Train from `init_params` with `mask` applied (pruned weights stay exactly 0) until the
    training accuracy reaches ``cfg.target_accuracy`` or ``cfg.retrain_epochs`` pass.

    seed: the run's seed (fixes the batch order, as for the dense net); None keeps
    ``cfg.train.seed``. Returns (record, params, history) with history the per-epoch
    ``train_accuracy`` / ``loss`` lists of `Trainer.fit`. epoch_fn_cache: a dict shared by the
    retrainings of one seed, so they run one compiled epoch (the mask is data in the optimizer
    state; see `Trainer`).
    """
    from jaxprune.train import make_optimizer

    tcfg = cfg.train if seed is None else cfg.train.replace(seed=int(seed))
    tx = prune.masked(make_optimizer(tcfg), mask)
    trainer = Trainer(
        tcfg,
        dataset.x_train,
        dataset.y_train,
        n_classes=dataset.n_classes,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        tx=tx,
        init_params=prune.apply_mask(init_params, mask),
        checkpoint_dir=checkpoint_dir,
        checkpoint_every_s=checkpoint_every_s,
        epoch_fn_cache=epoch_fn_cache,
    )
    t0 = time.perf_counter()
    try:
        res = trainer.fit(
            epochs=cfg.retrain_epochs,
            resume=resume,
            target_train_accuracy=cfg.retrain.target_accuracy,
            progress=progress,
            progress_desc=desc,
        )
    except TrainingDiverged as err:
        raise TrainingDiverged(f"{desc} (retraining): {err}") from None
    record = evaluate_record(trainer, res.params, mask, dataset)
    reached = bool(res.history["reached_target"])
    record.update(
        train_accuracy=float(res.train_accuracy),
        epochs=int(res.epochs),
        steps=int(res.steps),
        reached_threshold=reached,
        epochs_to_threshold=int(res.epochs) if reached else None,
        steps_to_threshold=int(res.steps) if reached else None,
        seconds=time.perf_counter() - t0,
    )
    return record, res.params, res.history


def retrain_mask(dataset, cfg: LegcnetConfig, init_params, mask, **kwargs) -> Retrained:
    """The retrain stage as a frozen `Retrained` (`retrain`'s keywords)."""
    return Retrained(*retrain(dataset, cfg, init_params, mask, **kwargs))


# ------------------------------------------------------------------------------ select stage
def analyze_dense(dense: DenseRun, params_like, cfg: LegcnetConfig, seed: int) -> Analysis:
    """The select stage on a `DenseRun` (or dense.npz's arrays): `jaxprune.select.analyze`
    with the trained params rebuilt like `params_like`. The result also reads as the dict this
    function returned before (``analysis["masks"]``)."""
    params = load_params(dense, params_like, "params")
    return select_stage.analyze(np.asarray(dense["le"]), np.asarray(dense["risk"]), params, cfg, seed=seed)


def dense_stage_digest(cfg: LegcnetConfig, dataset, seed: int) -> str:
    """sha256 of everything stage 1 depends on: the training config and seed, the Lyapunov
    settings, the verify sample size, the data arrays and the package version (not the
    analysis settings: runs that differ only there share their dense stage)."""
    import hashlib
    import json

    from jaxprune import __version__

    ly = cfg.lyapunov
    # the flat key names of the first release: dense stages computed before the config was
    # grouped keep their digest (and are reused)
    key = {
        "train": cfg.train.replace(seed=int(seed)).to_dict(),
        "le_mode": ly.le_mode,
        "m": ly.m,
        "d": ly.d,
        "theiler": ly.theiler,
        "s": ly.s,
        "r": ly.r,
        "quantize": ly.quantize,
        "verify_sample": cfg.verify_sample,
        "data_sha256": rundir.data_digest(dataset),
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(rundir.json_safe(key), sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------ one seed
def _json_load(path: Path):
    return rundir.read_json(path)  # kept for callers of the old private name


def _save_npz(path: Path, **arrays) -> None:
    rundir.save_npz(path, **arrays)  # kept for callers of the old private name


_reuse_dense = rundir.reuse_dense  # kept for callers of the old private name
_save_analysis = rundir.save_analysis  # kept for callers of the old private name


def dense_population_stage(
    datas: Sequence,
    cfg: LegcnetConfig,
    seeds: Sequence[int],
    out_dir: Path,
    *,
    resume: bool = False,
    digest: str | None = None,
    memory_budget_bytes: float | None = None,
    progress: bool = False,
) -> tuple[dict[int, DenseRun], dict[int, dict], dict]:
    """The dense stage of all `seeds` as ONE population (`jaxprune.dense_population`), cached
    per seed in ``seed_K/dense.npz`` with the rules of `train_dense`.

    datas: per seed its data set. A seed's dense.npz is reused when it carries the seed's stage
    digest (`dense_stage_digest`; with `digest` None: when `resume`). When any seed needs its
    dense stage, ALL `seeds` train as one population (a member's float32 rounding depends on
    the member count, so only the run's own population reproduces its results) and the files
    that were not reusable are written when it has finished. No checkpoints inside it: a
    killed population is recomputed from scratch on resume, to the identical result.
    Returns ({seed: DenseRun}, {seed: PT decision made during training}, population info
    ``{"seconds", "members", "chunk_size"}``, members 0 when every seed was reused).
    """
    from jaxprune.dense_population import fit_dense_population

    dense: dict[int, DenseRun] = {}
    need, digests = [], {}
    for seed, data in zip(seeds, datas, strict=True):
        seed_dir = rundir.make_seed_dir(out_dir, seed)
        digests[seed] = None if digest is None else dense_stage_digest(cfg, data, seed)
        out = seed_dir / "dense.npz"
        if out.exists() and (resume or digests[seed] is not None):
            saved = rundir.load_dense_run(out, digests[seed])
            if saved is not None:
                dense[seed] = saved
                continue
        rundir.discard_checkpoints(seed_dir / "ckpt_train")  # never continue old checkpoints
        need.append(seed)
    pt_decisions: dict[int, dict] = {}
    info = {"seconds": 0.0, "members": 0, "chunk_size": 0}
    if not need:
        return dense, pt_decisions, info
    pt_windows = cfg.selection.pt_windows
    alpha = cfg.selection.alpha
    seeds = list(seeds)
    series: dict[int, tuple[list, list]] = {i: ([], []) for i in range(len(seeds))}

    def on_window(i, k, le, risk, end_step):
        if seeds[i] not in need:
            return
        les, risks = series[i]
        les.append(np.asarray(le))
        risks.append(risk)
        if k + 1 == pt_windows:
            # LEGCNet-PT is decidable now, while training goes on
            t0 = time.perf_counter()
            outcome = granger_on_le(np.stack(les), np.asarray(risks), cfg)
            pt_decisions[seeds[i]] = dict(
                step=int(end_step),
                seconds=time.perf_counter() - t0,
                pruned_pending=int(np.sum(np.nan_to_num(outcome.pmin, nan=0) >= alpha)),
            )

    budget = _budget_bytes(cfg) if memory_budget_bytes is None else memory_budget_bytes
    # the population is always the run's whole seed list: the vmapped matmuls round by member
    # count, so a seed's result depends on its population, and only the same one reproduces it
    # (a resumed run that lost one seed's file recomputes all and rewrites only that file)
    runs, pop = fit_dense_population(
        list(datas), cfg, list(seeds), on_window=on_window, memory_budget_bytes=budget, progress=progress
    )
    info = {k: pop[k] for k in ("seconds", "le_seconds", "members", "chunk_size")}
    for seed, run_ in zip(seeds, runs, strict=True):
        if seed not in need:
            continue
        if digests[seed] is not None:
            run_ = dataclasses.replace(run_, run_digest=digests[seed])
        rundir.save_dense(rundir.make_seed_dir(out_dir, seed) / "dense.npz", run_)
        dense[seed] = run_
    return dense, pt_decisions, info


def _finished_records(out_dir: Path, seed: int, names: Sequence[str], resume: bool, digest: str | None) -> dict:
    """The finished retraining records of `seed` among `names` (on resume, with this run's
    `digest` and the saved net present): {name: record}."""
    seed_dir = rundir.seed_dir(out_dir, seed)
    done: dict[str, dict] = {}
    for name in names:
        rec = rundir.read_json(seed_dir / f"retrain_{name}.json") if resume else None
        if rec is not None and digest is not None and rec.pop("run_digest", None) != digest:
            rec = None  # another run's record
        if rec is not None and rundir.retrained_path(out_dir, seed, name).exists():
            done[name] = rec
    return done


def _split_key(dataset) -> tuple:
    """What members of one population must share: split shapes and class count."""
    return (np.shape(dataset.x_train), np.shape(dataset.x_test), int(dataset.n_classes))


def retrain_seeds_population(
    jobs: Sequence[tuple],
    cfg: LegcnetConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    digest: str | None = None,
    memory_budget_bytes: float | None = None,
) -> tuple[dict[int, list[dict]], dict[int, dict]]:
    """The retraining of every seed's masks as ONE population (`population.retrain_population`:
    one compiled epoch for all members, masks, seeds and data splits are data); writes
    ``retrain_<name>.json`` and ``retrained_<name>.npz`` per seed and mask.

    jobs: per seed ``(seed, dataset, init_params, {name: mask})``: the members are the masks of
    every seed in this order, each trained from its seed's initial weights, in its seed's batch
    order, on its seed's split (one data set object for all seeds is stored once and shared).
    Seeds whose splits differ in shape (a data set of another size) form their own population.
    memory_budget_bytes: per-device bytes for the population (default `_budget_bytes(cfg)`;
    None: no budget); one that does not fit is split into equal chunks, each the same program.

    Resume: the finished records (with this run's `digest`, their saved net present) are reused.
    When every member's record is there, nothing trains. When any is missing, the WHOLE joint
    population retrains (its member count and chunking shape the vmapped matmuls' float32
    rounding, so only the same population reproduces the uninterrupted run) and only the
    missing files are written; the reused records stay as they were.
    Returns ({seed: records in its masks' order}, {seed: {"seconds", "members"}} of the
    population that trained it: its wall seconds and member count, 0 / 0 when all were reused).
    Each record's ``seconds`` is its share of the population's wall time.
    """
    from jaxprune.population import retrain_population

    budget = _budget_bytes(cfg) if memory_budget_bytes is None else memory_budget_bytes
    jobs = [(int(s), ds, init, dict(masks)) for s, ds, init, masks in jobs]
    # orbax checkpoints of the population: a resumed run continues an interrupted population
    # (only the same population, by its fingerprint); a fresh one never sees old ones
    ckpt = Path(out_dir) / rundir.POPULATION_CHECKPOINTS / "retrain"
    if not resume:
        rundir.discard_population_checkpoints(out_dir, "retrain")
    if len({s for s, *_ in jobs}) != len(jobs):
        raise ValueError(f"seeds repeat: {[s for s, *_ in jobs]}")
    done = {s: _finished_records(out_dir, s, list(masks), resume, digest) for s, _, _, masks in jobs}
    info = {s: {"seconds": 0.0, "members": 0} for s, *_ in jobs}
    groups: dict[tuple, list] = {}
    for job in jobs:
        groups.setdefault(_split_key(job[1]), []).append(job)
    for group in groups.values():
        if all(len(done[s]) == len(masks) for s, _, _, masks in group):
            continue  # every member finished: reuse
        members = [(s, ds, init, name, mask) for s, ds, init, masks in group for name, mask in masks.items()]
        datasets = [m[1] for m in members]
        # one data set object for every member: shared splits (as a single seed always had)
        shared = all(d is datasets[0] for d in datasets)
        t0 = time.perf_counter()
        recs, res = retrain_population(
            datasets[0] if shared else datasets,
            cfg,
            [m[2] for m in members],
            [m[4] for m in members],
            [m[0] for m in members],
            memory_budget_bytes=budget,
            # the run keeps per-epoch training accuracy and loss (rundir.save_retrained); the test
            # metrics come from the final params: no test pass after every epoch
            test_history=False,
            checkpoint_dir=ckpt,
        )
        seconds = time.perf_counter() - t0
        for i, (seed, _, _, name, _) in enumerate(members):
            info[seed] = {"seconds": seconds, "members": len(members)}
            if name in done[seed]:
                continue
            rec = recs[i]
            seed_dir = rundir.make_seed_dir(out_dir, seed)
            history = {**res.member_history(i), "reached_target": bool(res.reached[i])}
            # the sparse net's kernels and per-epoch curves, for the spectra and the figures
            rundir.save_retrained(out_dir, seed, name, res.member_params(i), history, rec)
            baseline = name.split("_")[0] in ("random", "magnitude")
            method = name.split("_")[0] if baseline else name
            rec.update(
                method=method,
                seed=seed,
                name=name,
                matched_to=("legcnet_pt" if name.endswith("_pt") else "legcnet_ft") if baseline else None,
            )
            rundir.write_json(seed_dir / f"retrain_{name}.json", {**rec, "run_digest": digest} if digest else rec)
            done[seed][name] = rec
    rundir.discard_population_checkpoints(out_dir, "retrain")
    return {s: [done[s][n] for n in masks] for s, _, _, masks in jobs}, info


def retrain_seed_population(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    out_dir: Path,
    init_params,
    masks: dict,
    *,
    resume: bool = False,
    digest: str | None = None,
) -> tuple[list[dict], float]:
    """The retraining of one seed's masks as ONE population: `retrain_seeds_population` with
    one seed (its resume rules: a missing record retrains the whole population, only missing
    files are written). Returns (records in `masks` order, the population's wall seconds, 0
    when all were reused)."""
    recs, info = retrain_seeds_population(
        [(seed, dataset, init_params, masks)], cfg, out_dir, resume=resume, digest=digest
    )
    return recs[int(seed)], info[int(seed)]["seconds"]


def _select_seed(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    out_dir: Path,
    dense: DenseRun,
    population: dict,
) -> dict:
    """The select stage of one seed whose dense stage is done (analysis.npz written); returns
    the state `_finish_seed` needs: the analysis, the initial params, the timings so far."""
    seed_dir = rundir.make_seed_dir(out_dir, seed)
    timings = rundir.read_json(seed_dir / "timings.json") or {}
    timings.setdefault("train_and_le", float(dense.seconds))  # the member's share
    if population.get("members"):
        timings["dense_population_seconds"] = float(population["seconds"])
        timings["dense_population_members"] = int(population["members"])
    _, params_like = _init_params(dataset, cfg, seed)
    analysis = analyze_dense(dense, params_like, cfg, seed)
    timings["granger_and_masks"] = float(sum(analysis.seconds.values()))
    rundir.save_analysis(seed_dir / "analysis.npz", analysis)
    init_params = load_params(dense, params_like, "init")
    return {"analysis": analysis, "init_params": init_params, "timings": timings}


def _finish_seed(
    seed: int,
    out_dir: Path,
    dense: DenseRun,
    pt_decision: dict | None,
    population: dict,
    selected: dict,
    records: list[dict],
    retrain_info: dict,
) -> dict:
    """timings.json and the results of one seed whose retraining is done."""
    timings, analysis = selected["timings"], selected["analysis"]
    timings["retrain"] = float(sum(r["seconds"] for r in records))  # the seed's share
    if retrain_info["seconds"]:  # the population that retrained it (all seeds' masks in `run`)
        timings["retrain_population_seconds"] = float(retrain_info["seconds"])
        timings["retrain_population_members"] = int(retrain_info["members"])
    if population.get("members") and "le_seconds" in population:
        # measured: the member's share of the host-side Lyapunov kernel's wall time
        timings["le_estimate"] = float(population["le_seconds"]) / int(population["members"])
    elif "le_estimate" not in timings:  # no measurement (dense stage from elsewhere): estimate
        dense_rec = next(r for r in records if r["method"] == "dense")
        dense_seconds_per_epoch = dense_rec["seconds"] / max(dense_rec["epochs"], 1)
        timings["le_estimate"] = max(0.0, timings["train_and_le"] - dense_seconds_per_epoch * float(dense.epochs))
    rundir.write_json(rundir.make_seed_dir(out_dir, seed) / "timings.json", timings)
    summaries = {m: analysis.method_summary(m) for m in ("legcnet_ft", "legcnet_pt")}
    return {
        "seed": seed,
        "records": records,
        "summaries": summaries,
        "timings": timings,
        "pt_decided_during_training": pt_decision or None,
        "dense_full_run": {
            "train_accuracy": float(dense.train_accuracy),
            "test_accuracy": float(dense.test_accuracy),
            "epochs": int(dense.epochs),
            "steps": int(dense.steps),
            "epochs_to_threshold": int(dense.dense_epochs_to_threshold),
            "n_windows": dense.n_windows,
        },
    }


def _seeds_after_dense(
    datas: Sequence,
    cfg: LegcnetConfig,
    seeds: Sequence[int],
    out_dir: Path,
    dense: dict[int, DenseRun],
    pt: dict[int, dict],
    population: dict,
    *,
    resume: bool,
    digest: str | None,
) -> list[dict]:
    """Select and retrain stages of seeds whose dense stage is done: the select stage of every
    seed, then ALL seeds' masks retrained as one population (`retrain_seeds_population`); the
    seeds' results in `seeds` order."""
    seeds = [int(s) for s in seeds]
    selected = {
        seed: _select_seed(data, cfg, seed, out_dir, dense[seed], population)
        for seed, data in zip(seeds, datas, strict=True)
    }
    jobs = [
        (seed, data, selected[seed]["init_params"], dict(selected[seed]["analysis"].masks))
        for seed, data in zip(seeds, datas, strict=True)
    ]
    records, info = retrain_seeds_population(jobs, cfg, out_dir, resume=resume, digest=digest)
    return [
        _finish_seed(seed, out_dir, dense[seed], pt.get(seed), population, selected[seed], records[seed], info[seed])
        for seed in seeds
    ]


def _seed_after_dense(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    out_dir: Path,
    dense: DenseRun,
    pt_decision: dict | None,
    population: dict,
    *,
    resume: bool,
    digest: str | None,
) -> dict:
    """Select and retrain stages of one seed whose dense stage is done; the seed's results."""
    return _seeds_after_dense(
        [dataset],
        cfg,
        [seed],
        out_dir,
        {seed: dense},
        {seed: pt_decision} if pt_decision else {},
        population,
        resume=resume,
        digest=digest,
    )[0]


def run_seed(
    dataset,
    cfg: LegcnetConfig,
    seed: int,
    out_dir: Path,
    *,
    resume: bool = False,
    progress: bool = False,
    checkpoint_every_s: float = 30.0,
    digest: str | None = None,
) -> dict:
    """Dense -> select -> retraining for one seed; returns the seed's records and summaries.

    The same code path as `run`'s stage-major pipeline with a population of one seed (dense:
    `dense_population_stage`; retraining: `retrain_seed_population`). digest: the run's
    fingerprint digest; the retraining records carry it and one without it (another run's) is
    recomputed on resume. The dense stage carries `dense_stage_digest`. progress: a bar over
    the dense epochs; checkpoint_every_s is accepted for compatibility (the populations keep no
    checkpoints)."""
    del checkpoint_every_s
    dense, pt, pop = dense_population_stage(
        [dataset], cfg, [seed], out_dir, resume=resume, digest=digest, progress=progress
    )
    return _seed_after_dense(dataset, cfg, seed, out_dir, dense[seed], pt.get(seed), pop, resume=resume, digest=digest)


def _init_params(dataset, cfg: LegcnetConfig, seed: int):
    from jaxprune.models import init_mlp

    widths = (dataset.n_features, *cfg.train.hidden, dataset.n_classes)
    return init_mlp(widths, activation=cfg.train.activation, init=cfg.train.init, seed=seed)


# ------------------------------------------------------------------------------ many seeds


def check_window_count(dataset, cfg: LegcnetConfig) -> int:
    """The dense run's window count, or a ValueError when too few for a Granger test (checked
    before any training: a tiny data set would otherwise train to nothing)."""
    from jaxprune.train import steps_per_epoch, window_count

    t = cfg.train
    ly = cfg.lyapunov
    lyapunov._check_window(t.window, t.stride, ly.m, ly.d, ly.s, ly.theiler)
    steps = t.epochs * steps_per_epoch(len(dataset.y_train), t.batch_size)
    n = window_count(steps, t.window, t.stride)
    need = 5 + (1 if cfg.granger.stationarity else 0)
    if len(dataset.y_test) == 0:
        raise ValueError(
            f"{dataset.name}: the test split is empty ({len(dataset.y_train)} "
            "training examples in all); the data set is too small"
        )
    if n < need:
        raise ValueError(
            f"{dataset.name}: {t.epochs} epochs x {steps_per_epoch(len(dataset.y_train), t.batch_size)}"
            f" steps = {steps} steps give {n} windows of {t.window} (stride {t.stride}); a "
            f"Granger test needs >= {need}: train longer, use more data or a shorter --window"
        )
    return n


def run(
    dataset,
    cfg: LegcnetConfig,
    seeds: Sequence[int],
    out_dir,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    checkpoint_every_s: float = 30.0,
    log: Callable[[str], None] | None = None,
    reuse_dense_from=None,
    nulls: Any = "default",
    sparsities: Sequence[float] = (),
) -> dict:
    """The whole pipeline over seeds; writes ``results.json`` and ``report.md`` into out_dir.

    The data split follows each seed too when `dataset` is a callable ``seed -> Dataset``.
    ``run.json`` (the fingerprint: config, seeds, data digest, version) is written first;
    `resume` continues only the same run, and a used out_dir is refused unless `overwrite`,
    which deletes its stages and every ``seed_K/`` first (`rundir.check_run_dir`). `log` gets
    a one-line note of which of these happened. `reuse_dense_from`: another run directory whose
    ``seed_K/dense.npz`` is copied in when its stage digest says it was computed from the same
    inputs (e.g. the same training with another layer filter).
    nulls: a `jaxprune.nulls.NullConfig` (default: all controls, 19 draws), or None to skip the
    null controls; sparsities: targets of the accuracy-vs-sparsity curves (empty: none). Both
    run after every seed (`jaxprune.controls`) and change no mask; they are not part of the
    fingerprint: their per-seed files are reused on resume only when their settings match.
    Parity mode runs in a scoped ``jax.enable_x64`` block (`x64_scope`).
    """
    from jaxprune import nulls as nulls_mod

    if isinstance(nulls, str) and nulls == "default":
        nulls = nulls_mod.NullConfig()
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {seeds}")
    first = dataset(seeds[0]) if callable(dataset) else dataset
    check_window_count(first, cfg)
    # the flat layout of the first release: runs made before the config was grouped resume
    fingerprint = rundir.make_fingerprint(cfg.to_flat_dict(), seeds, first)
    # multi-process: only process 0 writes out_dir; the others their own sibling directory
    out_dir = distributed.process_out_dir(Path(out_dir))
    note = rundir.check_run_dir(out_dir, fingerprint, resume=resume, overwrite=overwrite)
    if log is not None:
        log(note)
    rundir.write_json(out_dir / "config.json", {"config": cfg.to_dict(), "seeds": seeds})
    from jaxprune.report import write_report

    with x64_scope(cfg):  # parity mode is float64 (the report's statistics too, as before)
        results = _run_seeds(
            dataset,
            cfg,
            seeds,
            out_dir,
            first,
            fingerprint["digest"],
            resume=resume,
            progress=progress,
            checkpoint_every_s=checkpoint_every_s,
            reuse_dense_from=reuse_dense_from,
            nulls=nulls,
            sparsities=sparsities,
        )
        save_metrics(out_dir / "results.json", results)
        write_report(results, out_dir / "report.md")
    return results


def _run_seeds(
    dataset,
    cfg: LegcnetConfig,
    seeds: list[int],
    out_dir: Path,
    first,
    digest: str,
    *,
    resume: bool,
    progress: bool,
    checkpoint_every_s: float,
    reuse_dense_from,
    nulls,
    sparsities,
) -> dict:
    """Every seed's stages, then the controls; the results dict of `run`."""
    from jaxprune import controls

    # stage-major: the dense stage of every seed as one population, the select stage of every
    # seed, the retraining of all seeds' masks as one population, then the controls
    datas = [dataset(seed) if callable(dataset) else dataset for seed in seeds]
    if reuse_dense_from is not None:
        for seed, data in zip(seeds, datas, strict=True):
            rundir.reuse_dense(Path(reuse_dense_from), out_dir, seed, dense_stage_digest(cfg, data, seed))
    dense, pt, pop = dense_population_stage(datas, cfg, seeds, out_dir, resume=resume, digest=digest, progress=progress)
    per_seed = _seeds_after_dense(datas, cfg, seeds, out_dir, dense, pt, pop, resume=resume, digest=digest)
    return {
        "dataset": first.name,
        "config": cfg.to_dict(),
        "seeds": seeds,
        "runs": [r for s in per_seed for r in s["records"]],
        "per_seed": [{k: v for k, v in s.items() if k != "records"} for s in per_seed],
        **controls.run_controls(dataset, cfg, seeds, out_dir, nulls=nulls, sparsities=sparsities, resume=resume),
        "jax": {
            "version": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
    }


# ------------------------------------------------------------------------------ analyze
def analyze_train_dir(
    run_dir,
    make_config: Callable[[LegcnetConfig], LegcnetConfig] | None = None,
) -> dict:
    """LE (if not recorded) + Granger + masks for a directory written by `jaxprune train`.

    Reads ``metrics.json`` (config, data set), ``windows.npz`` (risk, and the LE series when the
    run used ``--le-mode``), ``params.npz`` and, without recorded LE, ``trajectory.npy``
    (``--keep-trajectory``). Writes ``analysis.npz`` (flat keep masks, p-values, statuses) and
    ``analysis.json`` (per-layer summaries); returns the summaries. The select stage is the one
    of `run` (`jaxprune.select.analyze`, without baselines).
    """
    from jaxprune.data import load_dataset

    meta, windows = rundir.read_train_dir(run_dir)
    tcfg = TrainConfig(**meta["config"])
    cfg = LegcnetConfig(train=tcfg)
    cfg = make_config(cfg) if make_config is not None else cfg
    risk = np.asarray(windows["risk"])
    data = load_dataset(meta["dataset"], seed=tcfg.seed)
    _, like = _init_params(data, cfg, tcfg.seed)
    params = load_params(Path(run_dir) / "params.npz", like)  # names a missing or corrupt file
    with x64_scope(cfg):  # parity mode is float64
        t0 = time.perf_counter()
        if "le" in windows:
            le = np.asarray(windows["le"])
            le_source = "recorded during training"
        else:
            traj = rundir.load_trajectory(run_dir)
            res = lyapunov.windowed_le(
                traj, window=tcfg.window, stride=tcfg.stride, params=cfg.lyapunov.params, mode=cfg.lyapunov.le_mode
            )
            le = np.asarray(res.le)[: len(risk)]
            le_source = f"computed from trajectory.npy ({cfg.lyapunov.le_mode} mode)"
        le_seconds = time.perf_counter() - t0
        analysis = select_stage.analyze(le, risk, params, cfg, baselines=False)
    summaries = {m: analysis.method_summary(m) for m in analysis.granger}
    out = {"config": cfg.to_dict(), "le_source": le_source, "le_seconds": le_seconds, "summaries": summaries}
    rundir.save_train_analysis(run_dir, analysis, out)
    return out
