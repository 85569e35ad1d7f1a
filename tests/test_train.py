"""Training and trajectory recording: the recorded trajectory is exactly what a plain loop sees."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import models
from jaxprune.train import (
    CONFIGS,
    TrainConfig,
    Trainer,
    batch_order,
    make_step,
    window_count,
    window_end_steps,
)
from jaxprune.weights import flatten_kernels, kernel_layout, unflatten_kernels, weight_index


def _toy_data(n=360, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 2
    y = rng.integers(0, classes, size=n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    return x, y


# 300 examples, batch 32 -> 10 steps per epoch (the last batch has 12 examples).
CFG = TrainConfig(hidden=(5, 4), batch_size=32, epochs=7, window=8, stride=5, learning_rate=0.5)


def _trainer(config=CFG, **kw):
    x, y = _toy_data()
    kw.setdefault("checkpoint_every_s", 0.0)  # every epoch: resume from any of them
    return Trainer(config, x[:300], y[:300], n_classes=3, x_test=x[300:], y_test=y[300:], **kw)


def _plain_loop(trainer: Trainer, epochs: int):
    """Step-by-step reference: a jitted single step in a Python loop, snapshots after each step."""
    cfg = trainer.config
    step = jax.jit(make_step(trainer.apply, trainer.tx, cfg.loss))
    params = trainer.init_params
    opt_state = trainer.tx.init(params)
    snaps, accs = [], []
    for epoch in range(epochs):
        idx, wts = batch_order(cfg.seed, epoch, trainer.n_train, cfg.batch_size)
        for b in range(idx.shape[0]):
            params, opt_state, _, _ = step(params, opt_state, trainer.x_train[idx[b]], trainer.y_train[idx[b]], wts[b])
            snaps.append(np.asarray(flatten_kernels(params)))
            accs.append(trainer.evaluate(params, "train"))
    return np.stack(snaps), np.asarray(accs), params


@pytest.mark.timeout(120)
def test_trajectory_equals_plain_loop_and_windows_are_slices(tmp_path):
    trainer = _trainer(keep_trajectory=tmp_path / "traj.npy")
    seen = []
    res = trainer.fit(on_window=lambda w: seen.append(w))
    traj = np.load(tmp_path / "traj.npy")
    ref, ref_acc, ref_params = _plain_loop(trainer, CFG.epochs)
    assert traj.shape == (70, trainer.n_weights) == ref.shape
    np.testing.assert_array_equal(traj, ref)
    jax.tree.map(np.testing.assert_array_equal, res.params, jax.device_get(ref_params))
    # Every window is the slice of the full trajectory it claims, oldest step first.
    n = window_count(70, CFG.window, CFG.stride)
    assert [w.index for w in seen] == list(range(n)) and n == 13
    np.testing.assert_array_equal(res.window_end_steps, window_end_steps(n, 8, 5))
    for w in seen:
        start = w.end_step - CFG.window
        np.testing.assert_array_equal(np.asarray(w.value), traj[start : w.end_step])
        # the risk series is aligned to the end step: training accuracy after that step
        assert w.accuracy == pytest.approx(ref_acc[w.end_step - 1], abs=1e-6)
    np.testing.assert_allclose(res.window_accuracy, ref_acc[res.window_end_steps - 1], atol=1e-6)
    np.testing.assert_allclose(res.risk, 1 - res.window_accuracy)


def test_stream_yields_the_same_windows_as_fit():
    trainer = _trainer()
    streamed = list(trainer.stream(epochs=3))
    fitted = []
    trainer.fit(epochs=3, on_window=fitted.append)
    assert len(streamed) == len(fitted) == window_count(30, 8, 5)
    for a, b in zip(streamed, fitted):
        assert (a.index, a.end_step) == (b.index, b.end_step)
        np.testing.assert_array_equal(np.asarray(a.value), np.asarray(b.value))


def test_window_fn_runs_outside_the_epoch_on_each_raw_window():
    """The epoch only records: `window_fn` gets each completed raw window as a concrete array
    (not a tracer of the compiled epoch), once, in order; its outputs are kept and streamed."""
    seen = []

    def fn(w):
        if not isinstance(w, jax.core.Tracer):  # traced only for the output shapes
            seen.append(np.asarray(w))
        return {"mean": jnp.mean(w, axis=0), "first": w[0]}

    trainer = _trainer(window_fn=fn)
    streamed = []
    res = trainer.fit(epochs=3, on_window=streamed.append)
    raw = [np.asarray(w.value) for w in _trainer().stream(epochs=3)]
    assert len(seen) == len(raw) == len(streamed) == window_count(30, 8, 5) == len(res.window_end_steps)
    for got, want, win in zip(seen, raw, streamed):
        np.testing.assert_array_equal(got, want)  # (window, n_weights) float32, oldest step first
        assert got.shape == (CFG.window, trainer.n_weights) and got.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(win.value["mean"]), want.mean(axis=0, dtype=np.float32))
    np.testing.assert_array_equal(res.window_outputs["first"], np.stack([w[0] for w in raw]))
    assert trainer.window_output_struct()["mean"].shape == (trainer.n_weights,)


def test_same_seed_same_trajectory_other_seed_differs(tmp_path):
    t1 = _trainer(keep_trajectory=tmp_path / "a.npy")
    t2 = _trainer(keep_trajectory=tmp_path / "b.npy")
    t3 = _trainer(CFG.replace(seed=1), keep_trajectory=tmp_path / "c.npy")
    for t in (t1, t2, t3):
        t.fit(epochs=2)
    a, b, c = (np.load(tmp_path / f"{k}.npy") for k in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.timeout(120)
def test_resume_gives_identical_result(tmp_path):
    fn = lambda w: jnp.mean(w, axis=0)  # noqa: E731 - a window_fn whose outputs are kept
    full = _trainer(window_fn=fn).fit()
    ck = tmp_path / "ckpt"
    interrupted = _trainer(window_fn=fn, checkpoint_dir=ck).fit(epochs=3)
    assert interrupted.epochs == 3
    resumed = _trainer(window_fn=fn, checkpoint_dir=ck).fit(resume=True)
    assert resumed.epochs == full.epochs and resumed.steps == full.steps == 70
    jax.tree.map(np.testing.assert_array_equal, resumed.params, full.params)
    np.testing.assert_array_equal(resumed.window_accuracy, full.window_accuracy)
    np.testing.assert_array_equal(resumed.window_end_steps, full.window_end_steps)
    np.testing.assert_array_equal(resumed.window_outputs, full.window_outputs)
    assert resumed.history["train_accuracy"] == full.history["train_accuracy"]
    assert resumed.test_accuracy == full.test_accuracy


def test_resume_continues_full_trajectory_file(tmp_path):
    ref = _trainer(keep_trajectory=tmp_path / "ref.npy")
    ref.fit()
    ck = tmp_path / "ck"
    _trainer(keep_trajectory=tmp_path / "t.npy", checkpoint_dir=ck).fit(epochs=4)
    _trainer(keep_trajectory=tmp_path / "t.npy", checkpoint_dir=ck).fit(resume=True)
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), np.load(tmp_path / "ref.npy"))


def test_target_accuracy_stops_early():
    res = _trainer(CFG.replace(epochs=50)).fit(target_train_accuracy=0.5)
    assert res.epochs < 50 and res.history["reached_target"]
    assert res.train_accuracy >= 0.5


def test_batch_risk_and_other_optimizers_and_losses():
    for cfg in (
        CFG.replace(risk="batch", epochs=2),
        CFG.replace(loss="cross_entropy", optimizer="adam", learning_rate=1e-2, epochs=2),
        CFG.replace(activation="relu", init="lecun", epochs=2),
    ):
        res = _trainer(cfg).fit()
        assert res.steps == 20 and np.all(np.isfinite(res.window_accuracy))


def test_any_optax_optimizer_can_be_passed():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9))
    res = _trainer(tx=tx).fit(epochs=2)
    assert res.steps == 20


def test_binary_output_single_unit():
    x, y = _toy_data(classes=2)
    tr = Trainer(CFG.replace(epochs=10, loss="cross_entropy"), x, y, n_classes=2, binary_output=True)
    assert tr.widths[-1] == 1
    res = tr.fit()
    assert res.train_accuracy > 0.6


def test_epoch_function_compiles_once():
    trainer = _trainer()
    state = trainer.initial_state()
    state, _ = trainer.run_epoch(state, 0)
    n = trainer._epoch_fn._cache_size()
    for e in range(1, 4):
        state, _ = trainer.run_epoch(state, e)
    assert trainer._epoch_fn._cache_size() == n == 1


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="window"):
        TrainConfig(window=1)
    with pytest.raises(ValueError, match="optax has no optimizer"):
        _trainer(CFG.replace(optimizer="nope"))
    x, y = _toy_data()
    with pytest.raises(ValueError, match="x_train"):
        Trainer(CFG, x[:, None], y, n_classes=3)
    with pytest.raises(TypeError, match="integer"):
        Trainer(CFG, x, y.astype(np.float32), n_classes=3)
    with pytest.raises(ValueError, match="resume"):
        _trainer().fit(resume=True)


def test_weight_index_roundtrip():
    _, params = models.init_mlp((4, 3, 2), seed=0)
    layout = kernel_layout(params)
    assert layout.shapes == ((4, 3), (3, 2)) and layout.n_weights == 18
    flat = flatten_kernels(params)
    idx = weight_index(params)
    k0 = np.asarray(params["layers"][0]["kernel"])
    k1 = np.asarray(params["layers"][1]["kernel"])
    for i, (layer, r, c) in enumerate(idx):
        assert flat[i] == (k0 if layer == 0 else k1)[r, c]
    back = unflatten_kernels(flat, params)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    mask = unflatten_kernels(flat > 0, params, other=True)
    assert mask["layers"][0]["bias"].dtype == jnp.bool_ and bool(mask["layers"][1]["bias"].all())


def test_named_original_config():
    cfg = CONFIGS["original_mnist"]
    assert (cfg.hidden, cfg.activation, cfg.loss, cfg.optimizer) == ((50, 30), "sigmoid", "mse", "sgd")
    assert (cfg.learning_rate, cfg.batch_size, cfg.epochs, cfg.window, cfg.stride) == (0.5, 128, 50, 50, 45)


def test_window_end_steps_agree_with_the_lyapunov_module():
    from jaxprune import lyapunov

    for window, stride in ((50, 45), (200, 180), (8, 5), (30, 30)):
        np.testing.assert_array_equal(lyapunov.window_end_steps(7, window, stride), window_end_steps(7, window, stride))
    # the paper's formula for its 50 / 45 windows
    np.testing.assert_array_equal(window_end_steps(4, 50, 45), [int(50 * 0.9 * (k + 1) + 5) for k in range(4)])


def test_masked_retrainings_share_one_compiled_epoch():
    """Trainers whose optimizers differ only in the mask (data in the optimizer state) reuse one
    compiled epoch through `epoch_fn_cache`, with results bit-identical to compiling their own;
    another config gets its own entry, and a window_fn is refused."""
    from jaxprune import prune

    init = _trainer().init_params
    rng = np.random.default_rng(0)
    masks = [jax.tree.map(lambda a, s=s: rng.random(np.shape(a)) > s, init) for s in (0.2, 0.6)]
    cache: dict = {}
    shared, own = [], []
    for m in masks:
        tx = prune.masked(optax.sgd(CFG.learning_rate), m)
        t = _trainer(tx=tx, init_params=prune.apply_mask(init, m), epoch_fn_cache=cache)
        shared.append((t, t.fit(epochs=3)))
        own.append(
            _trainer(tx=prune.masked(optax.sgd(CFG.learning_rate), m), init_params=prune.apply_mask(init, m)).fit(
                epochs=3
            )
        )
    assert len(cache) == 1
    fn = shared[0][0]._epoch_fn
    assert shared[1][0]._epoch_fn is fn and fn._cache_size() == 1  # compiled once for both
    for (_, a), b, m in zip(shared, own, masks):
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        flat = flatten_kernels(a.params)
        assert np.all(np.asarray(flat)[~np.asarray(flatten_kernels(m))] == 0)
    assert not np.array_equal(
        np.asarray(flatten_kernels(shared[0][1].params)), np.asarray(flatten_kernels(shared[1][1].params))
    )
    _trainer(config=CFG.replace(learning_rate=0.1), epoch_fn_cache=cache)
    assert len(cache) == 2
    with pytest.raises(ValueError, match="window_fn"):
        _trainer(window_fn=lambda w: w, epoch_fn_cache=cache)
