"""The training step against an independent NumPy reference (forward, backward and SGD written
out by hand), and checks that the optimizer, the loss and the risk kind given are really used."""

import numpy as np
import optax
import pytest

from jaxprune.train import CONFIGS, Trainer, batch_order

# 300 training examples, batch 32 -> 10 steps per epoch, the last one with 12 examples (the
# original's PyTorch DataLoader gives a smaller last batch). Windows of 4 steps every 3 steps end
# at steps 4, 7 and 10 (the partial batch).
N_TRAIN, BATCH = 300, 32
CFG = CONFIGS["original_mnist"].replace(hidden=(7, 5), batch_size=BATCH, epochs=1, window=4, stride=3)


def _toy_data(n=360, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 2
    y = rng.integers(0, classes, size=n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    return x[:N_TRAIN], y[:N_TRAIN]


def _trainer(config=CFG, **kw):
    x, y = _toy_data()
    return Trainer(config, x, y, n_classes=3, **kw)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _numpy_epoch(params, x, y, perm, batch, lr, loss):
    """One epoch of plain SGD in float64: sigmoid hidden layers, softmax output, ``loss`` "mse"
    (PyTorch's MSELoss on the softmax vs one-hot, mean over all batch x class elements) or
    "cross_entropy"; batches of `batch` in `perm` order, the last one smaller.

    params: [(W (in, out), b (out,)), ...]. Returns (params, batch accuracy of every step before
    its update).
    """
    Ws = [np.asarray(W, np.float64) for W, _ in params]
    bs = [np.asarray(b, np.float64) for _, b in params]
    accs = []
    for start in range(0, len(perm), batch):
        ib = perm[start : start + batch]
        xb, yb = np.asarray(x[ib], np.float64), y[ib]
        n, c = len(ib), Ws[-1].shape[1]
        acts = [xb]
        for W, b in zip(Ws[:-1], bs[:-1]):
            acts.append(_sigmoid(acts[-1] @ W + b))
        logits = acts[-1] @ Ws[-1] + bs[-1]
        p = _softmax(logits)
        accs.append(np.mean(np.argmax(logits, 1) == yb))
        t = np.eye(c)[yb]
        if loss == "mse":
            dp = 2.0 * (p - t) / (n * c)
            dz = p * (dp - np.sum(dp * p, axis=1, keepdims=True))  # softmax Jacobian
        else:
            dz = (p - t) / n
        for k in range(len(Ws) - 1, -1, -1):
            gW, gb = acts[k].T @ dz, dz.sum(0)
            if k > 0:
                dz = (dz @ Ws[k].T) * acts[k] * (1 - acts[k])
            Ws[k] = Ws[k] - lr * gW
            bs[k] = bs[k] - lr * gb
    return list(zip(Ws, bs)), np.asarray(accs)


def _layers(params):
    return [(params["layers"][i]["kernel"], params["layers"][i]["bias"]) for i in range(len(params["layers"]))]


def _perm(config):
    idx, _ = batch_order(config.seed, 0, N_TRAIN, config.batch_size)
    return np.asarray(idx).ravel()[:N_TRAIN]  # drop the padding of the last batch


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_one_epoch_matches_numpy_reference(loss):
    """The original config (MSE on the softmax, PyTorch init, SGD 0.5, partial last batch) and
    cross-entropy: the trained weights after one epoch equal a hand-written NumPy loop."""
    cfg = CFG.replace(loss=loss)
    trainer = _trainer(cfg)
    res = trainer.fit()
    x, y = _toy_data()
    want, batch_accs = _numpy_epoch(_layers(res.init_params), x, y, _perm(cfg), BATCH, cfg.learning_rate, loss)
    assert len(batch_accs) == 10 and res.steps == 10
    moved = 0.0
    for (W, b), (W0, _b0), (Wr, br) in zip(_layers(res.params), _layers(res.init_params), want):
        # float32 training vs float64 reference; measured max diff ~3e-7
        np.testing.assert_allclose(np.asarray(W), Wr, rtol=0, atol=2e-6)
        np.testing.assert_allclose(np.asarray(b), br, rtol=0, atol=2e-6)
        moved = max(moved, float(np.max(np.abs(Wr - np.asarray(W0)))))
    assert moved > 1e-2  # the epoch really trained (the check is not on near-initial weights)


def test_torch_default_init_bounds():
    """PyTorch's nn.Linear init: kernel and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    p = _trainer().init_params
    for W, b in _layers(p):
        bound = 1 / np.sqrt(W.shape[0])
        for a in (np.asarray(W), np.asarray(b)):
            assert np.all(np.abs(a) <= bound)
        # spread over the whole interval (lecun normal would exceed it, a 0 bias would not span)
        assert np.ptp(np.asarray(W)) > bound and np.ptp(np.asarray(b)) > 0.25 * bound


def test_risk_batch_is_the_step_minibatch_accuracy():
    """risk="batch": window accuracy = that step's mini-batch accuracy before its update (the
    NumPy reference's), not the training-split accuracy; training itself is unchanged."""
    res_b = _trainer(CFG.replace(risk="batch")).fit()
    res_t = _trainer(CFG).fit()
    x, y = _toy_data()
    _, batch_accs = _numpy_epoch(_layers(res_b.init_params), x, y, _perm(CFG), BATCH, CFG.learning_rate, "mse")
    np.testing.assert_array_equal(res_b.window_end_steps, [4, 7, 10])
    np.testing.assert_allclose(res_b.window_accuracy, batch_accs[[3, 6, 9]], atol=1e-6)
    assert not np.allclose(res_b.window_accuracy, res_t.window_accuracy)
    for a, b in zip(_layers(res_b.params), _layers(res_t.params)):
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))


def test_user_optax_tx_is_the_optimizer_used():
    """A passed `tx` replaces the config's optimizer: sgd(0.05) passed with a config saying
    lr 0.5 trains exactly like a config saying lr 0.05, and unlike the config's own 0.5."""
    passed = _trainer(tx=optax.sgd(0.05)).fit()
    same = _trainer(CFG.replace(learning_rate=0.05)).fit()
    default = _trainer().fit()
    for a, b, c in zip(_layers(passed.params), _layers(same.params), _layers(default.params)):
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
        assert np.max(np.abs(np.asarray(a[0]) - np.asarray(c[0]))) > 1e-3
    # a stateful optimizer (momentum) also changes the result
    mom = _trainer(tx=optax.sgd(0.05, momentum=0.9)).fit()
    assert (
        np.max(np.abs(np.asarray(mom.params["layers"][0]["kernel"]) - np.asarray(passed.params["layers"][0]["kernel"])))
        > 1e-4
    )
