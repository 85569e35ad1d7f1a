"""Classification metrics in JAX: accuracy, confusion matrix, precision / recall / F1.

All functions take integer label arrays ``y_true``, ``y_pred`` of shape ``(n,)`` and are
jit-able with `n_classes`, `average` and `labels` static, e.g.
``jax.jit(precision_recall_f1, static_argnames=("n_classes", "average", "labels"))``. Results are
0-d (or ``(n_classes,)``) float arrays in JAX's default float dtype; use ``float(v)`` to report.

They reproduce scikit-learn's ``precision_recall_fscore_support`` with its default
``zero_division="warn"`` (a ratio with a zero denominator is 0.0; no warning is raised here, a
jitted function cannot warn per value):

* precision of a class never predicted = 0, recall of a class absent from ``y_true`` = 0,
  F1 of a class with precision + recall = 0 is 0 (sklearn computes F1 as
  ``2 tp / (2 tp + fp + fn)``, which is the same number).

Which classes the macro average runs over (`labels`):

* ``"present"`` (default): the classes that occur in ``y_true`` or ``y_pred``, which is what
  sklearn does with ``labels=None`` -- the call the original LEGCNet code made
  (``f1_score(y, y_hat, average="macro")``), so numbers are comparable with its reports.
* ``"all"``: all `n_classes` classes, as sklearn with ``labels=range(n_classes)``; a class absent
  from both arrays then adds a 0 to the macro average.

The two agree whenever every class occurs in ``y_true`` or ``y_pred`` (e.g. any MNIST test set).
Labels must lie in ``[0, n_classes)``: out-of-range labels are not counted in the confusion
matrix (they cannot be checked inside jit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AVERAGES = ("macro", "weighted", "micro", None)
LABEL_SETS = ("present", "all")


def accuracy(y_true: jax.Array, y_pred: jax.Array) -> jax.Array:
    """Fraction of ``y_pred == y_true``: float scalar (NaN for empty inputs). Shapes ``(n,)``."""
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    # jnp.mean of a bool array is float32 even under x64: cast to the default float first
    return jnp.mean((y_true == y_pred).astype(jnp.result_type(float)))


def confusion_matrix(y_true: jax.Array, y_pred: jax.Array, n_classes: int) -> jax.Array:
    """Confusion matrix ``(n_classes, n_classes)`` int32; entry ``[i, j]`` counts samples of true
    class i predicted as j (sklearn's convention: rows true, columns predicted)."""
    # one-hot rows are all-zero for labels outside [0, n_classes) (including negative ones, which
    # a scatter .at[] would wrap around), so such samples are dropped rather than miscounted
    t = jax.nn.one_hot(jnp.asarray(y_true), n_classes, dtype=jnp.int32)
    p = jax.nn.one_hot(jnp.asarray(y_pred), n_classes, dtype=jnp.int32)
    return t.T @ p


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, 0.0 where den == 0 (sklearn's zero_division="warn" value)."""
    dt = jnp.result_type(float)  # int counts -> the default float (float64 under x64)
    num, den = jnp.asarray(num, dt), jnp.asarray(den, dt)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)


def precision_recall_f1(
    y_true: jax.Array,
    y_pred: jax.Array,
    n_classes: int,
    average: str | None = "macro",
    labels: str = "present",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Precision, recall and F1 from integer labels ``(n,)``.

    Args:
      y_true, y_pred: integer labels in ``[0, n_classes)``, shape ``(n,)``.
      n_classes: number of classes (static).
      average: ``"macro"`` (unweighted mean over the label set), ``"weighted"`` (weighted by
        support in ``y_true``), ``"micro"`` (from the summed counts), or None (per class).
      labels: ``"present"`` (sklearn's ``labels=None``) or ``"all"`` (sklearn's
        ``labels=range(n_classes)``); see the module docstring. Ignored for ``average=None``,
        which returns all `n_classes` entries (sklearn with ``labels=range(n_classes)``).

    Returns:
      ``(precision, recall, f1)``: float scalars, or ``(n_classes,)`` arrays for ``average=None``.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if labels not in LABEL_SETS:
        raise ValueError(f"labels must be one of {LABEL_SETS}, got {labels!r}")
    cm = confusion_matrix(y_true, y_pred, n_classes)
    tp = jnp.diag(cm)
    pred_pos = cm.sum(axis=0)  # tp + fp
    support = cm.sum(axis=1)  # tp + fn
    if labels == "present":
        in_set = (pred_pos + support) > 0
    else:
        in_set = jnp.ones((n_classes,), dtype=bool)

    if average == "micro":
        tp_s = jnp.sum(jnp.where(in_set, tp, 0))
        pp_s = jnp.sum(jnp.where(in_set, pred_pos, 0))
        su_s = jnp.sum(jnp.where(in_set, support, 0))
        prec, rec = _safe_div(tp_s, pp_s), _safe_div(tp_s, su_s)
        return prec, rec, _safe_div(2 * tp_s, pp_s + su_s)

    prec = _safe_div(tp, pred_pos)
    rec = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, pred_pos + support)  # = 2 p r / (p + r), 0 where undefined
    if average is None:
        return prec, rec, f1
    if average == "macro":
        w = in_set.astype(prec.dtype)
    else:  # weighted by support; classes outside the set have support 0 anyway
        w = jnp.where(in_set, support, 0).astype(prec.dtype)
    w_sum = w.sum()
    avg = lambda v: _safe_div(jnp.sum(v * w), w_sum)  # noqa: E731
    return avg(prec), avg(rec), avg(f1)


def classification_metrics(
    y_true: jax.Array, y_pred: jax.Array, n_classes: int, labels: str = "present"
) -> dict[str, jax.Array]:
    """Accuracy and macro precision / recall / F1 as a dict of float scalars (jit-able).

    Keys: ``accuracy``, ``macro_precision``, ``macro_recall``, ``macro_f1``.
    `labels` as in `precision_recall_f1`.
    """
    p, r, f = precision_recall_f1(y_true, y_pred, n_classes, average="macro", labels=labels)
    return {
        "accuracy": accuracy(y_true, y_pred),
        "macro_precision": p,
        "macro_recall": r,
        "macro_f1": f,
    }
