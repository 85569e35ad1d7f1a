"""Check a finished run against the slow reference tools, on a random sample of weights.

`verify_run` draws K of the weights whose raw windows the run kept (``dense.npz``:
``sample_windows``), recomputes their Lyapunov series with the literal NumPy loop of TISEAN's lyap_r
(`jaxprune.lyapunov_reference`) and their Granger tests with statsmodels, and reports the largest
differences and every mask decision that would flip: end to end (``pvalue_max_rel_diff``, the
reference LE series through statsmodels) and for the Granger kernel alone
(``granger_pvalue_max_rel_diff``, the run's own LE series through statsmodels). A GPU/TPU run
can be trusted this way without rerunning the slow tools on every weight.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from jaxprune.lyapunov_reference import lyap_r_numpy


def _statsmodels_min_p(risk: np.ndarray, x: np.ndarray, maxlag: int, test: str) -> float:
    """statsmodels' min p over lags 1..maxlag, NaN where statsmodels refuses the pair."""
    from statsmodels.tsa.stattools import grangercausalitytests

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = grangercausalitytests(np.column_stack([risk, x]), maxlag=maxlag, verbose=False)
    except TypeError:  # statsmodels without the verbose argument
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = grangercausalitytests(np.column_stack([risk, x]), maxlag=maxlag)
    except Exception:  # InfeasibleTestError, LinAlgError...: untestable, as our status codes say
        return float("nan")
    return float(min(res[p][0][test][1] for p in range(1, maxlag + 1)))


def verify_seed(seed_dir: Path, cfg: dict, *, sample: int | None, rng: np.random.Generator) -> dict:
    from jaxprune.rundir import load_npz

    dense = load_npz(seed_dir / "dense.npz")  # a corrupt file: an error naming it
    analysis = load_npz(seed_dir / "analysis.npz")
    windows = np.asarray(dense["sample_windows"], np.float64)  # (n_windows, window, K)
    idx = np.asarray(dense["sample_idx"])
    le, risk = np.asarray(dense["le"]), np.asarray(dense["risk"])
    k = len(idx) if sample is None else min(sample, len(idx))
    pick = np.sort(rng.choice(len(idx), size=k, replace=False))
    opts = dict(m=cfg["m"], d=cfg["d"], t=cfg["theiler"], s=cfg["s"], r=cfg["r"], quantize=cfg["quantize"])
    le_diff, nan_mismatch = 0.0, 0
    ref_le = np.empty((len(risk), k))
    for c, j in enumerate(pick):
        for w in range(len(risk)):
            S = lyap_r_numpy(windows[w, :, j], **opts)[0]
            ref_le[w, c] = S[1] - S[0]
        got = le[:, idx[j]]
        both = np.isfinite(ref_le[:, c]) & np.isfinite(got)
        nan_mismatch += int(np.sum(np.isfinite(ref_le[:, c]) != np.isfinite(got)))
        if both.any():
            le_diff = max(le_diff, float(np.max(np.abs(ref_le[both, c] - got[both]))))
    out = {
        "seed_dir": seed_dir.name,
        "weights_checked": int(k),
        "le_max_abs_diff": le_diff,
        "le_nan_mismatches": nan_mismatch,
        "masks": {},
    }
    for method in ("legcnet_ft", "legcnet_pt"):
        n = len(risk) if method == "legcnet_ft" else min(cfg["pt_windows"], len(risk))
        maxlag = int(analysis[f"maxlag_{method}"])
        pmin = np.asarray(analysis[f"pmin_{method}"])
        keep = np.asarray(analysis[f"mask_{method}"])
        p_diff, p_diff_own, flips, p_nan_mismatch = 0.0, 0.0, [], 0

        def reference_p(series):
            """statsmodels' min p of an LE series as the run would test it (NaN fill, rounding);
            NaN for a series without any estimate or one statsmodels refuses."""
            if np.all(np.isnan(series)):
                return float("nan")
            # called only within this iteration of the method loop: n, maxlag are current
            p = _statsmodels_min_p(
                risk[:n],  # noqa: B023
                np.nan_to_num(series, nan=cfg["nan_fill"]),
                maxlag,  # noqa: B023
                cfg["test"],
            )
            if cfg.get("round_pvalues") is not None and np.isfinite(p):
                p = round(p, cfg["round_pvalues"])
            return p

        def rel_diff(p_ref, p_got):
            if np.isfinite(p_ref) and np.isfinite(p_got):
                return abs(p_ref - p_got) / max(abs(p_ref), 1e-10)
            return 0.0

        for c, j in enumerate(pick):
            w = int(idx[j])
            p_got = float(pmin[w])
            # the Granger kernel alone: statsmodels on the run's own LE series (in fast mode the
            # float32 LE differs from the reference loop's, and so do the p-values below)
            if np.isfinite(p_got):
                p_diff_own = max(p_diff_own, rel_diff(reference_p(le[:n, w]), p_got))
            p_ref = reference_p(ref_le[:n, c])
            p_diff = max(p_diff, rel_diff(p_ref, p_got))
            # a p-value on one side only is a disagreement, not a zero difference
            p_nan_mismatch += int(np.isfinite(p_ref) != np.isfinite(p_got))
            # the decision statsmodels' p would give under the same policy and alpha (no correction)
            if np.isfinite(p_ref):
                ref_keep = p_ref < cfg["alpha"]
            else:
                ref_keep = cfg["untestable"] == "keep"
            if cfg["correction"] == "none" and cfg.get("layers") is None and bool(keep[w]) != ref_keep:
                flips.append({"weight": w, "p_statsmodels": p_ref, "p_jaxprune": p_got, "kept_by_run": bool(keep[w])})
        out["masks"][method] = {
            "pvalue_max_rel_diff": p_diff,
            "granger_pvalue_max_rel_diff": float(p_diff_own),
            "pvalue_nan_mismatches": p_nan_mismatch,
            "decision_flips": flips,
        }
    return out


def verify_run(run_dir, *, sample: int | None = None, seed: int = 0) -> dict:
    """Verify every seed of a finished `jaxprune run` directory; returns a JSON-able report.

    Decisions are only compared for runs without a multiple-testing correction or layer filter
    (the check recomputes the per-weight rule alone).
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no config.json: not a `jaxprune run` directory")
    from jaxprune.rundir import read_json

    saved = read_json(cfg_path)
    from jaxprune.config import flat_config_dict

    cfg = flat_config_dict(saved["config"])  # grouped (this version) or flat (earlier runs)
    rng = np.random.default_rng(seed)
    # only the run's own seeds: a seed_K/ left by an earlier run with more seeds is not this run
    run_seeds = saved.get("seeds")
    candidates = (
        [run_dir / f"seed_{int(s)}" for s in run_seeds] if run_seeds is not None else sorted(run_dir.glob("seed_*"))
    )
    seed_dirs = [p for p in candidates if (p / "analysis.npz").exists()]
    if not seed_dirs:
        raise FileNotFoundError(f"{run_dir} holds no finished seed (seed_*/analysis.npz)")
    per_seed = [verify_seed(p, cfg, sample=sample, rng=rng) for p in seed_dirs]
    return {
        "run_dir": str(run_dir),
        "le_mode": cfg["le_mode"],
        "seeds": per_seed,
        "le_max_abs_diff": max(s["le_max_abs_diff"] for s in per_seed),
        "pvalue_max_rel_diff": max(m["pvalue_max_rel_diff"] for s in per_seed for m in s["masks"].values()),
        "granger_pvalue_max_rel_diff": max(
            m["granger_pvalue_max_rel_diff"] for s in per_seed for m in s["masks"].values()
        ),
        "decision_flips": sum(len(m["decision_flips"]) for s in per_seed for m in s["masks"].values()),
        # windows / weights where exactly one side has an estimate: the differences above only
        # cover entries finite on both sides, so these must be 0 for the run to be trusted
        "nan_mismatches": sum(s["le_nan_mismatches"] for s in per_seed)
        + sum(m["pvalue_nan_mismatches"] for s in per_seed for m in s["masks"].values()),
    }
