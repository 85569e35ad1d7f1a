"""Run directories identify one run, bad inputs fail before any compute with one clear line,
corrupt files are named, diverged training is reported as such, and JSON stays valid.

One tiny iris run (CLI, module fixture) is copied by the tests that need a finished run; every
other case fails before training."""

import json
import shutil
import warnings
import zipfile

import numpy as np
import pytest

from jaxprune import rundir
from jaxprune.cli import _join_negative_values, build_parser, main
from jaxprune.data import load_csv, load_dataset, scale_features
from jaxprune.train import TrainConfig, Trainer, TrainingDiverged, save_metrics

# iris, 120 training examples, batch 8: 15 steps per epoch; 12 epochs = 180 steps = 6 windows.
RUN = [
    "run",
    "--dataset",
    "iris",
    "--quick",
    "--epochs",
    "12",
    "--batch-size",
    "8",
    "--window",
    "30",
    "--stride",
    "27",
    "--lr",
    "0.1",
    "--maxlag",
    "1",
    "--pt-windows",
    "5",
    "--target-accuracy",
    "0.8",
    "--max-retrain-epochs",
    "2",
    "--le-mode",
    "fast",
    "--no-progress",
]
TRAIN = [
    "train",
    "--dataset",
    "iris",
    "--hidden",
    "6",
    "--batch-size",
    "16",
    "--epochs",
    "2",
    "--window",
    "10",
    "--stride",
    "9",
    "--no-progress",
]


def _strict_json(path):
    """json.loads that refuses the bare NaN / Infinity Python's json writes by default."""

    def refuse(token):
        raise ValueError(f"{path}: bare {token} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxprune: error:"), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    assert main(RUN + ["--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    return out


# ------------------------------------------------------------------------------ the fingerprint
@pytest.mark.timeout(600)
def test_run_json_is_written_and_results_are_strict_json(base_run):
    fp = _strict_json(base_run / "run.json")
    assert fp["config"]["train"]["epochs"] == 12 and fp["seeds"] == [0]
    assert fp["dataset"] == "iris" and len(fp["data_sha256"]) == 64 and fp["version"]
    # stage files carry digests: the run's on the retraining records, the dense stage's own
    # (training and LE inputs only) on dense.npz
    assert json.loads((base_run / "seed_0" / "retrain_dense.json").read_text())["run_digest"] == fp["digest"]
    from jaxprune.pipeline import LegcnetConfig, dense_stage_digest

    cfg = LegcnetConfig.from_dict(fp["config"])
    assert str(rundir.load_dense(base_run, 0, keys=("run_digest",))["run_digest"]) == dense_stage_digest(
        cfg, load_dataset("iris", seed=0), 0
    )
    for name in ("results.json", "config.json", "seed_0/retrain_dense.json", "seed_0/timings.json"):
        _strict_json(base_run / name)


@pytest.mark.timeout(600)
def test_resume_with_another_config_is_refused_naming_the_field(run_copy, capsys):
    args = [a if a != "12" else "14" for a in RUN]  # --epochs 14
    assert main(args + ["--out", str(run_copy), "--resume"]) == 2
    err = _error(capsys)
    assert "config.train.epochs=12" in err and "config.train.epochs=14" in err
    assert len(err) < 600  # the differing fields, not an array dump
    assert main(RUN + ["--seeds", "2", "--out", str(run_copy), "--resume"]) == 2
    assert "seeds=[0]" in _error(capsys)


@pytest.mark.timeout(600)
def test_fresh_run_into_a_used_dir_is_refused_and_overwrite_clears_every_stage(run_copy, capsys):
    # the case: a fresh run with other settings into R must not keep R's stages around
    args = [a if a != "12" else "10" for a in RUN]
    assert main(args + ["--out", str(run_copy)]) == 2
    assert "--overwrite" in _error(capsys)
    assert (run_copy / "seed_0" / "dense.npz").exists()  # nothing was touched
    shutil.copytree(run_copy / "seed_0", run_copy / "seed_1")  # a stale seed of an older run
    new = rundir.make_fingerprint({"epochs": 10}, [0], load_dataset("iris", seed=0))
    note = rundir.check_run_dir(run_copy, new, resume=False, overwrite=True)
    assert "seed_0" in note and "seed_1" in note and "results.json" in note
    assert sorted(p.name for p in run_copy.iterdir()) == ["run.json"]


class _Killed(Exception):
    pass


def _kill_at_first_stage(monkeypatch):
    """`run` stops right after claiming the directory, as a SIGKILL before dense training ends."""
    from jaxprune import pipeline

    def killed(*args, **kwargs):
        raise _Killed

    # the first stage of every seed: the dense population (run_seed for one seed uses it too)
    monkeypatch.setattr(pipeline, "dense_population_stage", killed)


def test_killed_overwrite_then_resume_with_the_old_settings_is_refused(run_copy, monkeypatch, capsys):
    shutil.copytree(run_copy / "seed_0", run_copy / "seed_1")  # a stale seed of an older run
    args = [a if a != "12" else "10" for a in RUN]
    with monkeypatch.context() as m:
        _kill_at_first_stage(m)
        with pytest.raises(_Killed):
            main(args + ["--out", str(run_copy), "--overwrite"])
    assert "--overwrite: removed" in capsys.readouterr().out
    assert sorted(p.name for p in run_copy.iterdir()) == ["config.json", "run.json"]
    assert main(RUN + ["--out", str(run_copy), "--resume"]) == 2
    assert "config.train.epochs=10" in _error(capsys)


def test_resume_refuses_another_csv_content_and_name(tmp_path, monkeypatch, capsys):
    rows = [f"{i % 3},{i * 0.1:.2f},{(i * 7) % 11}" for i in range(200)]
    a = tmp_path / "a.csv"
    a.write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    csv_run = ["run", "--dataset", f"csv:{a}"] + RUN[3:] + ["--out", str(out)]
    with monkeypatch.context() as m:
        _kill_at_first_stage(m)
        with pytest.raises(_Killed):
            main(csv_run)
    (out / "seed_0").mkdir()  # the killed run had started its first seed
    a.write_text("\n".join(rows[:-1] + ["2,9.99,3"]) + "\n")  # same name, one row edited
    assert main(csv_run + ["--resume"]) == 2
    err = _error(capsys)
    assert "data_sha256" in err and "config." not in err
    b = tmp_path / "b.csv"
    shutil.copy(a, b)
    assert main([c.replace(str(a), str(b)) for c in csv_run] + ["--resume"]) == 2
    assert "dataset=" in _error(capsys)


@pytest.mark.timeout(600)
def test_cli_resume_inside_retraining_gives_the_same_results(run_copy, base_run):
    # killed while retraining the magnitude net: its record and net are not written yet
    seed0 = run_copy / "seed_0"
    for name in ("retrain_magnitude.json", "retrained_magnitude.npz"):
        (seed0 / name).unlink()
    (run_copy / "results.json").unlink()
    assert main(RUN + ["--out", str(run_copy), "--resume"]) == 0
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    got = _strict_json(run_copy / "results.json")["runs"]
    want = _strict_json(base_run / "results.json")["runs"]
    assert strip(got) == strip(want)


@pytest.mark.timeout(600)
def test_stage_of_another_run_is_not_reused(run_copy, base_run):
    # a retrain record from another run (other digest) is recomputed, not returned
    rec_path = run_copy / "seed_0" / "retrain_random.json"
    rec = json.loads(rec_path.read_text())
    rec.update(run_digest="0" * 64, test_accuracy=0.123456)
    rec_path.write_text(json.dumps(rec))
    (run_copy / "results.json").unlink()
    assert main(RUN + ["--out", str(run_copy), "--resume"]) == 0
    runs = _strict_json(run_copy / "results.json")["runs"]
    assert all(r["test_accuracy"] != 0.123456 for r in runs)


def test_verify_reads_only_the_runs_seeds(run_copy, capsys):
    shutil.copytree(run_copy / "seed_0", run_copy / "seed_1")  # stale, from an older run
    main(["verify", str(run_copy), "--sample", "2"])
    report = _strict_json(run_copy / "verify.json")
    assert [s["seed_dir"] for s in report["seeds"]] == ["seed_0"]
    assert main(["verify", str(run_copy), "--sample", "0"]) == 2
    assert "--sample" in _error(capsys)


# ------------------------------------------------------------------------------ corrupt files
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_data_byte(path):
    """Damage a stored array's bytes (not the zip directory): a CRC error on reading."""
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    data = bytearray(path.read_bytes())
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + 130
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["dense.npz", "analysis.npz"])
def test_truncated_stage_files_are_named(run_copy, name, capsys):
    _truncate(run_copy / "seed_0" / name)
    assert main(["verify", str(run_copy), "--sample", "1"]) == 2
    err = _error(capsys)
    assert name in err and "corrupt" in err


def test_truncated_dense_on_resume_and_corrupt_json_record_are_named(run_copy, capsys):
    (run_copy / "seed_0" / "retrain_dense.json").write_text('{"test_accuracy": ')
    assert main(RUN + ["--out", str(run_copy), "--resume"]) == 2
    assert "retrain_dense.json" in _error(capsys)
    _truncate(run_copy / "seed_0" / "dense.npz")
    assert main(RUN + ["--out", str(run_copy), "--resume"]) == 2
    assert "dense.npz" in _error(capsys)


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "t"
    assert main(TRAIN + ["--out", str(out)]) == 0
    return out


def test_train_resume_checks_its_config(train_dir, tmp_path, capsys):
    out = tmp_path / "t"
    shutil.copytree(train_dir, out)
    assert main(TRAIN + ["--lr", "0.9", "--out", str(out), "--resume"]) == 2
    err = _error(capsys)
    assert "config.learning_rate" in err
    assert main(TRAIN + ["--out", str(out)]) == 2  # a fresh train over it
    assert "--overwrite" in _error(capsys)
    assert main(TRAIN + ["--epochs", "3", "--out", str(out), "--resume"]) == 0  # may extend


def test_bad_crc_params_and_truncated_windows_are_named(train_dir, tmp_path, capsys):
    out = tmp_path / "t"
    shutil.copytree(train_dir, out)
    _flip_a_data_byte(out / "params.npz")
    from jaxprune.train import load_params

    with pytest.raises(rundir.CorruptFileError, match="params.npz"):
        load_params(out / "params.npz", {"a": np.zeros(1)})
    _truncate(out / "windows.npz")
    assert main(["analyze", str(out)]) == 2
    assert "windows.npz" in _error(capsys)


def test_corrupt_orbax_checkpoint_falls_back_to_the_previous_one(tmp_path):
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    cfg = TrainConfig(hidden=(3,), batch_size=16, epochs=3, window=4, stride=3)
    make = lambda: Trainer(cfg, x, y, n_classes=2, checkpoint_dir=tmp_path / "ck", checkpoint_every_s=0.0)
    full = make().fit()
    for f in (tmp_path / "ck" / "3").rglob("*"):  # damage every file of the last checkpoint
        if f.is_file():
            f.write_bytes(b"\0garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = make().fit(resume=True)
    assert any("falling back" in str(w.message) for w in caught)
    np.testing.assert_array_equal(resumed.history["train_accuracy"], full.history["train_accuracy"])
    assert resumed.steps == full.steps


# ------------------------------------------------------------------------------ divergence, JSON
def test_divergence_is_detected_not_reported_as_le_undefined(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    with pytest.raises(TrainingDiverged, match="diverged in epoch 1"):
        Trainer(
            TrainConfig(hidden=(3,), batch_size=8, epochs=2, window=4, stride=3, learning_rate=1e30), x, y, n_classes=2
        ).fit()
    assert main(TRAIN + ["--lr", "1e30", "--out", str(tmp_path / "d")]) == 2
    err = _error(capsys)
    assert "diverged" in err and "lower the learning rate" in err
    assert not (tmp_path / "d" / "metrics.json").exists()
    assert main(TRAIN + ["--lr", "nan", "--out", str(tmp_path / "n")]) == 2
    assert "learning_rate" in _error(capsys)


def test_json_is_strict_nan_becomes_null(tmp_path):
    save_metrics(tmp_path / "m.json", {"a": float("nan"), "b": [np.float32(np.inf), 1.5], "c": np.array([np.nan, 2.0])})
    assert _strict_json(tmp_path / "m.json") == {"a": None, "b": [None, 1.5], "c": [None, 2.0]}


# ------------------------------------------------------------------------------ flags and inputs
@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "-1"], "--seeds"),
        (["--round-pvalues", "-1"], "round_pvalues"),
        (["--layers="], "layers is empty"),
        (["--layers", "5"], "out of range"),
        (["--target-accuracy", "5"], "target_accuracy"),
        (["--max-retrain-epochs", "0"], "max_retrain_epochs"),
        (["--correction", "foo"], "unknown correction"),
        (["--optimizer", "apply_updates"], "no optimizer named 'apply_updates'"),
        (["--window", "10"], "window=10 too short"),
        (["--csv-delimiter", ";"], "--csv-"),
    ],
)
def test_bad_flags_fail_before_training(extra, needle, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(RUN + extra + ["--out", str(out)]) == 2
    assert needle in _error(capsys)
    assert not list(out.glob("seed_*"))  # nothing trained


def test_negative_layers_are_accepted():
    args = build_parser().parse_args(_join_negative_values(RUN + ["--layers", "-2,-1", "--out", "x"]))
    assert args.layers == (-2, -1)


def test_out_must_be_a_writable_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(RUN + ["--out", str(f)]) == 2
    assert "is an existing file" in _error(capsys)
    assert main(RUN + ["--out", str(f / "sub")]) == 2
    assert "cannot write to the output directory" in _error(capsys)
    assert main(TRAIN + ["--out", str(f)]) == 2
    assert "is an existing file" in _error(capsys)


def test_csv_problems_are_clear_errors(tmp_path, capsys):
    big = tmp_path / "big.csv"
    big.write_text("".join(f"{i % 2},{1e300 * (1 + i % 3)},{i}\n" for i in range(300)))
    with pytest.raises(ValueError, match="column 'feature 1"):
        load_csv(big)
    with pytest.raises(ValueError, match="column 'huge'"):
        scale_features(np.array([[1e300], [-1e300]]), np.zeros((1, 1)), "standard", feature_names=["huge"])
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("f,label\n1,cat\n2,dog\n3,7\n")
    with pytest.raises(ValueError, match="line 4, column 2: numeric label '7' among text"):
        load_csv(mixed, label_column=-1)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("label,f\ncaf\xe9,1\nb,2\n".encode("latin-1"))
    for path, needle in ((latin, "not UTF-8"), (tmp_path, "is a directory")):
        assert main(["run", "--dataset", f"csv:{path}", "--out", str(tmp_path / "o")]) == 2
        err = _error(capsys)
        assert needle in err and str(path) in err
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("0,1.0\n1,2.0\n")
    assert main(["run", "--dataset", f"csv:{tiny}"] + RUN[3:] + ["--out", str(tmp_path / "t")]) == 2
    err = _error(capsys)
    assert "too small" in err or "windows" in err


def test_csv_flags_reach_load_csv(tmp_path):
    rng = np.random.default_rng(0)
    semi = tmp_path / "semi.csv"
    lines = ["a;b;kind"] + [f"{rng.normal():.3f};{rng.normal():.3f};{'xy'[i % 2]}" for i in range(40)]
    semi.write_text("\n".join(lines) + "\n")
    out = tmp_path / "t"
    assert (
        main(
            [
                "train",
                "--dataset",
                f"csv:{semi}",
                "--csv-delimiter",
                ";",
                "--csv-label-column",
                "-1",
                "--csv-header",
                "--hidden",
                "3",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--window",
                "3",
                "--stride",
                "2",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert _strict_json(out / "metrics.json")["n_weights"] == 2 * 3 + 3 * 2


def test_dense_stage_is_shared_only_with_the_same_training(base_run, tmp_path):
    from jaxprune.pipeline import LegcnetConfig, _reuse_dense, dense_stage_digest

    cfg = LegcnetConfig.from_dict(_strict_json(base_run / "run.json")["config"])
    data = load_dataset("iris", seed=0)
    other_analysis = cfg.replace(layers=(-1,), alpha=0.01)  # same training: shared
    _reuse_dense(base_run, tmp_path / "a", 0, dense_stage_digest(other_analysis, data, 0))
    assert (tmp_path / "a" / "seed_0" / "dense.npz").exists()
    other_training = cfg.replace(train=cfg.train.replace(learning_rate=0.2))
    _reuse_dense(base_run, tmp_path / "b", 0, dense_stage_digest(other_training, data, 0))
    assert not (tmp_path / "b" / "seed_0" / "dense.npz").exists()
