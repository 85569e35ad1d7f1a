"""jaxprune.prune: causal masks (policies, corrections vs statsmodels), baselines, masked optax,
FLOPs, summaries."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from statsmodels.stats.multitest import multipletests

from jaxprune import prune
from jaxprune.weights import flatten_kernels, kernel_layout


def _params(widths=(3, 4, 2), seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {
        "layers": {
            i: {
                "bias": jnp.asarray(rng.normal(size=(b,)), dtype),
                "kernel": jnp.asarray(rng.normal(size=(a, b)), dtype),
            }
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        }
    }


def _assert_mask_like(mask, params):
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params)):
        assert m is not None and m.dtype == jnp.bool_ and m.shape == p.shape
    for layer in mask["layers"].values():
        assert bool(jnp.all(layer["bias"]))


def _keep(mask):
    return prune.flat_keep(mask)


# ------------------------------------------------------------------------------------------
# causal mask
# ------------------------------------------------------------------------------------------

P_HAND = np.array(
    # layer 0: 12 weights (3x4)
    [0.01, 0.2, np.nan, 0.049, 0.05, 0.5, np.nan, 0.0, 0.03, 0.9, 0.04, 0.06]
    # layer 1: 8 weights (4x2)
    + [0.001, np.nan, 0.07, 0.02, 0.5, 0.049999, np.nan, 0.8]
)


def test_causal_mask_hand_case_keep_policy():
    params = _params()
    mask, s = prune.causal_mask(P_HAND, params)
    _assert_mask_like(mask, params)
    want = np.where(np.isnan(P_HAND), True, P_HAND < 0.05)
    np.testing.assert_array_equal(_keep(mask), want)
    # layer 0: not causal = 0.2, 0.05, 0.5, 0.9, 0.06 -> 5; untestable 2
    assert s.n_weights == (12, 8) and s.analysed == (12, 8)
    assert s.untestable == (2, 2) and s.testable == (10, 6)
    assert s.not_causal == (5, 3) and s.pruned == (5, 3) and s.pruned_untestable == (0, 0)
    assert s.pruned_total == 8 and s.sparsity == pytest.approx(8 / 20)
    assert s.pruned_if_keep == 8 and s.pruned_if_prune == 12
    # the kernel entries are row-major on the flat axis
    assert not bool(mask["layers"][0]["kernel"][0, 1]) and bool(mask["layers"][0]["kernel"][0, 2])


def test_causal_mask_prune_policy_and_status():
    params = _params()
    mask, s = prune.causal_mask(P_HAND, params, untestable="prune")
    np.testing.assert_array_equal(_keep(mask), ~np.isnan(P_HAND) & (P_HAND < 0.05))
    assert s.pruned == (7, 5) and s.pruned_untestable == (2, 2) and s.not_causal == (5, 3)
    # a non-OK status makes a finite p untestable (weight 0 has p = 0.01)
    status = np.zeros(20, np.int32)
    status[0] = 3
    mask_k, s_k = prune.causal_mask(P_HAND, params, status=status)
    assert _keep(mask_k)[0] and s_k.untestable == (3, 2)
    mask_p, s_p = prune.causal_mask(P_HAND, params, status=status, untestable="prune")
    assert not _keep(mask_p)[0] and s_p.pruned == (8, 5)


def test_causal_mask_layer_filter():
    params = _params()
    for layers in ([1], [-1], 1):
        mask, s = prune.causal_mask(P_HAND, params, layers=layers, untestable="prune")
        keep = _keep(mask)
        assert keep[:12].all()  # outside the filter: always kept
        np.testing.assert_array_equal(keep[12:], ~np.isnan(P_HAND[12:]) & (P_HAND[12:] < 0.05))
        assert s.analysed == (0, 8) and s.pruned == (0, 5) and s.untestable == (0, 2)
        assert s.sparsity_analysed == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match="out of range"):
        prune.causal_mask(P_HAND, params, layers=[2])


def test_round_pvalues_reproduction():
    p = np.array([0.04994, 0.04996, np.nan])
    np.testing.assert_array_equal(prune.round_pvalues(p)[:2], [0.0499, 0.05])
    params = {"layers": {0: {"kernel": jnp.zeros((1, 3)), "bias": jnp.zeros(3)}}}
    mask, _ = prune.causal_mask(prune.round_pvalues(p), params)
    np.testing.assert_array_equal(_keep(mask), [True, False, True])


def _lag_pvalues(n_weights, n_lags, seed):
    rng = np.random.default_rng(seed)
    # a mix of null (uniform) and causal-looking (tiny) p-values, some untestable rows
    lag = rng.uniform(size=(n_weights, n_lags))
    causal = rng.random(n_weights) < 0.4
    lag[causal] *= rng.choice([1e-4, 1e-3, 1e-2], size=(causal.sum(), 1))
    lag[rng.random(n_weights) < 0.08] = np.nan
    return lag


@pytest.mark.parametrize("method", ["bonferroni", "holm"])
def test_lag_corrections_match_statsmodels(method):
    params = _params((4, 4, 3))  # small: one multipletests call per weight is slow
    n = kernel_layout(params).n_weights
    lag = _lag_pvalues(n, 7, seed=1)
    mask, s = prune.causal_mask(None, params, lag_pvalues=lag, correction=method)
    finite = ~np.isnan(lag).any(axis=1)
    want = np.ones(n, bool)  # untestable -> kept (default policy)
    for w in np.flatnonzero(finite):
        want[w] = multipletests(lag[w], alpha=0.05, method=method)[0].any()
    np.testing.assert_array_equal(_keep(mask), want)
    assert sum(s.untestable) == (~finite).sum()
    # the corrections bite: fewer causal weights than the uncorrected min-p rule
    mask0, s0 = prune.causal_mask(np.min(lag, axis=1), params)
    assert s.pruned_total > s0.pruned_total
    # Bonferroni from the per-weight min p and n_lags alone gives the same mask
    if method == "bonferroni":
        p_min = np.min(lag, axis=1)
        mask_b, _ = prune.causal_mask(p_min, params, correction="bonferroni", n_lags=7)
        np.testing.assert_array_equal(_keep(mask_b), want)


def test_adjusted_pvalues_match_statsmodels():
    lag = _lag_pvalues(25, 6, seed=2)
    finite = ~np.isnan(lag).any(axis=1)
    holm = prune.holm_adjust(lag)
    for w in range(25):
        if finite[w]:
            np.testing.assert_allclose(holm[w], multipletests(lag[w], method="holm")[1], rtol=1e-14)
        else:
            assert np.isnan(holm[w]).all()
    # min Holm-adjusted p == Bonferroni on the min p (the "any lag" decision is the same)
    np.testing.assert_allclose(holm[finite].min(axis=1), np.minimum(lag[finite].min(axis=1) * 6, 1), rtol=1e-14)
    p = lag[:, 0]
    bh = prune.bh_adjust(p)
    fin = ~np.isnan(p)
    np.testing.assert_allclose(bh[fin], multipletests(p[fin], method="fdr_bh")[1], rtol=1e-14)
    assert np.isnan(bh[~fin]).all()


@pytest.mark.parametrize("layers", [None, [-2, -1]])
@pytest.mark.parametrize("lag_method", [None, "bonferroni"])
def test_bh_over_weights_matches_statsmodels(layers, lag_method):
    params = _params((5, 6, 4, 3))
    layout = kernel_layout(params)
    n = layout.n_weights
    lag = _lag_pvalues(n, 5, seed=3)
    p_min = np.min(lag, axis=1)
    correction = "bh" if lag_method is None else (lag_method, "bh")
    mask, s = prune.causal_mask(p_min, params, correction=correction, n_lags=5, layers=layers)
    analysed = prune.analysed_weights(layout, layers)
    fam = analysed & ~np.isnan(p_min)
    p_fam = p_min[fam] if lag_method is None else np.minimum(p_min[fam] * 5, 1)
    want = np.ones(n, bool)
    want[fam] = multipletests(p_fam, alpha=0.05, method="fdr_bh")[0]
    np.testing.assert_array_equal(_keep(mask), want)
    assert s.correction == ("bh" if lag_method is None else "bonferroni+bh")
    assert sum(s.testable) == fam.sum()


def test_causal_mask_argument_errors():
    params = _params()
    with pytest.raises(ValueError, match="expected"):
        prune.causal_mask(np.zeros(7), params)
    with pytest.raises(ValueError, match="holm over lags needs lag_pvalues"):
        prune.causal_mask(P_HAND, params, correction="holm")
    with pytest.raises(ValueError, match="n_lags"):
        prune.causal_mask(P_HAND, params, correction="bonferroni")
    with pytest.raises(ValueError, match="unknown correction"):
        prune.causal_mask(P_HAND, params, correction="bh_yekutieli")
    with pytest.raises(ValueError, match="untestable"):
        prune.causal_mask(P_HAND, params, untestable="drop")


def test_causal_mask_nnx_state():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

    _, state = nnx.split(Net(nnx.Rngs(0)))
    mask, s = prune.causal_mask(P_HAND, state)
    assert jax.tree.structure(mask) == jax.tree.structure(state)
    np.testing.assert_array_equal(_keep(mask), np.where(np.isnan(P_HAND), True, P_HAND < 0.05))
    assert prune.sparse_flops(mask).total == prune.sparse_flops(prune.causal_mask(P_HAND, _params())[0]).total


@pytest.mark.timeout(60)  # vectorised: ~1 s; a per-weight Python loop would hit the timeout
def test_causal_mask_mnist_size_is_fast():
    params = _params((784, 50, 30, 10))
    n = kernel_layout(params).n_weights
    assert n == 41_000
    lag = _lag_pvalues(n, 14, seed=4)
    for corr in ("none", "bonferroni", "holm", "bh", ("holm", "bh")):
        mask, s = prune.causal_mask(None, params, lag_pvalues=lag, correction=corr)
        assert s.pruned_total == int((~_keep(mask)).sum())


# ------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------


def _reference(params, seed=0, layers=None):
    n = kernel_layout(params).n_weights
    p = np.random.default_rng(seed).uniform(0, 0.15, size=n)
    return prune.causal_mask(p, params, layers=layers)


def test_random_mask_matches_counts():
    params = _params((5, 6, 4, 3))
    ref, s = _reference(params)
    m1 = prune.random_mask(params, ref, seed=1)
    _assert_mask_like(m1, params)
    assert prune.mask_summary(m1).pruned == prune.mask_summary(ref).pruned == s.pruned
    m1b = prune.random_mask(params, ref, key=jax.random.key(1))
    np.testing.assert_array_equal(_keep(m1), _keep(m1b))  # seed=k == key=jax.random.key(k)
    m2 = prune.random_mask(params, ref, seed=2)
    assert not np.array_equal(_keep(m1), _keep(m2))
    # per-layer counts as a list, global count
    m3 = prune.random_mask(params, list(s.pruned), seed=3)
    assert prune.mask_summary(m3).pruned == s.pruned
    mg = prune.random_mask(params, ref, seed=4, per_layer=False)
    assert prune.mask_summary(mg).pruned_total == s.pruned_total
    mg2 = prune.random_mask(params, 17, seed=4, per_layer=False)
    assert prune.mask_summary(mg2).pruned_total == 17
    # a float is a fraction of the analysed weights
    mf = prune.random_mask(params, 0.5, seed=5)
    assert prune.mask_summary(mf).pruned == (15, 12, 6)


def test_random_mask_layer_filter_and_errors():
    params = _params((5, 6, 4, 3))
    ref, s = _reference(params, layers=[-2, -1])
    assert s.pruned[0] == 0
    for per_layer in (True, False):
        m = prune.random_mask(params, ref, seed=0, layers=[-2, -1], per_layer=per_layer)
        ms = prune.mask_summary(m)
        assert ms.pruned[0] == 0 and ms.pruned_total == s.pruned_total
        if per_layer:
            assert ms.pruned == s.pruned
    ref_all, _ = _reference(params)
    with pytest.raises(ValueError, match="exceed"):
        prune.random_mask(params, ref_all, seed=0, layers=[-1])
    with pytest.raises(ValueError, match="per_layer=False"):
        prune.random_mask(params, 3, seed=0)
    with pytest.raises(ValueError, match="exactly one"):
        prune.random_mask(params, ref, seed=0, key=jax.random.key(0))


def test_magnitude_mask_prunes_smallest():
    params = _params((5, 6, 4, 3), seed=7)
    ref, s = _reference(params)
    m = prune.magnitude_mask(params, ref)
    _assert_mask_like(m, params)
    assert prune.mask_summary(m).pruned == s.pruned
    layout = kernel_layout(params)
    w = np.abs(np.asarray(flatten_kernels(params)))
    keep = _keep(m)
    for i in range(layout.n_layers):
        sl = layout.layer_slice(i)
        k, wl = keep[sl], w[sl]
        assert wl[~k].max() <= wl[k].min()
        np.testing.assert_array_equal(np.flatnonzero(~k), np.sort(np.argsort(wl, kind="stable")[: s.pruned[i]]))
    # global: the smallest over all layers
    mg = prune.magnitude_mask(params, ref, per_layer=False)
    kg = _keep(mg)
    assert (~kg).sum() == s.pruned_total and w[~kg].max() <= w[kg].min()


def test_magnitude_mask_ties_and_filter():
    params = {
        "layers": {
            0: {"kernel": jnp.array([[0.5, -0.1, 0.1], [0.1, 2.0, -0.1]]), "bias": jnp.zeros(3)},
            1: {"kernel": jnp.array([[1.0], [-1.0], [1.0]]), "bias": jnp.zeros(1)},
        }
    }
    m = prune.magnitude_mask(params, [2, 2])
    # ties at |w| = 0.1 (flat 1, 2, 3, 5) and 1.0 (6, 7, 8): lower flat index pruned first
    np.testing.assert_array_equal(np.flatnonzero(~_keep(m)), [1, 2, 6, 7])
    m = prune.magnitude_mask(params, [0, 2], layers=[1])
    np.testing.assert_array_equal(np.flatnonzero(~_keep(m)), [6, 7])
    m = prune.magnitude_mask(params, 3, per_layer=False, layers=[1])
    np.testing.assert_array_equal(np.flatnonzero(~_keep(m)), [6, 7, 8])
    with pytest.raises(ValueError, match="cannot prune 4 of 3"):
        prune.magnitude_mask(params, 4, per_layer=False, layers=[1])
    m = prune.magnitude_mask(params, 5, per_layer=False)
    np.testing.assert_array_equal(np.flatnonzero(~_keep(m)), [0, 1, 2, 3, 5])


# ------------------------------------------------------------------------------------------
# masked optax
# ------------------------------------------------------------------------------------------


def _loss(params, x, y):
    h = jnp.tanh(x @ params["layers"][0]["kernel"] + params["layers"][0]["bias"])
    out = h @ params["layers"][1]["kernel"] + params["layers"][1]["bias"]
    return jnp.mean((out - y) ** 2)


def _data():
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.normal(size=(16, 3))), jnp.asarray(rng.normal(size=(16, 2)))


OPTIMIZERS = {
    "sgd": lambda: optax.sgd(0.1),
    "momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "adam": lambda: optax.adam(1e-2),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.5),
}


def _make_step(tx, counter=None, jit=True):
    def step(params, opt_state, x, y):
        if counter is not None:
            counter.append(1)  # runs once per trace
        grads = jax.grad(_loss)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return jax.jit(step) if jit else step


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_masked_keeps_pruned_weights_at_zero(name):
    params = _params(dtype=np.float64)
    mask, _ = prune.causal_mask(P_HAND, params, untestable="prune")
    keep = _keep(mask)
    p0 = prune.apply_mask(params, mask)
    np.testing.assert_array_equal(np.asarray(flatten_kernels(p0))[~keep], 0.0)
    tx = prune.masked(OPTIMIZERS[name](), mask)
    state = tx.init(p0)
    step = _make_step(tx)
    x, y = _data()
    p = p0
    for _ in range(60):
        p, state = step(p, state, x, y)
    w = np.asarray(flatten_kernels(p))
    assert np.all(w[~keep] == 0.0)  # exactly 0, weight decay included
    moved = w[keep] != np.asarray(flatten_kernels(p0))[keep]
    # the others train, except (without weight decay) the 2 into hidden unit 3, whose outgoing
    # weights are all pruned: their gradient is 0
    np.testing.assert_array_equal(np.flatnonzero(keep)[~moved], [] if name == "adamw" else [3, 7])
    assert float(_loss(p, x, y)) < float(_loss(p0, x, y))
    # the inner state never accumulated anything at pruned positions (momentum / Adam moments)
    for leaf_tree in _param_shaped_subtrees(state.inner_state, params):
        np.testing.assert_array_equal(np.asarray(flatten_kernels(leaf_tree))[~keep], 0.0)


def _param_shaped_subtrees(tree, params):
    """Sub-pytrees of an optax state with the structure of the params (traces, mu, nu)."""
    target = jax.tree.structure(params)
    found = []

    def visit(t):
        if jax.tree.structure(t) == target:
            found.append(t)
        elif isinstance(t, (tuple, list)):
            for c in t:
                visit(c)

    visit(tree)
    return found


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_masked_all_true_matches_unmasked_exactly(name):
    params = _params(dtype=np.float64)
    mask = prune.mask_from_flat(np.ones(20, bool), params)
    x, y = _data()
    tx_m, tx = prune.masked(OPTIMIZERS[name](), mask), OPTIMIZERS[name]()
    sm, s = tx_m.init(params), tx.init(params)
    # eager (op by op): two differently jitted programs may fuse or FMA-contract differently and
    # disagree in the last ulp, which says nothing about the wrapper
    step_m, step = _make_step(tx_m, jit=False), _make_step(tx, jit=False)
    pm = p = params
    for _ in range(10):
        pm, sm = step_m(pm, sm, x, y)
        p, s = step(p, s, x, y)
    for a, b in zip(jax.tree.leaves(pm), jax.tree.leaves(p)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_masked_jit_no_recompilation_and_mask_in_state():
    params = _params(dtype=np.float64)
    mask, _ = prune.causal_mask(P_HAND, params)
    tx = prune.masked(optax.adam(1e-2), mask)
    state = tx.init(prune.apply_mask(params, mask))
    assert isinstance(state, prune.MaskedState)
    assert jax.tree.structure(state.mask) == jax.tree.structure(params)
    traces = []
    step = _make_step(tx, traces)
    x, y = _data()
    p = prune.apply_mask(params, mask)
    for _ in range(3):
        p, state = step(p, state, x, y)
    assert len(traces) == 1
    # a different mask of the same shapes is data in the state: the compiled step is reused
    other, _ = prune.causal_mask(P_HAND, params, untestable="prune")
    tx2 = prune.masked(optax.adam(1e-2), other)
    state2 = tx2.init(params)
    step(prune.apply_mask(params, other), state2, x, y)
    assert len(traces) == 1


def test_masked_rejects_other_structure_and_zeros_nan_grads():
    params = _params(dtype=np.float64)
    mask, _ = prune.causal_mask(P_HAND, params, untestable="prune")
    tx = prune.masked(optax.sgd(1.0), mask)
    with pytest.raises(ValueError, match="tree structures"):
        tx.init({"layers": params["layers"][0]})
    state = tx.init(params)
    nan_grads = jax.tree.map(lambda v: jnp.full_like(v, jnp.nan), params)
    updates, _ = tx.update(nan_grads, state, params)
    u = np.asarray(flatten_kernels(updates))
    keep = _keep(mask)
    assert np.all(u[~keep] == 0.0) and np.all(np.isnan(u[keep]))


# ------------------------------------------------------------------------------------------
# FLOPs, summaries, IoU
# ------------------------------------------------------------------------------------------


def test_flops_hand_case():
    params = _params((3, 4, 2))
    dense = prune.dense_flops(params)
    # layer 0: 3*4 MACs -> 24 FLOPs + 4 bias adds; layer 1: 4*2 -> 16 + 2
    assert dense.macs == (12, 8) and dense.flops == (28, 18) and dense.total == 46
    assert dense.total_macs == 20
    assert prune.dense_flops(kernel_layout(params)) == dense
    assert prune.dense_flops(params, bias=False).flops == (24, 16)
    mask, s = prune.causal_mask(P_HAND, params)  # prunes 5 and 3
    sparse = prune.sparse_flops(mask)
    assert sparse.macs == (7, 5) and sparse.flops == (18, 12) and sparse.total == 30
    all_kept = prune.mask_from_flat(np.ones(20, bool), params)
    assert prune.sparse_flops(all_kept) == dense
    # a net without biases
    nob = {"layers": {0: {"kernel": jnp.ones((3, 4))}}}
    assert prune.dense_flops(nob).flops == (24,)


def test_mask_summary_and_iou():
    params = _params((3, 4, 2))
    a = np.ones(20, bool)
    a[[0, 1, 2, 12]] = False
    b = np.ones(20, bool)
    b[[1, 2, 3, 13, 14]] = False
    ma, mb = prune.mask_from_flat(a, params), prune.mask_from_flat(b, params)
    sa = prune.mask_summary(ma)
    assert sa.kept == (9, 7) and sa.pruned == (3, 1) and sa.total == (12, 8)
    assert sa.sparsity == pytest.approx(4 / 20) and sa.as_dict()["pruned_total"] == 4
    assert prune.pruned_iou(ma, mb) == pytest.approx(2 / 7)
    assert prune.pruned_iou(ma, mb, layers=[0]) == pytest.approx(2 / 4)
    assert prune.pruned_iou(ma, mb, layers=[1]) == pytest.approx(0 / 3)
    assert prune.pruned_iou(ma, ma) == 1.0
    full = prune.mask_from_flat(np.ones(20, bool), params)
    assert prune.pruned_iou(full, full) == 1.0


def test_summary_as_dict():
    _, s = prune.causal_mask(P_HAND, _params())
    d = s.as_dict()
    assert d["pruned_total"] == 8 and d["untestable_policy"] == "keep" and d["analysed"] == (12, 8)


def test_masked_state_owns_its_mask():
    """A GPU/TPU train step donates its state, deleting the buffers in it; the caller's mask
    must survive (on an H200 the pipeline's later stages hit 'Array has been deleted')."""
    params = _params((4, 6, 3))
    mask = prune.mask_from_flat(np.arange(kernel_layout(params).n_weights) % 2 == 0, params)
    state = prune.masked(optax.sgd(0.1), mask).init(params)
    for leaf in jax.tree.leaves(state.mask):
        leaf.delete()  # what donation does to the state's buffers
    assert all(not leaf.is_deleted() for leaf in jax.tree.leaves(mask))
    assert prune.flat_keep(mask).sum() == (kernel_layout(params).n_weights + 1) // 2
