"""The split of jaxprune.prune by concern (multitest, optim, mask_stats) and the one IoU."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from jaxprune import analysis, mask_stats, multitest, optim, prune

# Every name `jaxprune.prune` had before the split (modules and typing helpers aside): user code
# and the studies import them from there, so each must still resolve.
PRUNE_NAMES_BEFORE_SPLIT = (
    "KernelLayout",
    "flatten_kernels",
    "kernel_layout",
    "key_name",
    "unflatten_kernels",
    "PyTree",
    "UNTESTABLE_POLICIES",
    "LAG_CORRECTIONS",
    "WEIGHT_CORRECTIONS",
    "CORRECTIONS",
    "_as_layout",
    "layer_ids",
    "_normalise_layers",
    "analysed_weights",
    "per_layer_counts",
    "mask_from_flat",
    "flat_keep",
    "round_pvalues",
    "min_over_lags",
    "bonferroni_over_lags",
    "holm_adjust",
    "bh_adjust",
    "_parse_correction",
    "corrected_pvalues",
    "keep_decision",
    "PruneSummary",
    "causal_mask",
    "_is_count_list",
    "_target_counts",
    "_prune_by_order",
    "random_mask",
    "magnitude_mask",
    "_check_same_structure",
    "_zero_where_pruned",
    "apply_mask",
    "MaskedState",
    "masked_optimizer",
    "masked",
    "MaskSummary",
    "mask_summary",
    "Flops",
    "_bias_sizes",
    "dense_flops",
    "sparse_flops",
    "pruned_iou",
)

HOMES = {
    multitest: (
        "UNTESTABLE_POLICIES",
        "LAG_CORRECTIONS",
        "WEIGHT_CORRECTIONS",
        "CORRECTIONS",
        "round_pvalues",
        "min_over_lags",
        "bonferroni_over_lags",
        "holm_adjust",
        "bh_adjust",
        "_parse_correction",
        "corrected_pvalues",
        "keep_decision",
    ),
    optim: ("MaskedState", "masked_optimizer", "masked", "_check_same_structure", "_zero_where_pruned"),
    mask_stats: (
        "MaskSummary",
        "mask_summary",
        "Flops",
        "dense_flops",
        "sparse_flops",
        "pruned_iou",
        "iou",
        "chance_iou",
        "_bias_sizes",
    ),
}


def test_every_old_prune_name_still_imports():
    missing = [n for n in PRUNE_NAMES_BEFORE_SPLIT if not hasattr(prune, n)]
    assert not missing
    ns: dict = {}
    exec("from jaxprune.prune import " + ", ".join(PRUNE_NAMES_BEFORE_SPLIT), ns)
    # star import: the public names (and nothing private)
    star: dict = {}
    exec("from jaxprune.prune import *", star)
    public = {n for n in PRUNE_NAMES_BEFORE_SPLIT if not n.startswith("_") and n != "PyTree"}
    assert public <= set(star)
    assert not any(n.startswith("_") for n in star if n != "__builtins__")


@pytest.mark.parametrize("module", list(HOMES), ids=lambda m: m.__name__)
def test_split_modules_define_their_names_and_prune_reexports_them(module):
    for name in HOMES[module]:
        obj = getattr(module, name)
        assert getattr(prune, name) is obj, name
        if callable(obj) and name != "masked":
            assert obj.__module__ == module.__name__, name
    assert optim.masked is optim.masked_optimizer  # deprecated alias, same object
    # the masks themselves are defined in prune
    for name in ("causal_mask", "random_mask", "magnitude_mask", "apply_mask", "PruneSummary"):
        assert getattr(prune, name).__module__ == "jaxprune.prune"


def test_one_iou_implementation():
    assert analysis.iou is mask_stats.iou
    assert analysis.chance_iou is mask_stats.chance_iou
    assert prune.iou is mask_stats.iou and prune.pruned_iou is mask_stats.pruned_iou


@pytest.mark.parametrize("seed", range(6))
def test_iou_names_agree_with_sklearn_jaccard(seed):
    rng = np.random.default_rng(seed)
    params = {
        "a": {"kernel": jnp.zeros((5, 7)), "bias": jnp.zeros(7)},
        "b": {"kernel": jnp.zeros((7, 3)), "bias": jnp.zeros(3)},
    }
    n = 5 * 7 + 7 * 3
    frac = rng.uniform(0.0, 0.6, size=2) if seed else np.zeros(2)  # seed 0: nothing pruned
    keep_a, keep_b = rng.uniform(size=n) >= frac[0], rng.uniform(size=n) >= frac[1]
    ma, mb = prune.mask_from_flat(keep_a, params), prune.mask_from_flat(keep_b, params)
    # oracle: Jaccard of the pruned sets; two empty sets count as identical
    want = jaccard_score(~keep_a, ~keep_b, zero_division=1.0)
    assert prune.pruned_iou(ma, mb) == pytest.approx(want, abs=1e-12)
    assert analysis.iou(~keep_a, ~keep_b) == pytest.approx(want, abs=1e-12)
    # layer filter: the IoU of the selected layer's pruned weights only
    want_last = jaccard_score(~keep_a[35:], ~keep_b[35:], zero_division=1.0)
    assert prune.pruned_iou(ma, mb, layers=[-1]) == pytest.approx(want_last, abs=1e-12)
    assert analysis.iou(~keep_a[35:], ~keep_b[35:]) == pytest.approx(want_last, abs=1e-12)


def test_iou_bad_input_is_one_line():
    with pytest.raises(ValueError, match=r"^sets have shapes \(3,\) and \(4,\)$"):
        mask_stats.iou(np.zeros(3, bool), np.zeros(4, bool))
    small = prune.mask_from_flat(np.ones(6, bool), {"k": {"kernel": jnp.zeros((2, 3))}})
    big = prune.mask_from_flat(np.ones(8, bool), {"k": {"kernel": jnp.zeros((2, 4))}})
    with pytest.raises(ValueError, match=r"^masks have 6 and 8 kernel weights$"):
        prune.pruned_iou(small, big)
