"""Benchmark: where a study's time goes, stage by stage, on one data set and seed.

Stages (mnist5k --quick by default: 784-50-30-10, 400 epochs x 28 steps, fast LE):

1. dense training with the Lyapunov kernel inside the epoch (the pipeline's stage 1), next to the
   same training with no window function and to the standalone `windowed_le` kernel on the same
   windows (the trajectory is kept in a memory-mapped file for it): the in-epoch LE cost per
   window and its ratio to the standalone kernel;
2. the Granger stage on the run's LE series (FT: all windows), and statsmodels on a sample of
   weights in the same process (ratio);
3. the null controls on the run's LE (`nulls.null_controls`, the FT mask, default `NullConfig`:
   shuffle and surrogate draws, and crossseed when ``--seeds`` > 1, whose other seeds' dense
   runs are trained first, untimed in this stage);
4. retraining the run's masks (dense, LEGCNet-FT/-PT, random, magnitude) one by one
   (`pipeline.retrain`, one compiled epoch per net) and as one population
   (`population.retrain_population`, one compiled program).

The `Trainer` applies the window function (the LE kernel) outside the compiled epoch, per
completed window, in the standalone kernel's lane blocks: the in-epoch LE should cost about the
standalone kernel (ratio ~1; it was 2.75 while the kernel ran inside the epoch's scan). Stage 1b
measures the same for the path `jaxprune run` takes: the dense population of ``--seeds`` members
(`jaxprune.dense_population`), the kernel on all members' windows side by side.

Wall time and process CPU time are both reported: on a shared machine the CPU time is the more
stable figure (other jobs stretch wall time, not this process's CPU seconds).

Run: python benchmarks/pipeline.py [--dataset mnist5k] [--epochs N] [--seed 0] [--seeds 1]
[--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from hardware import cpu_model  # benchmarks/hardware.py (run as scripts)

from jaxprune import data, lyapunov, nulls, pipeline, prune
from jaxprune.population import retrain_population
from jaxprune.train import Trainer
from jaxprune.windows import steps_per_epoch


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _fit(trainer: Trainer):
    with Clock() as c:
        res = trainer.fit()
    return res, c


def _in_epoch_le_cost(c_le: Clock, c_plain: Clock, c_sa: Clock) -> dict:
    """Training with the kernel, without it, their difference (the in-epoch LE) and its ratio
    to the standalone kernel on the same windows, wall and CPU seconds."""
    le_wall, le_cpu = c_le.wall - c_plain.wall, c_le.cpu - c_plain.cpu
    return {
        "train_with_le_wall": c_le.wall,
        "train_with_le_cpu": c_le.cpu,
        "train_plain_wall": c_plain.wall,
        "train_plain_cpu": c_plain.cpu,
        "in_epoch_le_wall": le_wall,
        "in_epoch_le_cpu": le_cpu,
        "standalone_le_wall": c_sa.wall,
        "standalone_le_cpu": c_sa.cpu,
        "in_epoch_over_standalone_cpu": le_cpu / c_sa.cpu,
        "in_epoch_over_standalone_wall": le_wall / c_sa.wall,
    }


def stage_dense(ds, cfg, seed: int, tmp: Path) -> dict:
    """In-epoch LE vs plain training + standalone kernel on the same windows.

    The in-epoch LE cost is (training with the kernel) - (the same training without it); the
    standalone kernel runs on the windows of a third, untimed training that keeps the trajectory.
    """
    tcfg = cfg.train.replace(seed=seed)
    common = dict(n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test)
    # compile first, so the timed runs exclude compilation: the epoch function and, outside it,
    # the LE kernel's block (the warm-up trains until one window completes)
    warm = tcfg.replace(epochs=-(-tcfg.window // steps_per_epoch(len(ds.y_train), tcfg.batch_size)))
    Trainer(warm, ds.x_train, ds.y_train, window_fn=pipeline.le_window_fn(cfg, np.zeros(0, int)), **common).fit()
    with_le, c_le = _fit(
        Trainer(tcfg, ds.x_train, ds.y_train, window_fn=pipeline.le_window_fn(cfg, np.zeros(0, int)), **common)
    )
    plain, c_plain = _fit(Trainer(tcfg, ds.x_train, ds.y_train, **common))
    # the same training once more, untimed, keeping the trajectory for the standalone kernel
    traj_path = tmp / "traj.npy"
    Trainer(tcfg, ds.x_train, ds.y_train, keep_trajectory=traj_path, **common).fit()
    traj = np.load(traj_path, mmap_mode="r")
    kw = dict(window=tcfg.window, stride=tcfg.stride, params=cfg.lyapunov.params, mode=cfg.lyapunov.le_mode)
    lyapunov.windowed_le(traj, **kw)  # compile (block shapes depend on the window count)
    with Clock() as c_sa:
        sa = lyapunov.windowed_le(traj, **kw)
    n_win = int(len(with_le.window_end_steps))
    got = np.asarray(with_le.window_outputs["le"])
    diff = float(np.nanmax(np.abs(got - sa.le[:n_win]))) if n_win else float("nan")
    same = bool(np.array_equal(got, sa.le[:n_win], equal_nan=True))
    return {
        "epochs": tcfg.epochs,
        "steps": int(with_le.steps),
        "windows": n_win,
        "weights": int(with_le.n_weights),
        **_in_epoch_le_cost(c_le, c_plain, c_sa),
        "max_abs_le_diff": diff,
        "le_identical_to_standalone": same,
        "_le": got,
        "_risk": with_le.risk,
        "_params": with_le.params,
        "_init": with_le.init_params,
    }


def stage_dense_population(cfg, datasets, seeds) -> dict:
    """The dense stage as `jaxprune run` runs it (`DensePopulationTrainer`, all seeds in one
    population, the LE kernel on the host per window with the members side by side): the
    in-epoch LE cost is (training with the kernel) - (the same training with a kernel that
    returns zeros); the standalone `windowed_le` runs on the same windows, each member's
    trajectory rebuilt from its windows, and must give the identical LE."""
    from jaxprune.dense_population import le_host_fn, population_inputs

    tr, arrays = population_inputs(datasets, cfg.train)
    kernel, windows = le_host_fn(cfg), []

    def none(w):  # same calls, no kernel: the training's own cost
        return np.zeros(w.shape[1], np.float32), np.zeros(w.shape[1], np.int8)

    def keep(w):
        windows.append(np.asarray(w))
        return none(w)

    S = tr.steps_per_epoch
    warm = -(-cfg.train.window // S) + 1  # compile the epoch and the kernel's blocks
    tr.fit(seeds, *arrays, le_fn=kernel, epochs=warm)
    tr.fit(seeds, *arrays, le_fn=keep)  # untimed: the windows for the standalone kernel
    with Clock() as c_le:
        runs = tr.fit(seeds, *arrays, le_fn=kernel)
    with Clock() as c_plain:
        tr.fit(seeds, *arrays, le_fn=none)
    P, nw, ov = len(seeds), tr.n_weights, cfg.train.window - cfg.train.stride
    W = np.stack(windows).reshape(len(windows), cfg.train.window, P, nw)
    kw = dict(window=cfg.train.window, stride=cfg.train.stride, params=cfg.lyapunov.params, mode=cfg.lyapunov.le_mode)
    trajs = [np.concatenate([W[0, :, i]] + [w[ov:, i] for w in W[1:]]) for i in range(P)]
    lyapunov.windowed_le(trajs[0], **kw)  # compile
    with Clock() as c_sa:
        sa = [lyapunov.windowed_le(t, **kw).le for t in trajs]
    same = all(np.array_equal(r.le, s, equal_nan=True) for r, s in zip(runs, sa))
    return {
        "members": P,
        "windows": len(windows),
        "weights": nw,
        **_in_epoch_le_cost(c_le, c_plain, c_sa),
        "le_identical_to_standalone": bool(same),
    }


def stage_granger(le, risk, params, cfg, n_statsmodels: int) -> dict:
    from jaxprune.verify import _statsmodels_min_p

    pipeline.granger_on_le(le, risk, cfg)  # compile
    with Clock() as c:
        outcome = pipeline.granger_on_le(le, risk, cfg)
    rng = np.random.default_rng(0)
    # statsmodels refuses NaN; the pipeline fills NaN windows of partly undefined series
    ok = np.nonzero(np.isfinite(outcome.pmin) & np.all(np.isfinite(le), axis=0))[0]
    pick = rng.choice(ok, size=min(n_statsmodels, ok.size), replace=False)
    maxlag = outcome.maxlag_used
    _statsmodels_min_p(risk, le[:, pick[0]].astype(np.float64), maxlag, cfg.test)  # imports
    with Clock() as c_sm:
        ref = np.array([_statsmodels_min_p(risk, le[:, j].astype(np.float64), maxlag, cfg.test) for j in pick])
    per_pair = c_sm.wall / max(len(pick), 1)
    return {
        "weights": int(le.shape[1]),
        "windows": int(le.shape[0]),
        "maxlag": int(maxlag),
        "granger_wall": c.wall,
        "granger_cpu": c.cpu,
        "statsmodels_seconds_per_weight": per_pair,
        "speedup_vs_statsmodels": per_pair * le.shape[1] / c.wall,
        "max_abs_p_diff_sample": float(np.max(np.abs(ref - outcome.lag_pvalues[pick].min(axis=1)))),
        "_outcome": outcome,
    }


def stage_nulls(le, risk, params, cfg, seed: int, outcome, other_le) -> dict:
    """The null controls of one seed's FT mask (default `NullConfig`; crossseed needs other_le)."""
    from jaxprune.weights import kernel_layout

    ncfg = nulls.NullConfig()
    kw = dict(seed=seed, mask="legcnet_ft", real_outcome=outcome, other_le=other_le, calibration=True)
    with Clock() as c:
        records, _ = nulls.null_controls(le, risk, cfg, kernel_layout(params), ncfg, **kw)
    return {
        "controls": sorted({r["control"] for r in records}),
        "draws": ncfg.draws,
        "max_per_layer": ncfg.max_per_layer,
        "other_seeds": len(other_le),
        "records": len(records),
        "nulls_wall": c.wall,
        "nulls_cpu": c.cpu,
    }


def stage_retrain(ds, cfg, seed, init, params, outcome) -> dict:
    mask_ft, _ = pipeline.mask_from_granger(outcome, params, cfg)
    masks = {
        "dense": jax.tree.map(lambda a: np.ones(np.shape(a), bool), mask_ft),
        "legcnet_ft": mask_ft,
        "random": prune.random_mask(params, mask_ft, seed=seed, layers=cfg.layers),
        "magnitude": prune.magnitude_mask(params, mask_ft, layers=cfg.layers),
    }
    with Clock() as c_one:
        single = {k: pipeline.retrain(ds, cfg, init, m, seed=seed)[0] for k, m in masks.items()}
    with Clock() as c_pop:
        recs, _ = retrain_population(ds, cfg, init, list(masks.values()), [seed] * len(masks))
    return {
        "nets": len(masks),
        "one_by_one_wall": c_one.wall,
        "one_by_one_cpu": c_one.cpu,
        "population_wall": c_pop.wall,
        "population_cpu": c_pop.cpu,
        "speedup_wall": c_one.wall / c_pop.wall,
        "test_accuracy_one_by_one": {k: r["test_accuracy"] for k, r in single.items()},
        "test_accuracy_population": {k: r["test_accuracy"] for k, r in zip(masks, recs)},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--epochs", type=int, default=None, help="default: the --quick preset's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--statsmodels", type=int, default=100, help="weights checked there")
    ap.add_argument(
        "--seeds", type=int, default=1, help="> 1: dense runs of seeds seed+1.. feed the crossseed null control"
    )
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args()
    ds = data.load_dataset(a.dataset, seed=a.seed)
    cfg = pipeline.preset(a.dataset, quick=True)
    if a.epochs is not None:
        cfg = cfg.replace(train=cfg.train.replace(epochs=a.epochs))
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "load_average_start": os.getloadavg(),
    }
    print(
        f"{env['cpu']}, {env['cores']} cores, jax {env['jax']}, {env['device']}, "
        f"load average {env['load_average_start']}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        dense = stage_dense(ds, cfg, a.seed, Path(tmp))
    print(
        f"dense+LE: {dense['epochs']} epochs, {dense['windows']} windows x {dense['weights']} "
        f"weights | with LE {dense['train_with_le_wall']:.1f} s wall / "
        f"{dense['train_with_le_cpu']:.1f} s CPU, plain {dense['train_plain_wall']:.1f} / "
        f"{dense['train_plain_cpu']:.1f} | in-epoch LE {dense['in_epoch_le_cpu']:.1f} s CPU vs "
        f"standalone {dense['standalone_le_cpu']:.1f} s CPU: "
        f"x{dense['in_epoch_over_standalone_cpu']:.2f} (wall x"
        f"{dense['in_epoch_over_standalone_wall']:.2f}); max |LE diff| "
        f"{dense['max_abs_le_diff']:.1e} (identical: {dense['le_identical_to_standalone']})",
        flush=True,
    )
    pop_seeds = list(range(a.seed, a.seed + a.seeds))
    dp = stage_dense_population(cfg, [data.load_dataset(a.dataset, seed=s) for s in pop_seeds], pop_seeds)
    print(
        f"dense population (as `run`), {dp['members']} member(s), {dp['windows']} windows x "
        f"{dp['weights']} weights: with LE {dp['train_with_le_wall']:.1f} s wall / {dp['train_with_le_cpu']:.1f} s "
        f"CPU, plain {dp['train_plain_wall']:.1f} / {dp['train_plain_cpu']:.1f} | in-epoch LE "
        f"{dp['in_epoch_le_cpu']:.1f} s CPU vs standalone {dp['standalone_le_cpu']:.1f} s CPU: "
        f"x{dp['in_epoch_over_standalone_cpu']:.2f} (wall x{dp['in_epoch_over_standalone_wall']:.2f}); "
        f"identical: {dp['le_identical_to_standalone']}",
        flush=True,
    )
    gr = stage_granger(dense["_le"], dense["_risk"], dense["_params"], cfg, a.statsmodels)
    print(
        f"granger: {gr['weights']} weights x maxlag {gr['maxlag']}, n {gr['windows']}: "
        f"{gr['granger_wall']:.2f} s wall / {gr['granger_cpu']:.2f} s CPU; statsmodels "
        f"{1e3 * gr['statsmodels_seconds_per_weight']:.1f} ms/weight -> "
        f"x{gr['speedup_vs_statsmodels']:.0f}; max |p diff| {gr['max_abs_p_diff_sample']:.1e}",
        flush=True,
    )
    others = []
    with Clock() as c_other:
        for other in range(a.seed + 1, a.seed + a.seeds):
            others.append(np.asarray(pipeline.fit_dense(ds, cfg, other).le))
    nl = stage_nulls(dense["_le"], dense["_risk"], dense["_params"], cfg, a.seed, gr["_outcome"], others)
    nl["other_dense_runs_wall"], nl["other_dense_runs_cpu"] = c_other.wall, c_other.cpu
    print(
        f"null controls {nl['controls']} ({nl['draws']} draws, <= {nl['max_per_layer']} weights per "
        f"layer, {nl['other_seeds']} other seeds): {nl['nulls_wall']:.1f} s wall / {nl['nulls_cpu']:.1f} s CPU",
        flush=True,
    )
    rt = stage_retrain(ds, cfg, a.seed, dense["_init"], dense["_params"], gr["_outcome"])
    print(
        f"retrain {rt['nets']} nets: one by one {rt['one_by_one_wall']:.1f} s wall / "
        f"{rt['one_by_one_cpu']:.1f} s CPU, population {rt['population_wall']:.1f} / "
        f"{rt['population_cpu']:.1f} -> x{rt['speedup_wall']:.2f} wall",
        flush=True,
    )
    print("test accuracy one by one:", rt["test_accuracy_one_by_one"])
    print("test accuracy population:", rt["test_accuracy_population"])
    env["load_average_end"] = os.getloadavg()
    if a.out:
        strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
        Path(a.out).write_text(
            json.dumps(
                {
                    "env": env,
                    "dense": strip(dense),
                    "dense_population": dp,
                    "granger": strip(gr),
                    "nulls": nl,
                    "retrain": rt,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
