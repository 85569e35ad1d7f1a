"""Scale benchmark: full LEGCNet analysis (train + streaming LE + Granger) for growing MLPs on
mnist5k, time and peak memory per stage, growth exponents in weights and steps.

    python benchmarks/scale.py                         # 784-50-30-10 ... 784-1000-1000-10
    python benchmarks/scale.py --hidden 50,30 --epochs 41,82 --json out.json

Every (net, stage) runs in its own subprocess so its peak RSS (``getrusage`` max RSS) is the
stage's own; "base" is the RSS after imports and data loading, before the stage's work.

Stages (mnist5k: 3,500 training images, batch 128, 28 steps per epoch; windows 50 / stride 45):
* ``train``: dense training alone (no window function, nothing kept).
* ``train+le``: the pipeline's stage 1: the same training with the Lyapunov step applied on
  device to each completed window inside the jitted epoch (`jaxprune.sharding.window_le_fn`,
  chunked to ``--budget-mb``), keeping only the (n_windows, n_weights) exponents and the risk.
  LE time = train+le - train.
* ``granger``: the Granger tests of every weight's LE series against the risk series
  (`jaxprune.sharding.sharded_granger_tests`, maxlag ``--maxlag``), NaN filled with 0.

Memory figures printed for each net: the streaming analysis holds the ring buffer
(window x weights x 4 B) and the kept exponents (n_windows x weights x 5 B); keeping the
trajectory instead needs steps x weights x 4 B.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WINDOW, STRIDE = 50, 45


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KB


def _current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


# ----------------------------------------------------------------------------- child stages
def run_stage(stage: str, hidden: tuple[int, ...], epochs: int, args, workdir: Path) -> dict:
    import jax

    if args.le_mode == "parity":
        jax.config.update("jax_enable_x64", True)
    from jaxprune import sharding
    from jaxprune.data import load_dataset
    from jaxprune.train import TrainConfig, Trainer

    data = load_dataset("mnist5k", seed=0)
    cfg = TrainConfig(hidden=hidden, epochs=epochs, window=WINDOW, stride=STRIDE, seed=0)
    budget = args.budget_mb * 2**20
    base = _current_rss_mb()
    out: dict = {"stage": stage, "hidden": list(hidden), "epochs": epochs, "base_rss_mb": base}
    le_path = workdir / f"le_{'_'.join(map(str, hidden))}_{epochs}.npz"
    if stage in ("train", "train+le"):
        window_fn = None
        if stage == "train+le":
            window_fn = sharding.window_le_fn(memory_budget_bytes=budget, window=WINDOW, mode=args.le_mode)
        trainer = Trainer(
            cfg,
            data.x_train,
            data.y_train,
            n_classes=data.n_classes,
            window_fn=window_fn,
            keep_window_outputs=window_fn is not None,
        )
        t0 = time.perf_counter()
        res = trainer.fit()
        out["seconds"] = time.perf_counter() - t0
        # the first epoch holds the compilations: report them apart
        out["first_epoch_seconds"] = res.epoch_seconds[0]
        out["steady_seconds"] = float(np.sum(res.epoch_seconds[1:]))
        out.update(
            n_weights=trainer.n_weights,
            steps=res.steps,
            n_windows=int(len(res.window_end_steps)),
            train_accuracy=res.train_accuracy,
        )
        if stage == "train+le":
            np.savez(le_path, le=np.asarray(res.window_outputs[0]), risk=res.risk)
    elif stage == "granger":
        from jaxprune import granger as granger_mod

        d = np.load(le_path)
        le, risk = d["le"].astype(np.float64), d["risk"].astype(np.float64)
        x = np.nan_to_num(le.T, nan=0.0)  # the original's NaN fill
        del le, d
        jax.config.update("jax_enable_x64", True)
        base = _current_rss_mb()
        out["base_rss_mb"] = base
        n = len(risk)
        maxlag = max(1, min(args.maxlag, (n - 2) // 3))
        t0 = time.perf_counter()
        res = sharding.sharded_granger_tests(risk, x, maxlag=maxlag, memory_budget_bytes=budget)
        pmin, _ = granger_mod.min_pvalue(res, "ssr_chi2test")
        np.asarray(pmin)
        out["seconds"] = time.perf_counter() - t0
        out.update(n_weights=int(x.shape[0]), n_windows=n, maxlag=maxlag, ok=int(np.sum(np.asarray(res.status) == 0)))
    out["peak_rss_mb"] = _rss_mb()
    return out


# ----------------------------------------------------------------------------- parent
def hardware() -> dict:
    import jax

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem, 1),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }


def child(stage, hidden, epochs, args, workdir) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        stage,
        "--hidden",
        ",".join(map(str, hidden)),
        "--epochs",
        str(epochs),
        "--le-mode",
        args.le_mode,
        "--budget-mb",
        str(args.budget_mb),
        "--maxlag",
        str(args.maxlag),
        "--workdir",
        str(workdir),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{stage} {hidden} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _slope(x, y) -> float:
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", nargs="+", default=["50,30", "300,100", "500,500", "1000,1000"])
    p.add_argument(
        "--epochs",
        default="82",
        help="epochs of every net; two values (e.g. 41,82) also time the smallest net at both, for the growth in steps",
    )
    p.add_argument(
        "--big-epochs", type=int, default=None, help="fewer epochs for the largest net (its times are then per window)"
    )
    p.add_argument("--le-mode", default="fast", choices=("fast", "parity"))
    p.add_argument("--budget-mb", type=float, default=512.0, help="per-device kernel budget")
    p.add_argument("--maxlag", type=int, default=14)
    p.add_argument("--json", default=None)
    p.add_argument("--child", default=None)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    if args.child:
        hidden = tuple(int(h) for h in args.hidden[0].split(","))
        out = run_stage(args.child, hidden, int(args.epochs), args, Path(args.workdir))
        print(json.dumps(out))
        return
    hw = hardware()
    print("hardware:", json.dumps(hw))
    epochs_list = [int(e) for e in args.epochs.split(",")]
    epochs = epochs_list[-1]
    nets = [tuple(int(h) for h in s.split(",")) for s in args.hidden]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [(h, epochs) for h in nets]
        if args.big_epochs:
            runs[-1] = (nets[-1], args.big_epochs)
        runs += [(nets[0], e) for e in epochs_list[:-1]]
        for hidden, ep in runs:
            row = {"hidden": hidden, "epochs": ep}
            for stage in ("train", "train+le", "granger"):
                t0 = time.perf_counter()
                row[stage] = child(stage, hidden, ep, args, tmp)
                print(
                    f"  {hidden} {ep} ep {stage}: {row[stage].get('seconds', 0):.1f} s, "
                    f"peak {row[stage]['peak_rss_mb']:.0f} MB (wall {time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            rows.append(row)
    print()
    print(
        f"le mode {args.le_mode}, budget {args.budget_mb:.0f} MB/device, window {WINDOW} "
        f"stride {STRIDE}, Granger maxlag <= {args.maxlag}"
    )
    hdr = (
        "net",
        "weights",
        "steps",
        "windows",
        "train s",
        "LE s",
        "LE ms/window",
        "Granger s",
        "peak MB train",
        "peak MB train+LE",
        "peak MB Granger",
        "stream MB",
        "full traj MB",
    )
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    table = []
    for row in rows:
        tr, tl, gr = row["train"], row["train+le"], row["granger"]
        W, steps, nw = tl["n_weights"], tl["steps"], tl["n_windows"]
        # steady state: epochs after the first (compilation), scaled to the whole run
        scale = (row["epochs"]) / max(row["epochs"] - 1, 1)
        t_train = tr["steady_seconds"] * scale
        t_le = max(tl["steady_seconds"] - tr["steady_seconds"], 0.0) * scale
        stream_mb = (WINDOW * W * 4 + nw * W * 5) / 2**20
        full_mb = steps * W * 4 / 2**20
        rec = dict(
            net="784-" + "-".join(map(str, row["hidden"])) + "-10",
            weights=W,
            steps=steps,
            windows=nw,
            train_s=t_train,
            le_s=t_le,
            le_ms_per_window=1e3 * t_le / nw,
            granger_s=gr["seconds"],
            peak_train=tr["peak_rss_mb"],
            peak_train_le=tl["peak_rss_mb"],
            peak_granger=gr["peak_rss_mb"],
            stream_mb=stream_mb,
            full_traj_mb=full_mb,
            maxlag=gr["maxlag"],
            first_epoch_train_s=tr["first_epoch_seconds"],
            first_epoch_train_le_s=tl["first_epoch_seconds"],
            raw=row,
        )
        table.append(rec)
        print(
            f"| {rec['net']} | {W:,} | {steps} | {nw} | {t_train:.1f} | {t_le:.1f} | "
            f"{rec['le_ms_per_window']:.0f} | {rec['granger_s']:.1f} | {rec['peak_train']:.0f} | "
            f"{rec['peak_train_le']:.0f} | {rec['peak_granger']:.0f} | {stream_mb:.0f} | "
            f"{full_mb:.0f} |"
        )
    # growth in weights: the nets run for the same steps (the largest one too unless
    # --big-epochs; then its per-window LE time still enters, its Granger time does not)
    by_w = table[: len(nets)]
    same_steps = [r for r in by_w if r["raw"]["epochs"] == epochs]
    expo = {
        "le_per_window_vs_weights": _slope([r["weights"] for r in by_w], [r["le_ms_per_window"] for r in by_w]),
        "granger_vs_weights": _slope([r["weights"] for r in same_steps], [r["granger_s"] for r in same_steps]),
        "train_per_step_vs_weights": _slope([r["weights"] for r in by_w], [r["train_s"] / r["steps"] for r in by_w]),
    }
    same = [r for r in table if r["raw"]["hidden"] == nets[0]]
    if len(same) > 1:
        expo["le_vs_steps"] = _slope([r["steps"] for r in same], [r["le_s"] for r in same])
        expo["granger_vs_steps"] = _slope([r["steps"] for r in same], [r["granger_s"] for r in same])
        expo["train_vs_steps"] = _slope([r["steps"] for r in same], [r["train_s"] for r in same])
    print("growth exponents (log-log slopes):", json.dumps({k: round(v, 2) for k, v in expo.items()}))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"hardware": hw, "args": vars(args), "rows": table, "exponents": expo}, indent=2, default=str)
        )


if __name__ == "__main__":
    main()
