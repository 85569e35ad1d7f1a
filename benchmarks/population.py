"""Benchmark: retraining P masked nets as one population vs one by one (`pipeline.retrain`).

mnist5k, the original net (784-50-30-10 sigmoid, MSE, SGD 0.5, batch 128: the mnist5k --quick
preset), float32, a fixed number of epochs (no threshold stop), P members with their own seeds,
seeded inits and random masks at sparsities spread over 10-90 %. Both paths run in the same
process; each is repeated and the minimum taken (the machine may be shared: say so with the
figures). A third column trains the members one at a time through one `PopulationTrainer`
(P = 1: compiled once, no batching, no window recording), which separates the gain of batching
from that of compiling once. Compile time is reported separately: the population's is measured (AOT compile of its
one program); one-by-one, each net compiles its own epoch, estimated as its first epoch's time
minus the median of its other epochs.

With ``--shared-seed`` all members share seed 0 (a curve's masks, a seed's retraining masks) and a
fourth column trains them as a population without groups of one batch order
(`jaxprune.population.PopulationTrainer.batch_groups`), in the same process.

Run: python benchmarks/population.py [--members 5 20] [--epochs 10] [--repeats 3] [--shared-seed]
[--out f.json]
"""

import argparse
import json
import os
import time

import jax
import numpy as np
from hardware import cpu_model  # benchmarks/hardware.py (run as scripts)

import jaxprune.population as population_module
from jaxprune import data, pipeline, prune
from jaxprune.population import PopulationTrainer


def members(ds, cfg, n, shared_seed=False):
    """(seeds, inits, masks) of n members: seeds 0..n-1 (all 0 with `shared_seed`: the members
    of a curve or of a seed's retraining), seeded inits, random masks."""
    seeds = [0] * n if shared_seed else list(range(n))
    inits = [pipeline._init_params(ds, cfg, s)[1] for s in seeds]
    sparsity = np.linspace(0.1, 0.9, n) if n > 1 else [0.5]
    masks = [jax.tree.map(np.asarray, prune.random_mask(inits[i], float(sparsity[i]), seed=1000 + i)) for i in range(n)]
    return seeds, inits, masks


def one_by_one(ds, cfg, seeds, inits, masks):
    t0 = time.perf_counter()
    compile_s, params = 0.0, []
    for s, p0, m in zip(seeds, inits, masks):
        _, p, hist = pipeline.retrain(ds, cfg, p0, m, seed=s)
        sec = hist["epoch_seconds"]
        compile_s += max(sec[0] - float(np.median(sec[1:])), 0.0) if len(sec) > 1 else sec[0]
        params.append(p)
    return time.perf_counter() - t0, compile_s, params


def population_loop(ds, cfg, seeds, inits, masks):
    """Members one at a time through one PopulationTrainer (P = 1): one compile, no batching."""
    t0 = time.perf_counter()
    trainer = PopulationTrainer(
        cfg.train, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
    )
    compile_s = 0.0
    for s, p0, m in zip(seeds, inits, masks):
        res = trainer.fit(
            [s], init_params=p0, masks=m, epochs=cfg.retrain_epochs, target_train_accuracy=cfg.target_accuracy
        )
        compile_s += res.compile_seconds
    return time.perf_counter() - t0, compile_s


def population(ds, cfg, seeds, inits, masks, grouped=True):
    """One population; grouped=False trains members that share a seed without groups of one
    batch order (`PopulationTrainer.batch_groups`), as every population did before them."""
    saved = population_module.GROUP_MAX_PADDING
    population_module.GROUP_MAX_PADDING = saved if grouped else 0.0
    try:
        t0 = time.perf_counter()
        trainer = PopulationTrainer(
            cfg.train, ds.x_train, ds.y_train, n_classes=ds.n_classes, x_test=ds.x_test, y_test=ds.y_test
        )  # new trainer: compiles anew
        res = trainer.fit(
            seeds, init_params=inits, masks=masks, epochs=cfg.retrain_epochs, target_train_accuracy=cfg.target_accuracy
        )
    finally:
        population_module.GROUP_MAX_PADDING = saved
    return time.perf_counter() - t0, res.compile_seconds, res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--shared-seed",
        action="store_true",
        help="all members share seed 0 (one batch order: a curve's or a seed's retraining masks); "
        "adds the population trained without groups of one batch order",
    )
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    a = ap.parse_args()
    ds = data.load_dataset("mnist5k", seed=0)
    # a threshold of 1 is not reached in these few epochs: every net trains --epochs epochs
    cfg = pipeline.preset("mnist5k", quick=True).replace(max_retrain_epochs=a.epochs, target_accuracy=1.0)
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "load_average": os.getloadavg(),
    }
    print(
        f"cpu: {env['cpu']}, cores: {env['cores']}, jax {env['jax']}, device {env['device']}, "
        f"load average {env['load_average']} (a shared machine: other jobs ran meanwhile)"
    )
    print(
        f"mnist5k 784-50-30-10, {a.epochs} epochs x {-(-len(ds.y_train) // 128)} steps, "
        f"float32, min over {a.repeats} repeats"
    )
    rows = []
    for n in a.members:
        seeds, inits, masks = members(ds, cfg, n, a.shared_seed)
        keys = ["single_wall", "single_compile", "loop_wall", "loop_compile", "pop_wall", "pop_compile"]
        if a.shared_seed:
            keys += ["ungrouped_wall", "ungrouped_compile"]
        best = dict.fromkeys(keys, np.inf)
        for _ in range(a.repeats):
            w, c, single_params = one_by_one(ds, cfg, seeds, inits, masks)
            best["single_wall"], best["single_compile"] = (min(best["single_wall"], w), min(best["single_compile"], c))
            w, c = population_loop(ds, cfg, seeds, inits, masks)
            best["loop_wall"], best["loop_compile"] = min(best["loop_wall"], w), min(best["loop_compile"], c)
            w, c, res = population(ds, cfg, seeds, inits, masks)
            best["pop_wall"], best["pop_compile"] = min(best["pop_wall"], w), min(best["pop_compile"], c)
            if a.shared_seed:
                w, c, _ = population(ds, cfg, seeds, inits, masks, grouped=False)
                best["ungrouped_wall"] = min(best["ungrouped_wall"], w)
                best["ungrouped_compile"] = min(best["ungrouped_compile"], c)
        diff = max(
            float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
            for i in range(n)
            for x, y in zip(jax.tree.leaves(single_params[i]), jax.tree.leaves(res.member_params(i)))
        )
        row = {
            "members": n,
            "epochs": a.epochs,
            **best,
            "single_train": best["single_wall"] - best["single_compile"],
            "loop_train": best["loop_wall"] - best["loop_compile"],
            "pop_train": best["pop_wall"] - best["pop_compile"],
            "speedup_wall": best["single_wall"] / best["pop_wall"],
            "max_abs_param_diff_float32": diff,
        }
        row["speedup_train"] = row["single_train"] / row["pop_train"]
        row["speedup_train_vs_loop"] = row["loop_train"] / row["pop_train"]
        row["group_size"] = int(res.group_size)
        extra = ""
        if a.shared_seed:
            row["ungrouped_train"] = best["ungrouped_wall"] - best["ungrouped_compile"]
            row["speedup_train_vs_ungrouped"] = row["ungrouped_train"] / row["pop_train"]
            extra = (
                f" | groups of {res.group_size}: {row['speedup_train_vs_ungrouped']:4.2f}x the ungrouped "
                f"population ({best['ungrouped_wall']:6.2f} s)"
            )
        rows.append(row)
        print(
            f"P={n:3d}: one-by-one {best['single_wall']:7.2f} s (compile ~{best['single_compile']:6.2f} s) | "
            f"P=1 loop {best['loop_wall']:6.2f} s (compile {best['loop_compile']:5.2f} s) | "
            f"population {best['pop_wall']:6.2f} s (compile {best['pop_compile']:5.2f} s) | "
            f"speed-up wall {row['speedup_wall']:5.2f}x, excl. compile {row['speedup_train']:5.2f}x "
            f"(vs P=1 loop {row['speedup_train_vs_loop']:5.2f}x) | "
            f"max |param diff| {diff:.1e}{extra}",
            flush=True,
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
