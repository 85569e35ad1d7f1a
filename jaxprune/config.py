"""The settings of a LEGCNet run, grouped by pipeline stage.

`LegcnetConfig` holds one frozen group per stage (docs/architecture.md):

========== ===================== ====================================================
group      class                 fields
========== ===================== ====================================================
train      `TrainConfig`         net, optimizer, batching, windows, seed
lyapunov   `LyapunovConfig`      le_mode, m, d, theiler, s, r, quantize
granger    `GrangerConfig`       maxlag, test, stationarity
selection  `SelectionConfig`     alpha, nan_fill, untestable, layers, correction,
                                 round_pvalues, pt_windows
retrain    `RetrainConfig`       target_accuracy, max_retrain_epochs,
                                 per_layer_baselines, baselines_for
(run)      `LegcnetConfig`       verify_sample, memory_budget_mb
========== ===================== ====================================================

Flat shorthand (permanent, not deprecated): every group field is also a constructor keyword
and a read-only attribute of `LegcnetConfig` (``LegcnetConfig(alpha=0.01).alpha``,
``cfg.replace(m=3)``), because field names are unique across groups and most call sites want
one setting. Every object is frozen and hashable, so a config (or one group's ``params``) can be
a static ``jax.jit`` argument.

Serialised layouts: `LegcnetConfig.to_dict` writes the grouped layout (``config.json``,
``results.json``); `LegcnetConfig.to_flat_dict` writes the flat layout of earlier versions, used
for the run fingerprint (``run.json``) so runs made before the grouping still resume;
`LegcnetConfig.from_dict` reads both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxprune import granger as granger_mod
from jaxprune import prune
from jaxprune.granger import GrangerParams
from jaxprune.lyapunov import LyapunovParams
from jaxprune.train import TrainConfig

__all__ = [
    "LegcnetConfig",
    "LyapunovConfig",
    "GrangerConfig",
    "SelectionConfig",
    "RetrainConfig",
    "TrainConfig",
    "flat_config_dict",
    "preset",
    "TABULAR_PRESETS",
]


def _tuple_or_none(value):
    # JSON gives lists; tuples keep the config hashable and equal to the one written
    return None if value is None else tuple(value)


@dataclasses.dataclass(frozen=True)
class LyapunovConfig:
    """Lyapunov stage: TISEAN ``lyap_r`` settings (see `jaxprune.lyapunov.LyapunovParams`)
    and the precision mode.

    le_mode: ``"parity"`` (float64, TISEAN-exact; needs x64) or ``"fast"`` (float32).
    m, d, theiler, s, r, quantize: as in `LyapunovParams` (the paper's ``-m2 -d1 -s20 -r20``).
    They are checked when the kernel runs (``params``), as before the grouping.
    """

    le_mode: str = "parity"
    m: int = 2
    d: int = 1
    theiler: int = 0
    s: int = 20
    r: float | None = 20.0
    quantize: bool = False

    def __post_init__(self):
        if self.le_mode not in ("parity", "fast"):
            raise ValueError(f"le_mode must be 'parity' or 'fast', got {self.le_mode!r}")

    @property
    def params(self) -> LyapunovParams:
        """The kernel settings as one hashable `LyapunovParams` (validated here)."""
        return LyapunovParams(
            m=self.m, d=self.d, theiler=self.theiler, s=self.s, r=self.r, quantize=bool(self.quantize)
        )

    def replace(self, **changes) -> LyapunovConfig:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class GrangerConfig:
    """Granger stage: lags 1..maxlag of ``test`` (min p over lags); ``stationarity``
    differences series whose ADF p > 0.05 first (the original notebook's option)."""

    maxlag: int = 14
    test: str = "ssr_chi2test"
    stationarity: bool = False

    def __post_init__(self):
        if self.test not in granger_mod.TESTS:
            raise ValueError(f"test must be one of {granger_mod.TESTS}, got {self.test!r}")
        if self.maxlag < 1:
            raise ValueError("maxlag must be >= 1 and pt_windows >= 5")

    @property
    def params(self) -> GrangerParams:
        """The kernel settings as one hashable `GrangerParams`."""
        return GrangerParams(maxlag=int(self.maxlag), test=self.test)

    def replace(self, **changes) -> GrangerConfig:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """Select stage: from p-values to masks.

    alpha: significance level in (0, 1); p >= alpha prunes. nan_fill: value of the LE windows
    without an estimate (the original: 0). untestable: ``"keep"`` (the original) or
    ``"prune"`` the weights whose test is impossible. layers: analysed layer indices (None:
    all). correction: ``"none"``, ``"bonferroni"``, ``"holm"``, ``"bh"`` or a pair such as
    ``("holm", "bh")``. round_pvalues: decimals to round p to first (None: no rounding; the
    original used 4). pt_windows: LEGCNet-PT uses the first pt_windows (>= 5) windows.
    """

    alpha: float = 0.05
    nan_fill: float = 0.0
    untestable: str = "keep"
    layers: tuple[int, ...] | None = None
    correction: str | tuple[str, ...] = "none"
    round_pvalues: int | None = None
    pt_windows: int = 25

    def __post_init__(self):
        if self.untestable not in ("keep", "prune"):
            raise ValueError(f"untestable must be 'keep' or 'prune', got {self.untestable!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if self.pt_windows < 5:
            raise ValueError("maxlag must be >= 1 and pt_windows >= 5")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
            if not self.layers:
                raise ValueError("layers is empty: name at least one layer (or omit it for all)")
        if not isinstance(self.correction, str):
            object.__setattr__(self, "correction", tuple(self.correction))
        if self.round_pvalues is not None and int(self.round_pvalues) < 0:
            raise ValueError(f"round_pvalues must be >= 0 decimals, got {self.round_pvalues}")
        prune._parse_correction(self.correction)  # an unknown name fails here, before training

    def replace(self, **changes) -> SelectionConfig:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """Retrain stage: each mask retrains from the dense init until the training accuracy
    reaches ``target_accuracy`` (in (0, 1]) or ``max_retrain_epochs`` pass (None: the dense
    run's epochs). Random / magnitude baselines are built at the sparsity of each method in
    ``baselines_for`` (``"legcnet_ft"``, ``"legcnet_pt"``), per layer when
    ``per_layer_baselines``."""

    target_accuracy: float = 0.92
    max_retrain_epochs: int | None = None
    per_layer_baselines: bool = True
    baselines_for: tuple[str, ...] = ("legcnet_ft", "legcnet_pt")

    def __post_init__(self):
        object.__setattr__(self, "baselines_for", tuple(self.baselines_for))
        for b in self.baselines_for:
            if b not in ("legcnet_ft", "legcnet_pt"):
                raise ValueError(f"baselines_for takes legcnet_ft / legcnet_pt, got {b!r}")
        if not 0 < self.target_accuracy <= 1:
            raise ValueError(f"target_accuracy must lie in (0, 1], got {self.target_accuracy}")
        if self.max_retrain_epochs is not None and int(self.max_retrain_epochs) < 1:
            raise ValueError(f"max_retrain_epochs must be >= 1, got {self.max_retrain_epochs}")

    def replace(self, **changes) -> RetrainConfig:
        return dataclasses.replace(self, **changes)


_GROUPS: dict[str, type] = {
    "lyapunov": LyapunovConfig,
    "granger": GrangerConfig,
    "selection": SelectionConfig,
    "retrain": RetrainConfig,
}
# flat field name -> its group (names are unique across groups)
_FLAT: dict[str, str] = {f.name: g for g, cls in _GROUPS.items() for f in dataclasses.fields(cls)}
# the flat layout of earlier versions' config.json / run.json, in its field order
_FLAT_ORDER = (
    "le_mode",
    "m",
    "d",
    "theiler",
    "s",
    "r",
    "quantize",
    "maxlag",
    "test",
    "alpha",
    "stationarity",
    "nan_fill",
    "untestable",
    "layers",
    "correction",
    "round_pvalues",
    "pt_windows",
    "target_accuracy",
    "max_retrain_epochs",
    "per_layer_baselines",
    "baselines_for",
)
_RUN_FIELDS = ("verify_sample", "memory_budget_mb")


@dataclasses.dataclass(frozen=True, init=False)
class LegcnetConfig:
    """Everything a LEGCNet run depends on besides the data and the seeds.

    Defaults reproduce the original: ``lyap_r -m2 -r20 -d1 -s20`` slopes, Granger maxlag 14,
    min ``ssr_chi2test`` p over lags, alpha 0.05, NaN windows filled with 0, untestable weights
    kept, all layers analysed (the original: only the last two, ``layers=(-2, -1)``), PT on the
    first 25 windows, retraining to 92 % training accuracy.

    ``untestable="keep"`` is the default because it is the original's rule; a weight that never
    moves (17.7 % of mnist5k's first layer: its input pixel is always 0) has no LE estimate and
    cannot cause anything, so ``"prune"`` is the better choice for compression. Reports give
    both counts.

    Groups: ``train``, ``lyapunov``, ``granger``, ``selection``, ``retrain`` (see the module
    docstring); run-level: ``verify_sample`` (weights whose raw windows are kept for `jaxprune
    verify`) and ``memory_budget_mb`` (per-device budget of the LE / Granger kernels, MB; None:
    no chunking). Any group field may also be given, read and replaced by its flat name.
    """

    train: TrainConfig
    lyapunov: LyapunovConfig
    granger: GrangerConfig
    selection: SelectionConfig
    retrain: RetrainConfig
    verify_sample: int
    memory_budget_mb: float | None

    def __init__(
        self,
        train: TrainConfig | None = None,
        lyapunov: LyapunovConfig | None = None,
        granger: GrangerConfig | None = None,
        selection: SelectionConfig | None = None,
        retrain: RetrainConfig | None = None,
        verify_sample: int = 64,
        memory_budget_mb: float | None = None,
        **flat: Any,
    ):
        unknown = sorted(set(flat) - set(_FLAT))
        if unknown:
            raise TypeError(f"LegcnetConfig got unexpected keyword argument(s) {unknown}")
        given = {"lyapunov": lyapunov, "granger": granger, "selection": selection, "retrain": retrain}
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("train", TrainConfig() if train is None else train)
        for group, cls in _GROUPS.items():
            value = given[group] if given[group] is not None else cls()
            if not isinstance(value, cls):
                raise TypeError(f"{group} must be a {cls.__name__}, got {type(value).__name__}")
            changes = {k: v for k, v in flat.items() if _FLAT[k] == group}
            set_(group, value.replace(**changes) if changes else value)
        set_("verify_sample", verify_sample)
        set_("memory_budget_mb", memory_budget_mb)
        self.__post_init__()

    def __post_init__(self):
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        if not isinstance(self.train, TrainConfig):
            raise TypeError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        layers = self.selection.layers
        if layers is not None:  # needs the net's depth: checked here, across groups
            n_layers = len(self.train.hidden) + 1
            bad = [i for i in layers if not -n_layers <= i < n_layers]
            if bad:
                raise ValueError(
                    f"layers {bad} out of range: the net has {n_layers} weight "
                    f"layers (0..{n_layers - 1}, or -{n_layers}..-1)"
                )

    @property
    def retrain_epochs(self) -> int:
        """The retraining epoch cap: ``max_retrain_epochs`` or the dense run's epochs."""
        return self.retrain.max_retrain_epochs or self.train.epochs

    def replace(self, **changes) -> LegcnetConfig:
        """A copy with `changes`: group objects (``train=``, ``selection=``...), run-level
        fields or flat group fields (``alpha=``...; applied on top of a group given too)."""
        kwargs = {name: getattr(self, name) for name in ("train", *_GROUPS, *_RUN_FIELDS)}
        kwargs.update(changes)
        return LegcnetConfig(**kwargs)

    def to_dict(self) -> dict:
        """The grouped layout: ``{"train": {...}, "lyapunov": {...}, ..., "verify_sample": ...}``."""
        return dataclasses.asdict(self)

    def to_flat_dict(self) -> dict:
        """The flat layout of earlier versions (``{"train": {...}, "le_mode": ..., "m": ...}``)."""
        out = {"train": self.train.to_dict()}
        out.update({k: getattr(self, k) for k in _FLAT_ORDER})
        out.update({k: getattr(self, k) for k in _RUN_FIELDS})
        return out

    @classmethod
    def from_dict(cls, d: dict) -> LegcnetConfig:
        """A config from `to_dict`'s grouped layout or the flat layout (``config.json`` /
        ``run.json`` of earlier versions, `to_flat_dict`)."""
        d = dict(d)
        kwargs: dict[str, Any] = {}
        if d.get("train") is not None:
            kwargs["train"] = TrainConfig(**d.pop("train"))
        for group, group_cls in _GROUPS.items():
            if isinstance(d.get(group), dict):
                kwargs[group] = group_cls(**_tuples(d.pop(group)))
        kwargs.update(_tuples(d))
        return cls(**kwargs)


def _tuples(d: dict) -> dict:
    d = dict(d)
    for key in ("layers", "baselines_for"):
        if key in d:
            d[key] = _tuple_or_none(d[key])
    if isinstance(d.get("correction"), list):
        d["correction"] = tuple(d["correction"])
    return d


def _flat_property(name: str, group: str) -> property:
    def get(self):
        return getattr(getattr(self, group), name)

    get.__name__ = name
    return property(get, doc=f"Shorthand for ``{group}.{name}`` (read-only).")


for _name, _group in _FLAT.items():
    setattr(LegcnetConfig, _name, _flat_property(_name, _group))
del _name, _group


def flat_config_dict(d: dict) -> dict:
    """A stored config dict (grouped `LegcnetConfig.to_dict` or the flat layout) in the flat
    layout, without validation (for readers of ``results.json`` / ``config.json``)."""
    out = {}
    for k, v in d.items():
        if k in _GROUPS and isinstance(v, dict):
            out.update(v)
        else:
            out[k] = v
    return out


# The original's from-scratch tabular setups (docs/method.md): per-example SGD (batch 1),
# sigmoid units, window ~ 160-250 steps with 10 % overlap, its training-accuracy thresholds.
# (hidden, lr, epochs, window, threshold); breast_cancer here is scikit-learn's 30-feature set.
TABULAR_PRESETS = {
    "iris": ((6,), 0.05, 200, 160, 0.95),
    "breast_cancer": ((6,), 0.01, 50, 200, 0.90),
    "wine": ((6,), 0.05, 100, 160, 0.90),
    "digits": ((32,), 0.05, 30, 200, 0.90),
}


def preset(dataset: str, *, quick: bool = False) -> LegcnetConfig:
    """The default config for a data set (the original's settings where it had them).

    mnist / mnist5k: the original net and optimizer (784-50-30-10, sigmoid, MSE, SGD 0.5, batch
    128). mnist5k has 28 steps per epoch, so 400 epochs are the step count of the original's 50
    full-MNIST epochs; MSE training on 3,500 images plateaus below 92 %, so its threshold is 75 %.
    Tabular sets: `TABULAR_PRESETS`; any other set (CSV): a 16-unit sigmoid layer, batch 1.
    ``quick`` trades precision and breadth for minutes on a 2-core CPU: fast (float32) LE mode and
    baselines at FT sparsity only (mnist5k keeps its 400 epochs: MSE training learns late);
    mnist 10 epochs; tabular sets half the epochs.
    """
    base = LegcnetConfig()
    if dataset == "mnist":
        cfg = base
    elif dataset == "mnist5k":
        cfg = base.replace(train=base.train.replace(epochs=400), target_accuracy=0.75)
    else:
        hidden, lr, epochs, window, threshold = TABULAR_PRESETS.get(dataset, ((16,), 0.05, 100, 200, 0.90))
        stride = window - round(window * 0.1)
        cfg = base.replace(
            train=base.train.replace(
                hidden=hidden, learning_rate=lr, batch_size=1, epochs=epochs, window=window, stride=stride
            ),
            target_accuracy=threshold,
        )
    if quick:
        if dataset == "mnist5k":  # the full step count (MSE learns late), fast LE, FT baselines
            cfg = cfg.replace(le_mode="fast", baselines_for=("legcnet_ft",))
        elif dataset == "mnist":
            cfg = cfg.replace(
                train=cfg.train.replace(epochs=10), le_mode="fast", baselines_for=("legcnet_ft",), target_accuracy=0.85
            )
        else:
            cfg = cfg.replace(
                train=cfg.train.replace(epochs=max(cfg.train.epochs // 2, 10)), baselines_for=("legcnet_ft",)
            )
    return cfg
