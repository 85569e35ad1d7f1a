"""Multi-process for real: 2 JAX processes on localhost (a local coordinator, CPU collectives over
gloo) run the sharded Lyapunov and Granger kernels and one small ``jaxprune run``; the results and
the masks must equal the single-process run.

The worker (tests/multiprocess_worker.py) starts in both processes at once; while they run, this
process computes the single-process references. Each worker is its own process group, killed
with SIGKILL on timeout (JAX catches SIGTERM), so the test cannot hang.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxprune import distributed, granger, lyapunov, sharding
from jaxprune.cli import main as cli_main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import multiprocess_worker as worker

N_PROC = 2
TIMEOUT_S = 270  # the whole 2-process job (pytest-timeout: 300); a hang ends here
RUN_ARGS = [
    "run",
    "--dataset",
    "iris",
    "--quick",
    "--seeds",
    "1",
    "--epochs",
    "3",
    "--window",
    "60",
    "--stride",
    "30",
    "--maxlag",
    "2",
    "--pt-windows",
    "5",
    "--max-retrain-epochs",
    "1",
    "--no-progress",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, out_npz: Path, run_out: Path):
    port = _free_port()
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_NUM_PROCESSES=str(N_PROC),
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("XLA_FLAGS", None)  # one CPU device per process, whatever the parent uses
    procs = []
    for i in range(N_PROC):
        log = open(tmp_path / f"worker{i}.log", "w")  # noqa: SIM115 (closed in _wait)
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "multiprocess_worker.py"),
                        str(out_npz),
                        *RUN_ARGS,
                        "--out",
                        str(run_out),
                    ],
                    env={**env, "JAX_PROCESS_ID": str(i)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log,
            )
        )  # own process group: killable as a whole
    return procs


def _wait(procs, tmp_path: Path, deadline: float) -> list[int]:
    codes = []
    try:
        for p, _ in procs:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p, log in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            log.close()
    logs = "\n".join(f"--- worker {i}:\n" + (tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(N_PROC))
    assert len(codes) == N_PROC, f"2-process job still running after {TIMEOUT_S} s:\n{logs}"
    assert codes == [0] * N_PROC, f"workers exited {codes}:\n{logs}"
    return codes


def _records(run_dir: Path) -> list[dict]:
    """results.json's run records without the timings (the only thing allowed to differ)."""
    runs = json.loads((run_dir / "results.json").read_text())["runs"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]


def test_two_processes_equal_one(tmp_path):
    out_npz, multi, single = tmp_path / "kernels.npz", tmp_path / "multi", tmp_path / "single"
    deadline = time.monotonic() + TIMEOUT_S
    procs = _start(tmp_path, out_npz, multi)
    try:
        # single-process references, computed here while the workers run
        traj, risk, cause = worker.inputs()
        assert not distributed.is_initialized() and jax.process_count() == 1
        one = jax.local_devices()[:1]
        le1 = sharding.sharded_windowed_le(
            traj, window=100, stride=90, mode="parity", mesh=sharding.weight_mesh(one), chunk_size=8
        )
        plain = lyapunov.windowed_le(traj, window=100, stride=90, mode="parity")
        g1 = sharding.sharded_granger_tests(risk, cause, maxlag=2, mesh=sharding.weight_mesh(one), chunk_size=8)
        gp = granger.granger_tests(risk, cause, maxlag=2)
        assert cli_main([*RUN_ARGS, "--out", str(single)]) == 0
    finally:
        _wait(procs, tmp_path, deadline)

    k = np.load(out_npz)
    assert int(k["n_processes"]) == N_PROC and int(k["n_devices"]) == N_PROC
    np.testing.assert_array_equal(k["le"], le1.le)  # bit for bit
    np.testing.assert_array_equal(k["le"], plain.le)
    np.testing.assert_array_equal(k["status"], le1.status)
    assert np.isfinite(k["le"][:, 0]).all() and np.isnan(k["le"][:, 5]).all()
    np.testing.assert_array_equal(k["p"], g1.ssr_ftest.pvalue)
    np.testing.assert_array_equal(k["stat"], g1.ssr_ftest.statistic)
    np.testing.assert_array_equal(k["gstatus"], g1.status)
    np.testing.assert_allclose(k["p"], gp.ssr_ftest.pvalue, rtol=1e-12, atol=0)
    assert k["p"][0, -1] < 1e-6 and np.median(k["p"][1:, -1]) > 0.05  # the planted cause

    # the run: process 0 wrote OUT, process 1 its own sibling directory, never OUT
    assert (multi / "results.json").exists()
    assert (multi.parent / "multi.process1" / "results.json").exists()
    a_multi = np.load(multi / "seed_0" / "analysis.npz")
    a_single = np.load(single / "seed_0" / "analysis.npz")
    assert sorted(a_multi.files) == sorted(a_single.files)
    for name in a_single.files:
        np.testing.assert_array_equal(a_multi[name], a_single[name], err_msg=name)
    assert a_single["mask_legcnet_ft"].any() and not a_single["mask_legcnet_ft"].all()
    assert _records(multi) == _records(single)
    d_multi = np.load(multi / "seed_0" / "dense.npz")
    d_single = np.load(single / "seed_0" / "dense.npz")
    np.testing.assert_array_equal(d_multi["le"], d_single["le"])
    results = json.loads((multi / "results.json").read_text())
    assert len(results["jax"]["devices"]) == N_PROC


@pytest.mark.parametrize(
    "env, want",
    [
        ({}, None),
        ({"JAXPRUNE_DISTRIBUTED": "0"}, None),
        ({"JAXPRUNE_DISTRIBUTED": "1"}, {}),
        (
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"},
            {"coordinator_address": "h:1", "num_processes": 4, "process_id": 3},
        ),
    ],
)
def test_settings_from_env(env, want):
    assert distributed._settings(env) == want


@pytest.mark.parametrize(
    "env, msg",
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "missing"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "< JAX"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "x", "JAX_PROCESS_ID": "0"}, "integer"),
        ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "host:port"),
        ({"JAXPRUNE_DISTRIBUTED": "yes"}, "0 or 1"),
    ],
)
def test_bad_settings_are_one_line_errors(env, msg):
    with pytest.raises(ValueError, match=msg):
        distributed._settings(env)


def test_cli_bad_setting_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    assert cli_main(["run", "--dataset", "iris", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxprune: error: multi-process setting incomplete") and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_single_process_commands_refuse_several_processes(monkeypatch, capsys, tmp_path):
    """analyze / verify / export write into an existing run directory: several processes would
    race on the same files, so they refuse (exit 2) when a multi-process run was initialised."""
    monkeypatch.setattr(distributed, "initialize_from_env", lambda env=None: True)
    assert cli_main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxprune: error: `jaxprune verify` runs in one process")
    assert "\n" not in err
