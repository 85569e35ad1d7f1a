"""jaxprune.metrics against scikit-learn (the oracle) on random, imbalanced, degenerate labels."""

import warnings

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxprune import metrics as jm

AVERAGES = ["macro", "weighted", "micro"]


def _sk_prf(y_true, y_pred, n_classes, average, labels):
    sk_labels = None if labels == "present" else list(range(n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UndefinedMetricWarning: zero_division="warn" -> 0.0
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=sk_labels, average=average)
    return np.array([p, r, f], dtype=np.float64)


def _cases():
    rng = np.random.default_rng(0)
    n = 10
    cases = {}
    cases["random"] = (rng.integers(0, n, 300), rng.integers(0, n, 300), n)
    # imbalanced: 90% class 0 in the truth, a biased predictor
    t = np.where(rng.random(400) < 0.9, 0, rng.integers(1, n, 400))
    p = np.where(rng.random(400) < 0.7, t, rng.integers(0, 3, 400))
    cases["imbalanced"] = (t, p, n)
    # classes 7, 8, 9 absent from both; class 6 only predicted; class 5 never predicted
    t = rng.integers(0, 6, 200)
    p = np.where(t == 5, 0, t)
    p[:20] = 6
    cases["missing_classes"] = (t, p, n)
    t = rng.integers(0, n, 100)
    cases["perfect"] = (t, t.copy(), n)
    # perfect on a subset of classes (absent classes matter for labels="all")
    t = rng.integers(0, 3, 50)
    cases["perfect_subset"] = (t, t.copy(), 5)
    cases["binary"] = (rng.integers(0, 2, 120), rng.integers(0, 2, 120), 2)
    cases["all_wrong_one_class"] = (np.zeros(30, int), np.ones(30, int), 3)
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_accuracy_and_confusion_match_sklearn(name):
    t, p, n = CASES[name]
    assert float(jm.accuracy(t, p)) == pytest.approx(skm.accuracy_score(t, p), abs=1e-15)
    cm = np.asarray(jm.confusion_matrix(t, p, n))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(t, p, labels=list(range(n))))
    assert cm.dtype == np.int32


@pytest.mark.parametrize("labels", ["present", "all"])
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_prf_matches_sklearn(name, average, labels):
    t, p, n = CASES[name]
    got = np.array([float(v) for v in jm.precision_recall_f1(t, p, n, average, labels)])
    np.testing.assert_allclose(got, _sk_prf(t, p, n, average, labels), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(CASES))
def test_per_class_matches_sklearn(name):
    t, p, n = CASES[name]
    got = np.stack([np.asarray(v) for v in jm.precision_recall_f1(t, p, n, average=None)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.stack(skm.precision_recall_fscore_support(t, p, labels=list(range(n)), average=None)[:3])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_present_and_all_differ_only_with_absent_classes():
    t, p, n = CASES["perfect_subset"]  # classes 3, 4 absent from both
    pr = jm.classification_metrics(t, p, n, labels="present")
    al = jm.classification_metrics(t, p, n, labels="all")
    assert float(pr["macro_f1"]) == 1.0
    assert float(al["macro_f1"]) == pytest.approx(3 / 5)
    t, p, n = CASES["random"]
    pr = jm.classification_metrics(t, p, n, labels="present")
    al = jm.classification_metrics(t, p, n, labels="all")
    assert all(float(pr[k]) == float(al[k]) for k in pr)


def test_classification_metrics_dict_and_jit():
    t, p, n = CASES["imbalanced"]
    f = jax.jit(jm.classification_metrics, static_argnames=("n_classes", "labels"))
    got = f(t, p, n_classes=n)
    assert set(got) == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    want = _sk_prf(t, p, n, "macro", "present")
    np.testing.assert_allclose(
        [float(got[k]) for k in ("macro_precision", "macro_recall", "macro_f1")], want, rtol=1e-12
    )
    assert float(got["accuracy"]) == pytest.approx(skm.accuracy_score(t, p))
    # f1_score's default call with average="macro" is the number the original reported
    assert float(got["macro_f1"]) == pytest.approx(skm.f1_score(t, p, average="macro"), rel=1e-12)


def test_jit_prf_all_averages():
    t, p, n = CASES["missing_classes"]
    f = jax.jit(jm.precision_recall_f1, static_argnames=("n_classes", "average", "labels"))
    for average in AVERAGES:
        got = np.array([float(v) for v in f(t, p, n_classes=n, average=average, labels="all")])
        np.testing.assert_allclose(got, _sk_prf(t, p, n, average, "all"), rtol=1e-12)


def test_float32_inputs_close_to_sklearn():
    t, p, n = CASES["imbalanced"]
    with jax.enable_x64(False):
        out = jm.precision_recall_f1(t.astype(np.int32), p.astype(np.int32), n)
        assert all(v.dtype == np.float32 for v in out)
    got = np.array([float(v) for v in out])
    np.testing.assert_allclose(got, _sk_prf(t, p, n, "macro", "present"), rtol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="average"):
        jm.precision_recall_f1([0], [0], 2, average="samples")
    with pytest.raises(ValueError, match="labels"):
        jm.precision_recall_f1([0], [0], 2, labels="some")
