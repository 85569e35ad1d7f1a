"""Compact export: the cascade on hand-built nets, the sparse encodings, the serialised model,
and `jaxprune export` end to end on a tiny iris run."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit

from jaxprune import export as ex
from jaxprune import rundir
from jaxprune.cli import main

ACT_NP = {"sigmoid": expit, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0.0)}


def masked_numpy(x, kernels, biases, keep, activation="sigmoid"):
    """Oracle: the masked full-width net in float64 NumPy, ``(batch, n_features) -> (batch,
    n_out)``."""
    h = np.asarray(x, np.float64)
    for i, (k, b, m) in enumerate(zip(kernels, biases, keep)):
        h = h @ np.where(m, k, 0.0) + b
        if i < len(kernels) - 1:
            h = ACT_NP[activation](h)
    return h


def random_net(widths, seed):
    rng = np.random.default_rng(seed)
    kernels = [rng.normal(size=(a, b)).astype(np.float32) for a, b in itertools.pairwise(widths)]
    biases = [rng.normal(size=b).astype(np.float32) for b in widths[1:]]
    return kernels, biases


def full_keep(kernels):
    return [np.ones(k.shape, bool) for k in kernels]


# ------------------------------------------------------------------------------ cascade
def test_unit_without_outputs_disappears_and_so_do_units_feeding_only_it():
    widths = (4, 5, 4, 3)
    kernels, biases = random_net(widths, 0)
    keep = full_keep(kernels)
    keep[2][1, :] = False  # hidden-2 unit 1 feeds nothing
    keep[1][2, :] = False  # hidden-1 units 2 and 3 feed only hidden-2 unit 1
    keep[1][3, :] = False
    keep[1][2, 1] = keep[1][3, 1] = True
    keep[0][:, 2] = False  # input 0 feeds only hidden-1 units 2 and 3
    keep[0][:, 3] = False
    keep[0][0, :] = False
    keep[0][0, 2] = keep[0][0, 3] = True
    net = ex.compact(kernels, biases, keep, "sigmoid")
    assert net.widths == (3, 3, 3, 3)
    np.testing.assert_array_equal(net.input_index, [1, 2, 3])
    np.testing.assert_array_equal(net.kept_units[0], [0, 1, 4])
    np.testing.assert_array_equal(net.unused_units[0], [2, 3])
    np.testing.assert_array_equal(net.kept_units[1], [0, 2, 3])
    np.testing.assert_array_equal(net.unused_units[1], [1])
    assert all(f.size == 0 for f in net.folded_units)
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(net(x)), masked_numpy(x, kernels, biases, keep), rtol=1e-5, atol=1e-5)


def test_unit_without_inputs_folds_into_the_next_bias_and_cascades():
    widths = (3, 4, 3, 2)
    kernels, biases = random_net(widths, 2)
    keep = full_keep(kernels)
    keep[0][:, 0] = False  # hidden-1 unit 0: constant sigmoid(b)
    keep[1][:, 2] = False  # hidden-2 unit 2 is fed only by hidden-1 unit 0
    keep[1][0, 2] = True
    net = ex.compact(kernels, biases, keep, "tanh")
    assert net.widths == (3, 3, 2, 2)
    np.testing.assert_array_equal(net.folded_units[0], [0])
    np.testing.assert_array_equal(net.folded_units[1], [2])
    x = np.random.default_rng(3).normal(size=(64, 3)).astype(np.float32)
    want = masked_numpy(x, kernels, biases, keep, "tanh")
    np.testing.assert_allclose(np.asarray(net(x)), want, rtol=1e-5, atol=1e-5)
    # the fold matters: dropping the constant units without it changes the function
    dropped = [k.copy() for k in keep]
    dropped[1][0, :] = False
    dropped[2][2, :] = False
    assert np.max(np.abs(masked_numpy(x, kernels, biases, dropped, "tanh") - want)) > 1e-2


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_random_masks_keep_the_function_and_leave_no_dead_unit(activation):
    rng = np.random.default_rng(4)
    widths = (7, 9, 8, 3)
    dropped_any = 0
    for trial in range(30):
        kernels, biases = random_net(widths, 10 + trial)
        density = rng.uniform(0.05, 0.5)
        keep = [rng.random(k.shape) < density for k in kernels]
        net = ex.compact(kernels, biases, keep, activation)
        x = rng.normal(size=(32, 7)).astype(np.float32)
        np.testing.assert_allclose(
            np.asarray(net(x)), masked_numpy(x, kernels, biases, keep, activation), rtol=1e-4, atol=1e-5
        )
        for i in range(1, len(net.keep)):  # every surviving hidden unit has an input and an output
            assert net.keep[i - 1].any(axis=0).all() and net.keep[i].any(axis=1).all()
        assert net.keep[0].any(axis=1).all()
        dropped_any += sum(w0 - w for w0, w in zip(widths[:-1], net.widths[:-1]))
    assert dropped_any > 0  # the trials did exercise the cascade


def test_a_dead_hidden_layer_leaves_a_constant_net_that_still_exports(tmp_path):
    widths = (4, 3, 2)
    kernels, biases = random_net(widths, 5)
    keep = full_keep(kernels)
    keep[0][:] = False  # nothing reaches the hidden layer: the output is constant
    net = ex.compact(kernels, biases, keep)
    assert net.widths == (0, 0, 2)
    x = np.random.default_rng(6).normal(size=(5, 4)).astype(np.float32)
    want = masked_numpy(x, kernels, biases, keep)
    np.testing.assert_allclose(np.asarray(net(x)), want, rtol=1e-6, atol=1e-6)
    ex.write_model(net, tmp_path, platforms=("cpu",))
    np.testing.assert_allclose(np.asarray(ex.load(tmp_path)(x)), want, rtol=1e-6, atol=1e-6)


def test_compact_rejects_mismatched_shapes():
    kernels, biases = random_net((3, 4, 2), 0)
    with pytest.raises(ValueError, match="do not chain"):
        ex.compact(kernels, biases, [np.ones((3, 4), bool), np.ones((3, 2), bool)])


# ------------------------------------------------------------------------------ sparse form
@pytest.mark.parametrize("density,fmt", [(1.0, "dense"), (0.5, "bitmask"), (0.02, "coo")])
def test_sparse_encodings_round_trip_and_pick_the_smallest(density, fmt):
    from jax.experimental import sparse as jsparse

    rng = np.random.default_rng(7)
    k = rng.normal(size=(300, 40)).astype(np.float32)
    k[rng.random(k.shape) >= density] = 0.0
    enc = ex.encode_kernel(k)
    assert str(enc["format"]) == fmt
    np.testing.assert_array_equal(ex.decode_kernel(enc), k)
    sizes = ex.encoding_bytes(k.shape, int(np.count_nonzero(k)))
    assert ex.payload_bytes(enc) == sizes[fmt] == min(sizes.values())
    if fmt == "coo":  # BCOO's layout: same indices, same order, same values
        bcoo = jsparse.BCOO.fromdense(k)
        np.testing.assert_array_equal(enc["indices"], np.asarray(bcoo.indices))
        np.testing.assert_array_equal(enc["values"], np.asarray(bcoo.data))
        assert enc["indices"].dtype == np.uint16  # 300 rows do not fit uint8


def test_save_and_load_sparse(tmp_path):
    kernels, biases = random_net((20, 30, 5), 8)
    rng = np.random.default_rng(9)
    keep = [np.eye(20, 30, dtype=bool), rng.random(kernels[1].shape) < 0.6]
    net = ex.compact(kernels, biases, keep)  # hidden units 20..29 have no input: folded
    assert net.widths[:2] == (20, 20) and net.folded_units[0].size == 10
    layers = ex.save_sparse(tmp_path / "s.npz", net)
    back = ex.load_sparse(tmp_path / "s.npz")
    for a, b in zip(back["kernels"], net.kernels):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back["input_index"], net.input_index)
    assert [layer["format"] for layer in layers] == ["coo", "bitmask"]  # 1 / 20 and 0.6 dense
    assert all(x["bytes"] == min(x["bytes_by_format"].values()) for x in layers)


@pytest.mark.parametrize("unused,mode", [((2,), "expand"), ((0, 2, 3, 5), "gather")])
def test_load_runs_any_batch_without_the_training_code(tmp_path, unused, mode):
    kernels, biases = random_net((6, 8, 3), 11)
    keep = full_keep(kernels)
    keep[0][list(unused), :] = False  # these inputs are not read
    net = ex.compact(kernels, biases, keep, "relu")
    assert net.input_mode == mode and net.widths[0] == 6 - len(unused)
    ex.write_model(net, tmp_path, platforms=("cpu",))
    with np.load(tmp_path / "params.npz") as f:  # stored compact, whatever the mode
        assert f["kernel_0"].shape == (6 - len(unused), 8)
    x = np.random.default_rng(12).normal(size=(1024, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    want = masked_numpy(x, kernels, biases, keep, "relu")
    f = ex.load(tmp_path)
    for batch in (1, 1024):
        np.testing.assert_allclose(np.asarray(f(x[:batch])), want[:batch], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        f(x[:, :5])
    code = (
        f"import sys, numpy as np; from jaxprune.export import load; "
        f"d = {str(tmp_path)!r}; y = np.asarray(load(d)(np.load(d + '/x.npy'))); "
        f"np.save(d + '/y.npy', y); "
        f"bad = [m for m in ('flax', 'optax', 'orbax', 'jaxprune.train', 'jaxprune.models') "
        f"if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    root = str(Path(ex.__file__).parents[1])  # this checkout's jaxprune, not an installed one
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-seed iris run: 24 epochs x 15 steps, 13 windows, retraining <= 10 epochs."""
    from jaxprune.data import load_dataset
    from jaxprune.pipeline import LegcnetConfig, run
    from jaxprune.train import TrainConfig

    cfg = LegcnetConfig(
        train=TrainConfig(hidden=(6,), batch_size=8, epochs=24, window=30, stride=27, learning_rate=0.1),
        maxlag=4,
        pt_windows=8,
        target_accuracy=0.8,
        le_mode="fast",
        verify_sample=4,
        baselines_for=("legcnet_ft",),
        max_retrain_epochs=10,
    )
    out = tmp_path_factory.mktemp("run")
    results = run(lambda s: load_dataset("iris", seed=s), cfg, [0], out, checkpoint_every_s=0.0)
    return out, results


@pytest.mark.timeout(600)
def test_cli_export_end_to_end(tiny_run, tmp_path, capsys):
    run_dir, results = tiny_run
    rec = {r["name"]: r for r in results["runs"]}
    assert rec["magnitude"]["sparsity"] > 0  # the magnitude net does prune something
    out = tmp_path / "M"
    assert main(["export", str(run_dir), "--method", "magnitude", "--out", str(out), "--repeats", "3"]) == 0
    assert "predictions match" in capsys.readouterr().out
    man = json.loads((out / "manifest.json").read_text())
    assert man["predictions_match"] is True and man["check"]["labels_mismatched"] == 0
    assert man["check"]["test_accuracy"] == rec["magnitude"]["test_accuracy"]
    assert man["original_widths"] == [4, 6, 3] and man["method"] == "magnitude"
    assert man["seed"] == 0
    kept = sum(rec["magnitude"]["kept_per_layer"])
    assert man["parameters"]["kept_weights"] == kept
    assert man["flops"]["masked"] == rec["magnitude"]["flops"]
    assert man["bytes"]["sparse"] < man["bytes"]["dense"]
    assert man["bytes"]["compact"] <= man["bytes"]["dense"]
    for who in ("dense", "exported"):
        for b in ("batch_1", "batch_1024"):
            assert man["latency_ms"][who][b] > 0
    # the model reproduces the retrained net's predictions through load()
    from jaxprune.data import load_dataset

    data = load_dataset("iris", seed=0)
    scores = np.asarray(ex.load(out)(data.x_test))
    net = rundir.load_retrained(run_dir, 0, "magnitude")
    keep = [np.ones(k.shape, bool) for k in net["kernels"]]  # pruned weights are stored as 0
    want = masked_numpy(data.x_test, net["kernels"], net["biases"], keep)
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-5)
    # report.md's deployment table lists every method, with the measured latency for this one
    from jaxprune.report import render

    text = render(results, run_dir, extras={"notes": {}})
    section = text[text.index("## Deployment") :]
    for name in ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude"):
        assert f"| {name} |" in section
    line = next(s for s in section.splitlines() if s.startswith("| magnitude |"))
    assert "n/a" not in line


@pytest.mark.timeout(600)
def test_cli_export_errors(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    cases = [
        ([str(tmp_path / "nowhere"), "--method", "dense"], "results.json"),
        ([str(run_dir), "--method", "legcnet_xx"], "legcnet_xx"),
        ([str(run_dir), "--method", "dense", "--seed", "7"], "seed 7"),
    ]
    for args, needle in cases:
        assert main(["export", *args, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxprune: error:") and needle in err, err
    # a run saved before biases were: a clear error, not a wrong model
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    path = rundir.retrained_path(old, 0, "dense")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("bias_")}
    np.savez(path, **arrays)
    assert main(["export", str(old), "--method", "dense", "--out", str(tmp_path / "o")]) == 2
    assert "no biases" in capsys.readouterr().err
