"""LegcnetConfig's groups: flat shorthand, replace, both stored layouts, validation, hashing."""

import json

import jax
import pytest

from jaxprune import pipeline
from jaxprune.config import (
    GrangerConfig,
    LegcnetConfig,
    LyapunovConfig,
    RetrainConfig,
    SelectionConfig,
    flat_config_dict,
    preset,
)
from jaxprune.granger import GrangerParams
from jaxprune.lyapunov import LyapunovParams
from jaxprune.train import TrainConfig

# config.json of a `jaxprune run --dataset iris --quick` made before the config was grouped
# (the flat layout; run.json keeps it): it must still load.
OLD_FLAT = json.loads("""
{"train": {"hidden": [6], "activation": "sigmoid", "loss": "mse", "init": "torch",
 "optimizer": "sgd", "learning_rate": 0.05, "batch_size": 1, "epochs": 100, "seed": 0,
 "window": 160, "stride": 144, "risk": "train"}, "le_mode": "parity", "m": 2, "d": 1,
 "theiler": 0, "s": 20, "r": 20.0, "quantize": false, "maxlag": 14, "test": "ssr_chi2test",
 "alpha": 0.05, "stationarity": false, "nan_fill": 0.0, "untestable": "keep", "layers": null,
 "correction": "none", "round_pvalues": null, "pt_windows": 25, "target_accuracy": 0.95,
 "max_retrain_epochs": null, "per_layer_baselines": true, "baselines_for": ["legcnet_ft"],
 "verify_sample": 64, "memory_budget_mb": null}
""")


def test_groups_and_flat_shorthand():
    cfg = LegcnetConfig(alpha=0.01, m=3, maxlag=7, target_accuracy=0.8, le_mode="fast", layers=[-1], verify_sample=5)
    assert cfg.selection == SelectionConfig(alpha=0.01, layers=(-1,))
    assert cfg.lyapunov == LyapunovConfig(le_mode="fast", m=3)
    assert cfg.granger == GrangerConfig(maxlag=7)
    assert cfg.retrain == RetrainConfig(target_accuracy=0.8)
    assert cfg.train == TrainConfig() and cfg.verify_sample == 5
    # flat reads are the group fields, read-only
    assert (cfg.alpha, cfg.m, cfg.maxlag, cfg.le_mode, cfg.layers) == (0.01, 3, 7, "fast", (-1,))
    assert cfg.retrain_epochs == cfg.train.epochs == 50
    with pytest.raises(AttributeError):
        cfg.alpha = 0.2
    # the kernels' parameter objects
    assert cfg.lyapunov.params == LyapunovParams(m=3)
    assert cfg.granger.params == GrangerParams(maxlag=7)
    with pytest.raises(TypeError, match="unexpected keyword"):
        LegcnetConfig(alhpa=0.1)
    with pytest.raises(TypeError, match="selection must be a SelectionConfig"):
        LegcnetConfig(selection=GrangerConfig())


def test_replace_takes_flat_and_group_names():
    cfg = LegcnetConfig()
    a = cfg.replace(alpha=0.01, train=cfg.train.replace(epochs=3), max_retrain_epochs=2)
    assert a.selection.alpha == 0.01 and a.train.epochs == 3 and a.retrain_epochs == 2
    assert cfg.alpha == 0.05  # frozen: the original is unchanged
    # a flat field applies on top of a group given in the same call
    b = cfg.replace(selection=SelectionConfig(pt_windows=9), alpha=0.2)
    assert b.selection == SelectionConfig(pt_windows=9, alpha=0.2)
    assert cfg.replace(memory_budget_mb=8.0).memory_budget_mb == 8.0
    # the preset helpers still build through the flat names
    assert preset("iris", quick=True).baselines_for == ("legcnet_ft",)
    assert pipeline.preset is preset and pipeline.LegcnetConfig is LegcnetConfig


def test_from_dict_reads_the_old_flat_and_the_grouped_layout():
    old = LegcnetConfig.from_dict(OLD_FLAT)
    assert old == preset("iris", quick=True)
    assert old.to_flat_dict() == LegcnetConfig.from_dict(json.loads(json.dumps(OLD_FLAT))).to_flat_dict()
    # the fingerprint layout is the old one, key for key and value for value
    assert json.loads(json.dumps(old.to_flat_dict())) == OLD_FLAT
    grouped = json.loads(json.dumps(old.to_dict()))
    assert set(grouped) == {"train", "lyapunov", "granger", "selection", "retrain", "verify_sample", "memory_budget_mb"}
    assert LegcnetConfig.from_dict(grouped) == old
    assert flat_config_dict(grouped) == flat_config_dict(OLD_FLAT) == OLD_FLAT
    # tuples survive JSON (layers, baselines_for, a two-step correction)
    cfg = LegcnetConfig(layers=(0, -1), correction=("holm", "bh"), baselines_for=("legcnet_pt",))
    for d in (cfg.to_dict(), cfg.to_flat_dict()):
        back = LegcnetConfig.from_dict(json.loads(json.dumps(d)))
        assert back == cfg and hash(back) == hash(cfg)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"le_mode": "exact"}, "le_mode must be 'parity' or 'fast'"),
        ({"test": "wald"}, "test must be one of"),
        ({"untestable": "drop"}, "untestable must be 'keep' or 'prune'"),
        ({"alpha": 1.0}, r"alpha must lie in \(0, 1\)"),
        ({"maxlag": 0}, "maxlag must be >= 1 and pt_windows >= 5"),
        ({"pt_windows": 4}, "maxlag must be >= 1 and pt_windows >= 5"),
        ({"baselines_for": ("random",)}, "baselines_for takes legcnet_ft / legcnet_pt"),
        ({"layers": ()}, "layers is empty"),
        ({"layers": (3,)}, r"layers \[3\] out of range: the net has 3 weight layers"),
        ({"round_pvalues": -1}, "round_pvalues must be >= 0"),
        ({"target_accuracy": 0.0}, r"target_accuracy must lie in \(0, 1\]"),
        ({"max_retrain_epochs": 0}, "max_retrain_epochs must be >= 1"),
        ({"memory_budget_mb": 0}, "memory_budget_mb must be > 0"),
        ({"correction": "fdr"}, "unknown correction 'fdr'"),
    ],
)
def test_validation_messages_unchanged(changes, match):
    with pytest.raises(ValueError, match=match):
        LegcnetConfig(**changes)
    with pytest.raises(ValueError, match=match):
        LegcnetConfig().replace(**changes)


def test_hashable_static_jit_argument():
    a, b = LegcnetConfig(alpha=0.01), LegcnetConfig().replace(alpha=0.01)
    assert a == b and hash(a) == hash(b) and len({a, b, LegcnetConfig()}) == 2
    calls = []

    def f(x, cfg):
        calls.append(cfg)  # runs once per distinct static value (tracing)
        return x * cfg.selection.alpha

    jf = jax.jit(f, static_argnames="cfg")
    assert float(jf(2.0, cfg=a)) == pytest.approx(0.02)
    jf(3.0, cfg=b)
    assert len(calls) == 1  # equal configs share one compilation
    for group in (a.lyapunov, a.granger, a.selection, a.retrain, a.lyapunov.params):
        hash(group)
