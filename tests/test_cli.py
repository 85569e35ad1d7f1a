"""The `jaxprune` command line, run in-process as a user would call it."""

import json

import pytest
import tensorflow_datasets as tfds

from jaxprune.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "datasets"):
        assert command in out


def test_datasets_lists_offline_and_download_sets(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k" in out and "iris" in out and "(download)" in out


def test_train_writes_metrics_and_resumes_to_the_same_result(tmp_path):
    args = [
        "train",
        "--dataset",
        "iris",
        "--hidden",
        "6",
        "--batch-size",
        "16",
        "--seed",
        "3",
        "--window",
        "10",
        "--stride",
        "9",
        "--no-progress",
    ]
    assert main(args + ["--epochs", "6", "--out", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    for key in ("train_accuracy", "test_accuracy", "epochs", "steps", "n_weights"):
        assert key in full
    assert full["epochs"] == 6 and full["steps"] == 6 * 8 and full["n_weights"] == 4 * 6 + 6 * 3
    assert (tmp_path / "full" / "checkpoints").is_dir()

    part = tmp_path / "part"
    assert main(args + ["--epochs", "2", "--out", str(part)]) == 0
    assert main(args + ["--epochs", "6", "--out", str(part), "--resume"]) == 0
    resumed = json.loads((part / "metrics.json").read_text())
    for key in ("train_accuracy", "test_accuracy", "epochs", "steps", "n_windows"):
        assert resumed[key] == full[key]
    assert resumed["history"]["train_accuracy"] == full["history"]["train_accuracy"]


def test_train_on_mock_tfds_mnist(tmp_path):
    with tfds.testing.mock_data(num_examples=60):
        code = main(
            [
                "train",
                "--dataset",
                "mnist",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--window",
                "4",
                "--stride",
                "3",
                "--out",
                str(tmp_path),
                "--no-progress",
            ]
        )
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_weights"] == 784 * 50 + 50 * 30 + 30 * 10
    assert metrics["dataset"] == "mnist"


def test_missing_mnist_is_a_clear_error_not_a_hang(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tmp_path / "empty"),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "mnist" in err and "download" in err


def test_unknown_dataset_and_bad_flags(tmp_path, capsys):
    assert main(["train", "--dataset", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown data set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "a,b", "--out", str(tmp_path)])
