"""LEGCNet end to end: dense training with on-device Lyapunov windows -> Granger -> masks ->
sparse retraining of LEGCNet-FT / -PT and of random / magnitude baselines at the same sparsity.

The only module that knows every stage (docs/method.md). Per seed (which fixes the data split,
the initial weights and the batch order, hence the masks):

1. ``dense``: train the dense net for ``train.epochs``; every completed window of the weight
   trajectory goes through the Lyapunov kernel inside the jitted epoch (`le_window_fn`), so only
   the per-window exponents ``(n_windows, n_weights)`` and the risk series are kept. A small
   random sample of weights also keeps its raw windows, for `jaxprune verify`.
2. ``analyze``: per weight, Granger test (LE series -> risk series), min p over lags, mask.
   LEGCNet-FT uses every window; LEGCNet-PT the first ``pt_windows`` (decided during training,
   as soon as that window completes).
3. ``retrain``: from the same initial weights, each mask (and an all-True mask for ``dense``)
   trains through `jaxprune.prune.masked` until the training accuracy reaches
   ``target_accuracy`` or ``max_retrain_epochs`` pass; then test metrics.

Every stage checkpoints (orbax for training, ``.npz`` / ``.json`` for finished stages), so a
killed run resumes to identical masks and metrics.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune import granger as granger_mod
from jaxprune import distributed, lyapunov, metrics, prune, rundir, sharding
from jaxprune import stationarity
from jaxprune.models import predict_labels
from jaxprune.train import TrainConfig, Trainer, TrainingDiverged, load_params, save_metrics
from jaxprune.weights import kernel_layout

METHODS = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude")


@dataclasses.dataclass(frozen=True)
class LegcnetConfig:
    """Everything a LEGCNet run depends on besides the data and the seeds.

    Defaults reproduce the original: ``lyap_r -m2 -r20 -d1 -s20`` slopes, Granger maxlag 14,
    min ``ssr_chi2test`` p over lags, alpha 0.05, NaN windows filled with 0, untestable weights
    kept, all layers analysed (the original: only the last two, ``layers=(-2, -1)``), PT on the
    first 25 windows, retraining to 92 % training accuracy.

    ``untestable="keep"`` is the default because it is the original's rule; a weight that never
    moves (17.7 % of mnist5k's first layer: its input pixel is always 0) has no LE estimate and
    cannot cause anything, so ``"prune"`` is the better choice for compression. Reports give
    both counts.
    """

    train: TrainConfig = TrainConfig()
    # Lyapunov (docs/lyapunov.md)
    le_mode: str = "parity"
    m: int = 2
    d: int = 1
    theiler: int = 0
    s: int = 20
    r: float | None = 20.0
    quantize: bool = False
    # Granger (docs/granger.md)
    maxlag: int = 14
    test: str = "ssr_chi2test"
    alpha: float = 0.05
    stationarity: bool = False
    nan_fill: float = 0.0
    untestable: str = "keep"
    layers: tuple[int, ...] | None = None
    correction: str = "none"
    round_pvalues: int | None = None
    pt_windows: int = 25
    # retraining and baselines
    target_accuracy: float = 0.92
    max_retrain_epochs: int | None = None
    per_layer_baselines: bool = True
    baselines_for: tuple[str, ...] = ("legcnet_ft", "legcnet_pt")
    verify_sample: int = 64
    # scale (jaxprune.sharding): device memory budget of the LE / Granger kernels per device, MB
    memory_budget_mb: float | None = None

    def __post_init__(self):
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        if self.le_mode not in ("parity", "fast"):
            raise ValueError(f"le_mode must be 'parity' or 'fast', got {self.le_mode!r}")
        if self.test not in granger_mod.TESTS:
            raise ValueError(f"test must be one of {granger_mod.TESTS}, got {self.test!r}")
        if self.untestable not in ("keep", "prune"):
            raise ValueError(f"untestable must be 'keep' or 'prune', got {self.untestable!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.maxlag < 1 or self.pt_windows < 5:
            raise ValueError("maxlag must be >= 1 and pt_windows >= 5")
        for b in self.baselines_for:
            if b not in ("legcnet_ft", "legcnet_pt"):
                raise ValueError(f"baselines_for takes legcnet_ft / legcnet_pt, got {b!r}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
            n_layers = len(self.train.hidden) + 1
            if not self.layers:
                raise ValueError("layers is empty: name at least one layer (or omit it for all)")
            bad = [i for i in self.layers if not -n_layers <= i < n_layers]
            if bad:
                raise ValueError(f"layers {bad} out of range: the net has {n_layers} weight "
                                 f"layers (0..{n_layers - 1}, or -{n_layers}..-1)")
        if self.round_pvalues is not None and int(self.round_pvalues) < 0:
            raise ValueError(f"round_pvalues must be >= 0 decimals, got {self.round_pvalues}")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must lie in (0, 1], got {self.target_accuracy}")
        if self.max_retrain_epochs is not None and int(self.max_retrain_epochs) < 1:
            raise ValueError(f"max_retrain_epochs must be >= 1, got {self.max_retrain_epochs}")
        prune._parse_correction(self.correction)  # an unknown name fails here, before training

    @property
    def retrain_epochs(self) -> int:
        return self.max_retrain_epochs or self.train.epochs

    def replace(self, **changes) -> "LegcnetConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LegcnetConfig":
        d = dict(d)
        d["train"] = TrainConfig(**d["train"])
        for key in ("layers", "baselines_for"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


# The original's from-scratch tabular setups (docs/method.md): per-example SGD (batch 1),
# sigmoid units, window ~ 160-250 steps with 10 % overlap, its training-accuracy thresholds.
# (hidden, lr, epochs, window, threshold); breast_cancer here is scikit-learn's 30-feature set.
TABULAR_PRESETS = {
    "iris": ((6,), 0.05, 200, 160, 0.95),
    "breast_cancer": ((6,), 0.01, 50, 200, 0.90),
    "wine": ((6,), 0.05, 100, 160, 0.90),
    "digits": ((32,), 0.05, 30, 200, 0.90),
}


def preset(dataset: str, *, quick: bool = False) -> LegcnetConfig:
    """The default config for a data set (the original's settings where it had them).

    mnist / mnist5k: the original net and optimizer (784-50-30-10, sigmoid, MSE, SGD 0.5, batch
    128). mnist5k has 28 steps per epoch, so 400 epochs are the step count of the original's 50
    full-MNIST epochs; MSE training on 3,500 images plateaus below 92 %, so its threshold is 75 %.
    Tabular sets: `TABULAR_PRESETS`; any other set (CSV): a 16-unit sigmoid layer, batch 1.
    ``quick`` trades precision and breadth for minutes on a 2-core CPU: fast (float32) LE mode and
    baselines at FT sparsity only (mnist5k keeps its 400 epochs: MSE training learns late);
    mnist 10 epochs; tabular sets half the epochs.
    """
    base = LegcnetConfig()
    if dataset == "mnist":
        cfg = base
    elif dataset == "mnist5k":
        cfg = base.replace(train=base.train.replace(epochs=400), target_accuracy=0.75)
    else:
        hidden, lr, epochs, window, threshold = TABULAR_PRESETS.get(
            dataset, ((16,), 0.05, 100, 200, 0.90))
        stride = window - round(window * 0.1)
        cfg = base.replace(
            train=base.train.replace(hidden=hidden, learning_rate=lr, batch_size=1,
                                     epochs=epochs, window=window, stride=stride),
            target_accuracy=threshold,
        )
    if quick:
        if dataset == "mnist5k":  # the full step count (MSE learns late), fast LE, FT baselines
            cfg = cfg.replace(le_mode="fast", baselines_for=("legcnet_ft",))
        elif dataset == "mnist":
            cfg = cfg.replace(train=cfg.train.replace(epochs=10), le_mode="fast",
                              baselines_for=("legcnet_ft",), target_accuracy=0.85)
        else:
            cfg = cfg.replace(train=cfg.train.replace(epochs=max(cfg.train.epochs // 2, 10)),
                              baselines_for=("legcnet_ft",))
    return cfg


# ------------------------------------------------------------------------------ stage 1
def le_window_fn(cfg: LegcnetConfig, sample_idx: np.ndarray) -> Callable:
    """The on-device window function: window ``(window, n_weights)`` float32 ->
    ``{"le": (n_weights,), "status": (n_weights,) int8, "sample": (window, n_sample) float32}``
    (no ``"sample"`` when `sample_idx` is empty).

    The float32 weights are exact in float64, so parity mode casts them (needs x64).
    """
    dtype = jnp.float64 if cfg.le_mode == "parity" else jnp.float32
    sample_idx = jnp.asarray(sample_idx, jnp.int32)
    sharded = _use_sharding(cfg) and sharding.window_le_fn(
        memory_budget_bytes=_budget_bytes(cfg), window=cfg.train.window, m=cfg.m, d=cfg.d,
        t=cfg.theiler, s=cfg.s, r=cfg.r, quantize=cfg.quantize, mode=cfg.le_mode)

    def fn(win):
        if sharded:  # weight axis over all devices, chunked to the memory budget
            slope, status = sharded(win)
        else:
            slope, status = lyapunov.windowed_le_update(
                win.astype(dtype), m=cfg.m, d=cfg.d, t=cfg.theiler, s=cfg.s, r=cfg.r,
                quantize=cfg.quantize, mode=cfg.le_mode,
            )
        out = {"le": slope, "status": status.astype(jnp.int8)}
        if sample_idx.size:  # orbax cannot checkpoint zero-size arrays
            out["sample"] = win[:, sample_idx]
        return out

    return fn


def _budget_bytes(cfg: LegcnetConfig) -> float | None:
    return None if cfg.memory_budget_mb is None else cfg.memory_budget_mb * 2**20


def _use_sharding(cfg: LegcnetConfig) -> bool:
    """Route the kernels through `jaxprune.sharding` (several devices or a memory budget);
    results are identical for any number of devices at the same budget."""
    return jax.device_count() > 1 or cfg.memory_budget_mb is not None


def verify_sample_indices(n_weights: int, k: int, seed: int) -> np.ndarray:
    """The weights whose raw windows are kept for `verify` (sorted, seeded)."""
    rng = np.random.default_rng([seed, 0x5EED])
    return np.sort(rng.choice(n_weights, size=min(k, n_weights), replace=False))


# ------------------------------------------------------------------------------ stage 2
def effective_maxlag(n: int, maxlag: int) -> int:
    """The largest usable lag <= maxlag for a series of n points (statsmodels needs n > 3p + 1)."""
    return max(0, min(maxlag, (n - 2) // 3))


@dataclasses.dataclass
class GrangerOutcome:
    """Per-weight Granger results for one LE series set (flat weight axis)."""

    pmin: np.ndarray  # (n_weights,) min p over lags, NaN when untestable
    lag_pvalues: np.ndarray  # (n_weights, maxlag_used)
    status: np.ndarray  # (n_weights,) granger.Status (+ 100 when the LE series had no estimate)
    maxlag_used: int
    n_windows: int
    # (n_weights,) the test statistic at the lag of min p (ranks ties in p; NaN if untestable)
    min_statistic: np.ndarray | None = None


LE_UNDEFINED = 100  # status offset: the weight's LE series was all NaN (it never moved)


def granger_on_le(le: np.ndarray, risk: np.ndarray, cfg: LegcnetConfig, *,
                  local: bool = False) -> GrangerOutcome:
    """Granger-test every weight's LE series (``le``: ``(n_windows, n_weights)``) against
    ``risk`` (``(n_windows,)``), in float64 whatever the LE mode (float32 statistics are off by
    ~1e-4 relative, and not faster on CPU: README, Speed).

    NaN windows (no Lyapunov estimate) are filled with ``cfg.nan_fill`` (the original: 0); a
    series that is NaN in every window is untestable (status ``LE_UNDEFINED``). maxlag is capped
    to what ``n_windows`` allows (`effective_maxlag`); the cap is returned.
    local: keep the computation on this process's devices (several processes: the null
    controls, whose calls the processes need not make in step).
    """
    with jax.enable_x64(True):
        return _granger_on_le(le, risk, cfg, local)


def _granger_on_le(le: np.ndarray, risk: np.ndarray, cfg: LegcnetConfig,
                   local: bool = False) -> GrangerOutcome:
    le = np.asarray(le, np.float64)
    risk = np.asarray(risk, np.float64)
    n, n_w = le.shape
    if risk.shape != (n,):
        raise ValueError(f"risk has shape {risk.shape}, expected ({n},)")
    if not np.all(np.isfinite(risk)):
        raise ValueError("the risk series holds NaN or inf")
    maxlag = effective_maxlag(n - (1 if cfg.stationarity else 0), cfg.maxlag)
    if maxlag < 1:
        raise ValueError(f"{n} windows are too few for a Granger test (need >= 5)")
    undefined = np.all(np.isnan(le), axis=0)
    x = np.asarray(granger_mod.fill_nan(jnp.asarray(le.T), cfg.nan_fill))
    y = jnp.asarray(risk)
    if cfg.stationarity:
        pair = stationarity.make_stationary(y, jnp.asarray(x))
        y, x = pair.y, pair.x
        if y.ndim > 1:
            y = y[0]
    if float(jnp.max(y) - jnp.min(y)) == 0.0:
        # A constant risk series (e.g. a plateau over the PT windows) explains nothing: every
        # weight is untestable rather than an exception.
        status = np.full((n_w,), granger_mod.Status.CONSTANT, np.int32)
        pmin = np.full((n_w,), np.nan)
        lag_p = np.full((n_w, maxlag), np.nan)
        min_stat = pmin
    else:
        local = local and jax.process_count() > 1
        if local:
            res = granger_mod.granger_tests(y, jax.device_put(jnp.asarray(x), jax.local_devices()[0]),
                                            maxlag=maxlag)
        elif _use_sharding(cfg) and y.ndim == 1:
            res = sharding.sharded_granger_tests(y, np.asarray(x), maxlag=maxlag,
                                                 memory_budget_bytes=_budget_bytes(cfg))
        else:
            res = granger_mod.granger_tests(y, jnp.asarray(x), maxlag=maxlag)
        lag_p = np.asarray(getattr(res, cfg.test).pvalue, np.float64)
        status = np.asarray(res.status, np.int32)
        pmin, _ = granger_mod.min_pvalue(res, cfg.test, round_decimals=cfg.round_pvalues)
        pmin = np.asarray(pmin, np.float64)
        stat = np.asarray(getattr(res, cfg.test).statistic, np.float64)
        at = np.argmin(np.where(np.isnan(lag_p), np.inf, lag_p), axis=-1)[..., None]
        min_stat = np.take_along_axis(stat, at, axis=-1)[..., 0]
    status = np.where(undefined, LE_UNDEFINED, status)
    pmin = np.where(status == 0, pmin, np.nan)
    min_stat = np.where(status == 0, min_stat, np.nan)
    return GrangerOutcome(pmin, lag_p, status, maxlag, n, min_stat)


def mask_from_granger(outcome: GrangerOutcome, params, cfg: LegcnetConfig):
    """``(mask, PruneSummary)`` from a `GrangerOutcome` with the config's policy and correction."""
    p = outcome.pmin
    if cfg.round_pvalues is not None:
        p = prune.round_pvalues(p, cfg.round_pvalues)
    lag_p = outcome.lag_pvalues
    return prune.causal_mask(
        p, params, alpha=cfg.alpha, untestable=cfg.untestable,
        status=np.where(outcome.status == 0, 0, 1), layers=cfg.layers,
        correction=cfg.correction, lag_pvalues=lag_p, n_lags=outcome.maxlag_used,
    )


def correction_table(outcome: GrangerOutcome, params, cfg: LegcnetConfig) -> dict:
    """Sparsity under each multiple-testing correction and both untestable policies."""
    table = {}
    for corr in ("none", "bonferroni", "holm", "bh", ("holm", "bh")):
        name = corr if isinstance(corr, str) else "+".join(corr)
        _, summary = mask_from_granger(outcome, params, cfg.replace(correction=corr))
        table[name] = {
            "pruned_if_keep": summary.pruned_if_keep,
            "pruned_if_prune": summary.pruned_if_prune,
            "n_weights": int(sum(summary.n_weights)),
        }
    return table


# ------------------------------------------------------------------------------ stage 3
def evaluate_record(trainer: Trainer, params, mask, dataset) -> dict:
    """Test metrics, sparsity and FLOPs of a (sparse) net."""
    logits = trainer.apply(params, jnp.asarray(dataset.x_test))
    y_pred = np.asarray(predict_labels(logits))
    cm = metrics.classification_metrics(
        jnp.asarray(dataset.y_test), jnp.asarray(y_pred), dataset.n_classes
    )
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


def retrain(dataset, cfg: LegcnetConfig, init_params, mask, *, seed: int | None = None,
            checkpoint_dir=None, resume=False, progress=False, desc="retrain",
            checkpoint_every_s: float = 30.0,
            epoch_fn_cache: dict | None = None) -> tuple[dict, Any, dict]:
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
        tcfg, dataset.x_train, dataset.y_train, n_classes=dataset.n_classes,
        x_test=dataset.x_test, y_test=dataset.y_test, tx=tx,
        init_params=prune.apply_mask(init_params, mask), checkpoint_dir=checkpoint_dir,
        checkpoint_every_s=checkpoint_every_s, epoch_fn_cache=epoch_fn_cache,
    )
    t0 = time.perf_counter()
    try:
        res = trainer.fit(epochs=cfg.retrain_epochs, resume=resume,
                          target_train_accuracy=cfg.target_accuracy, progress=progress,
                          progress_desc=desc)
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


# ------------------------------------------------------------------------------ one seed
def _json_load(path: Path):
    return rundir.read_json(path)  # None when missing; an error naming a corrupt file


def _save_npz(path: Path, **arrays) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written stage file


def train_dense(dataset, cfg: LegcnetConfig, seed: int, seed_dir: Path, *, resume: bool,
                progress: bool, on_pt: Callable | None = None,
                checkpoint_every_s: float = 30.0, digest: str | None = None) -> dict:
    """Stage 1: dense training with the Lyapunov kernel inside the epoch; writes dense.npz.

    digest: the stage's digest (`dense_stage_digest`), stored in dense.npz (``run_digest``): a
    dense.npz with this digest is reused (it was computed from the same inputs, e.g. copied by
    ``run(reuse_dense_from=...)``); one with another digest, or its checkpoints, never is.
    Without a digest, a dense.npz is reused only when `resume`."""
    out = seed_dir / "dense.npz"
    if out.exists() and (resume or digest is not None):
        saved = rundir.load_npz(out)
        if digest is None or rundir.stage_digest_ok(saved, digest):
            return saved
        resume = False  # another run's stage: recompute it from scratch
    if not resume and (seed_dir / "ckpt_train").exists():
        import shutil

        shutil.rmtree(seed_dir / "ckpt_train")  # a fresh stage never continues old checkpoints
    tcfg = cfg.train.replace(seed=seed)
    probe = Trainer(tcfg, dataset.x_train[:1], dataset.y_train[:1], n_classes=dataset.n_classes)
    sample = verify_sample_indices(probe.n_weights, cfg.verify_sample, seed)
    pt_state = {}

    def on_window(win):
        pt_state.setdefault("le", []).append(np.asarray(win.value["le"]))
        pt_state.setdefault("risk", []).append(win.risk)
        if win.index + 1 == cfg.pt_windows and on_pt is not None:
            # LEGCNet-PT is decidable now, while training goes on.
            on_pt(np.stack(pt_state["le"]), np.asarray(pt_state["risk"]), win.end_step)

    trainer = Trainer(
        tcfg, dataset.x_train, dataset.y_train, n_classes=dataset.n_classes,
        x_test=dataset.x_test, y_test=dataset.y_test,
        window_fn=le_window_fn(cfg, sample), checkpoint_dir=seed_dir / "ckpt_train",
        checkpoint_every_s=checkpoint_every_s,
    )
    t0 = time.perf_counter()
    try:
        res = trainer.fit(resume=resume, on_window=on_window, progress=progress,
                          progress_desc=f"seed {seed} dense+LE")
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
    reached = np.nonzero(hist_acc >= cfg.target_accuracy)[0]
    flat_init = jax.tree.leaves(res.init_params)
    flat_params = jax.tree.leaves(res.params)
    arrays = dict(
        le=outputs["le"], le_status=outputs["status"],
        # verify_sample=0 records no raw windows (the window function then returns no "sample")
        sample_windows=outputs.get("sample", np.zeros(
            (len(res.window_end_steps), tcfg.window, 0), np.float32)),
        sample_idx=sample, risk=res.risk, end_steps=res.window_end_steps,
        train_accuracy_history=hist_acc, loss_history=np.asarray(res.history["loss"]),
        epoch_seconds=np.asarray(res.epoch_seconds), seconds=np.float64(seconds),
        train_accuracy=np.float64(res.train_accuracy), test_accuracy=np.float64(res.test_accuracy),
        dense_epochs_to_threshold=np.int64(reached[0] + 1 if reached.size else -1),
        steps=np.int64(res.steps), epochs=np.int64(res.epochs),
        **{f"init_{i}": a for i, a in enumerate(flat_init)},
        **{f"params_{i}": a for i, a in enumerate(flat_params)},
    )
    if digest is not None:
        arrays["run_digest"] = np.asarray(digest)
    _save_npz(out, **arrays)
    return arrays


def analyze_dense(dense: dict, params_like, cfg: LegcnetConfig, seed: int) -> dict:
    """Stage 2: Granger tests and masks (FT on all windows, PT on the first ``pt_windows``)."""
    le, risk = np.asarray(dense["le"]), np.asarray(dense["risk"])
    params = load_params(dense, params_like, "params")
    out = {"masks": {}, "summaries": {}, "granger": {}, "corrections": {}, "seconds": {}}
    for method, n in (("legcnet_ft", len(risk)), ("legcnet_pt", min(cfg.pt_windows, len(risk)))):
        t0 = time.perf_counter()
        outcome = granger_on_le(le[:n], risk[:n], cfg)
        mask, summary = mask_from_granger(outcome, params, cfg)
        out["seconds"][method] = time.perf_counter() - t0
        out["masks"][method] = mask
        out["summaries"][method] = summary
        out["granger"][method] = outcome
        out["corrections"][method] = correction_table(outcome, params, cfg)
    for base in cfg.baselines_for:
        ref = out["masks"][base]
        tag = "" if base == "legcnet_ft" else "_pt"
        out["masks"]["random" + tag] = prune.random_mask(
            params, ref, seed=seed, per_layer=cfg.per_layer_baselines, layers=cfg.layers)
        # magnitude: smallest |w| of the trained dense weights
        out["masks"]["magnitude" + tag] = prune.magnitude_mask(
            params, ref, per_layer=cfg.per_layer_baselines, layers=cfg.layers)
    out["masks"]["dense"] = prune.mask_from_flat(
        np.ones(kernel_layout(params).n_weights, bool), params)
    return out


def _save_analysis(path: Path, analysis: dict) -> None:
    arrays = {}
    for name, mask in analysis["masks"].items():
        arrays[f"mask_{name}"] = prune.flat_keep(mask)
    for name, g in analysis["granger"].items():
        arrays[f"pmin_{name}"] = g.pmin
        arrays[f"status_{name}"] = g.status
        arrays[f"maxlag_{name}"] = np.int64(g.maxlag_used)
    _save_npz(path, **arrays)


def dense_stage_digest(cfg: LegcnetConfig, dataset, seed: int) -> str:
    """sha256 of everything stage 1 depends on: the training config and seed, the Lyapunov
    settings, the verify sample size, the data arrays and the package version (not the
    analysis settings: runs that differ only there share their dense stage)."""
    import hashlib

    from jaxprune import __version__

    key = {"train": cfg.train.replace(seed=int(seed)).to_dict(), "le_mode": cfg.le_mode,
           "m": cfg.m, "d": cfg.d, "theiler": cfg.theiler, "s": cfg.s, "r": cfg.r,
           "quantize": cfg.quantize, "verify_sample": cfg.verify_sample,
           "data_sha256": rundir.data_digest(dataset), "version": __version__}
    return hashlib.sha256(json.dumps(rundir.json_safe(key), sort_keys=True).encode()).hexdigest()


def run_seed(dataset, cfg: LegcnetConfig, seed: int, out_dir: Path, *, resume: bool = False,
             progress: bool = False, checkpoint_every_s: float = 30.0,
             digest: str | None = None) -> dict:
    """Dense -> analysis -> retraining for one seed; returns the seed's records and summaries.

    digest: the run's fingerprint digest; the retraining records carry it and one without it
    (another run's) is recomputed on resume. The dense stage carries `dense_stage_digest`."""
    seed_dir = Path(out_dir) / f"seed_{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    timings = _json_load(seed_dir / "timings.json") or {}
    pt_decision = {}

    def on_pt(le, risk, step):
        t0 = time.perf_counter()
        outcome = granger_on_le(le, risk, cfg)
        pt_decision.update(step=int(step), seconds=time.perf_counter() - t0,
                           pruned_pending=int(np.sum(np.nan_to_num(outcome.pmin, nan=0) >= cfg.alpha)))

    t0 = time.perf_counter()
    dense = train_dense(dataset, cfg, seed, seed_dir, resume=resume, progress=progress,
                        on_pt=on_pt, checkpoint_every_s=checkpoint_every_s,
                        digest=None if digest is None else dense_stage_digest(cfg, dataset, seed))
    timings.setdefault("train_and_le", float(dense["seconds"]))
    _, params_like = _init_params(dataset, cfg, seed)
    analysis = analyze_dense(dense, params_like, cfg, seed)
    timings["granger_and_masks"] = float(sum(analysis["seconds"].values()))
    _save_analysis(seed_dir / "analysis.npz", analysis)
    init_params = load_params(dense, params_like, "init")

    records = []
    compiled: dict = {}  # the seed's retrainings share one compiled epoch
    for name, mask in analysis["masks"].items():
        rec_path = seed_dir / f"retrain_{name}.json"
        rec = _json_load(rec_path) if resume else None
        if rec is not None and digest is not None and rec.pop("run_digest", None) != digest:
            rec = None  # another run's record
        if rec is None or not rundir.retrained_path(out_dir, seed, name).exists():
            rec, params, history = retrain(
                dataset, cfg, init_params, mask, seed=seed,
                checkpoint_dir=seed_dir / f"ckpt_retrain_{name}", resume=resume,
                progress=progress, desc=f"seed {seed} {name}",
                checkpoint_every_s=checkpoint_every_s, epoch_fn_cache=compiled)
            # the sparse net's kernels and per-epoch curves, for the spectra and the figures
            rundir.save_retrained(out_dir, seed, name, params, history, rec)
            baseline = name.split("_")[0] in ("random", "magnitude")
            method = name.split("_")[0] if baseline else name
            rec.update(method=method, seed=seed, name=name,
                       matched_to=("legcnet_pt" if name.endswith("_pt") else "legcnet_ft")
                       if baseline else None)
            rundir.write_json(rec_path, {**rec, "run_digest": digest} if digest else rec)
        records.append(rec)
    timings["retrain"] = float(sum(r["seconds"] for r in records))
    rundir.write_json(seed_dir / "timings.json", timings)

    dense_rec = next(r for r in records if r["method"] == "dense")
    dense_seconds_per_epoch = dense_rec["seconds"] / max(dense_rec["epochs"], 1)
    timings["le_estimate"] = max(
        0.0, timings["train_and_le"] - dense_seconds_per_epoch * float(dense["epochs"]))
    summaries = {
        m: {**analysis["summaries"][m].as_dict(),
            "maxlag_used": analysis["granger"][m].maxlag_used,
            "n_windows": analysis["granger"][m].n_windows,
            "le_undefined": int(np.sum(analysis["granger"][m].status == LE_UNDEFINED)),
            "corrections": analysis["corrections"][m]}
        for m in ("legcnet_ft", "legcnet_pt")
    }
    return {
        "seed": seed,
        "records": records,
        "summaries": summaries,
        "timings": timings,
        "pt_decided_during_training": pt_decision or None,
        "dense_full_run": {
            "train_accuracy": float(dense["train_accuracy"]),
            "test_accuracy": float(dense["test_accuracy"]),
            "epochs": int(dense["epochs"]), "steps": int(dense["steps"]),
            "epochs_to_threshold": int(dense["dense_epochs_to_threshold"]),
            "n_windows": int(len(dense["risk"])),
        },
    }


def _init_params(dataset, cfg: LegcnetConfig, seed: int):
    from jaxprune.models import init_mlp

    widths = (dataset.n_features, *cfg.train.hidden, dataset.n_classes)
    return init_mlp(widths, activation=cfg.train.activation, init=cfg.train.init, seed=seed)


# ------------------------------------------------------------------------------ many seeds
def _reuse_dense(src_dir: Path, out_dir: Path, seed: int, digest: str) -> None:
    import shutil

    src = rundir.seed_dir(src_dir, seed) / "dense.npz"
    dst = rundir.seed_dir(out_dir, seed) / "dense.npz"
    if dst.exists() or not src.exists():
        return
    if rundir.stage_digest_ok(rundir.load_npz(src, keys=("run_digest",)), digest):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def check_window_count(dataset, cfg: LegcnetConfig) -> int:
    """The dense run's window count, or a ValueError when too few for a Granger test (checked
    before any training: a tiny data set would otherwise train to nothing)."""
    from jaxprune.train import steps_per_epoch, window_count

    t = cfg.train
    lyapunov._check_window(t.window, t.stride, cfg.m, cfg.d, cfg.s, cfg.theiler)
    steps = t.epochs * steps_per_epoch(len(dataset.y_train), t.batch_size)
    n = window_count(steps, t.window, t.stride)
    need = 5 + (1 if cfg.stationarity else 0)
    if len(dataset.y_test) == 0:
        raise ValueError(f"{dataset.name}: the test split is empty ({len(dataset.y_train)} "
                         "training examples in all); the data set is too small")
    if n < need:
        raise ValueError(
            f"{dataset.name}: {t.epochs} epochs x {steps_per_epoch(len(dataset.y_train), t.batch_size)}"
            f" steps = {steps} steps give {n} windows of {t.window} (stride {t.stride}); a "
            f"Granger test needs >= {need}: train longer, use more data or a shorter --window")
    return n


def run(dataset, cfg: LegcnetConfig, seeds: Sequence[int], out_dir, *, resume: bool = False,
        overwrite: bool = False, progress: bool = False, checkpoint_every_s: float = 30.0,
        log: Callable[[str], None] | None = None, reuse_dense_from=None,
        nulls: Any = "default", sparsities: Sequence[float] = ()) -> dict:
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
    """
    from jaxprune import controls
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
    fingerprint = rundir.make_fingerprint(cfg.to_dict(), seeds, first)
    # multi-process: only process 0 writes out_dir; the others their own sibling directory
    out_dir = distributed.process_out_dir(Path(out_dir))
    note = rundir.check_run_dir(out_dir, fingerprint, resume=resume, overwrite=overwrite)
    if log is not None:
        log(note)
    if cfg.le_mode == "parity" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)  # parity mode is float64
    rundir.write_json(out_dir / "config.json", {"config": cfg.to_dict(), "seeds": seeds})
    per_seed = []
    for seed in seeds:
        data = dataset(seed) if callable(dataset) else dataset
        if reuse_dense_from is not None:
            _reuse_dense(Path(reuse_dense_from), out_dir, seed, dense_stage_digest(cfg, data, seed))
        per_seed.append(run_seed(data, cfg, seed, out_dir, resume=resume, progress=progress,
                                 checkpoint_every_s=checkpoint_every_s,
                                 digest=fingerprint["digest"]))
    results = {
        "dataset": first.name,
        "config": cfg.to_dict(),
        "seeds": seeds,
        "runs": [r for s in per_seed for r in s["records"]],
        "per_seed": [{k: v for k, v in s.items() if k != "records"} for s in per_seed],
        **controls.run_controls(dataset, cfg, seeds, out_dir, nulls=nulls,
                                sparsities=sparsities, resume=resume),
        "jax": {"version": jax.__version__, "backend": jax.default_backend(),
                "devices": [str(d) for d in jax.devices()]},
    }
    save_metrics(out_dir / "results.json", results)
    from jaxprune.report import write_report

    write_report(results, out_dir / "report.md")
    return results


# ------------------------------------------------------------------------------ analyze
def analyze_train_dir(run_dir, make_config: Callable[[LegcnetConfig], LegcnetConfig] | None = None,
                      ) -> dict:
    """LE (if not recorded) + Granger + masks for a directory written by `jaxprune train`.

    Reads ``metrics.json`` (config, data set), ``windows.npz`` (risk, and the LE series when the
    run used ``--le-mode``), ``params.npz`` and, without recorded LE, ``trajectory.npy``
    (``--keep-trajectory``). Writes ``analysis.npz`` (flat keep masks, p-values, statuses) and
    ``analysis.json`` (per-layer summaries); returns the summaries.
    """
    from jaxprune.data import load_dataset

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no metrics.json: not a `jaxprune train` directory")
    meta = rundir.read_json(metrics_path)
    tcfg = TrainConfig(**meta["config"])
    cfg = LegcnetConfig(train=tcfg)
    cfg = make_config(cfg) if make_config is not None else cfg
    if cfg.le_mode == "parity":
        jax.config.update("jax_enable_x64", True)
    windows = rundir.load_npz(run_dir / "windows.npz")
    if windows is None:
        raise FileNotFoundError(f"{run_dir} holds no windows.npz: not a finished `jaxprune train`")
    risk = np.asarray(windows["risk"])
    data = load_dataset(meta["dataset"], seed=tcfg.seed)
    _, like = _init_params(data, cfg, tcfg.seed)
    params = load_params(run_dir / "params.npz", like)  # names a missing or corrupt file
    t0 = time.perf_counter()
    if "le" in windows:
        le = np.asarray(windows["le"])
        le_source = "recorded during training"
    else:
        traj_path = run_dir / "trajectory.npy"
        if not traj_path.exists():
            raise FileNotFoundError(
                f"{run_dir} has neither recorded LE series nor trajectory.npy: train with "
                "--le-mode parity|fast or --keep-trajectory, or use `jaxprune run`")
        traj = np.load(traj_path, mmap_mode="r")
        res = lyapunov.windowed_le(
            traj, window=tcfg.window, stride=tcfg.stride, m=cfg.m, d=cfg.d, t=cfg.theiler,
            s=cfg.s, r=cfg.r, quantize=cfg.quantize, mode=cfg.le_mode)
        le = np.asarray(res.le)[: len(risk)]
        le_source = f"computed from trajectory.npy ({cfg.le_mode} mode)"
    le_seconds = time.perf_counter() - t0
    summaries, arrays = {}, {}
    for method, n in (("legcnet_ft", len(risk)), ("legcnet_pt", min(cfg.pt_windows, len(risk)))):
        outcome = granger_on_le(le[:n], risk[:n], cfg)
        mask, summary = mask_from_granger(outcome, params, cfg)
        arrays[f"mask_{method}"] = prune.flat_keep(mask)
        arrays[f"pmin_{method}"] = outcome.pmin
        arrays[f"status_{method}"] = outcome.status
        summaries[method] = {**summary.as_dict(), "maxlag_used": outcome.maxlag_used,
                             "n_windows": n,
                             "le_undefined": int(np.sum(outcome.status == LE_UNDEFINED)),
                             "corrections": correction_table(outcome, params, cfg)}
    _save_npz(run_dir / "analysis.npz", **arrays)
    out = {"config": cfg.to_dict(), "le_source": le_source, "le_seconds": le_seconds,
           "summaries": summaries}
    save_metrics(run_dir / "analysis.json", out)
    return out
