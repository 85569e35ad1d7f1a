"""Every public kernel and function of lyapunov, granger, windows and train has type hints on all
its arguments and its return value, and a docstring."""

import inspect

import pytest

from jaxprune import checkpoints, granger, lyapunov, train, windows

PUBLIC_TRAIN = [
    "optimizer_names",
    "make_optimizer",
    "diverged",
    "accuracy",
    "batch_order",
    "make_step",
    "make_epoch_fn",
    "train_on_dataset",
    "save_params",
    "load_params",
    "save_metrics",
]


def _functions():
    for mod in (lyapunov, granger, windows, checkpoints):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
    for name in PUBLIC_TRAIN:
        yield f"jaxprune.train.{name}", getattr(train, name)
    yield "LyapunovStream.update", lyapunov.LyapunovStream.update
    yield "LyapunovStream.result", lyapunov.LyapunovStream.result


@pytest.mark.parametrize("name,fn", list(_functions()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_function_is_annotated_and_documented(name, fn):
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values() if p.name != "self" and p.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: no type hint on {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
    assert (fn.__doc__ or "").strip(), f"{name}: no docstring"
