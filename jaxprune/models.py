"""The dense network: a Flax NNX multilayer perceptron and the losses of the original work.

The original LEGCNet MNIST net is 784-50-30-10 with sigmoid hidden units, a softmax output and a
mean-squared-error loss against one-hot targets; its tabular nets (x-y-1) end in one sigmoid unit
(a binary classifier). Both are `MLP`s here: ``MLP((784, 50, 30, 10), activation="sigmoid")`` and
``MLP((4, 8, 1))``.

The training code works on the functional split of the module (``graphdef`` + a plain nested dict
of params, see `split_params` / `apply_fn`), so params are an ordinary pytree that optax, orbax and
the masks of `jaxprune.prune` handle without knowing about NNX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
LOSSES = ("mse", "cross_entropy")
INITS = ("torch", "lecun")


def _linear(fan_in: int, fan_out: int, *, init: str, rngs: nnx.Rngs) -> nnx.Linear:
    """A dense layer with PyTorch's default init (the original's) or Flax's (lecun normal, 0 bias).

    PyTorch's ``nn.Linear`` draws kernel and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the
    original nets were trained from it, and MSE-on-softmax training is sensitive to the scale.
    """
    if init == "lecun":
        return nnx.Linear(fan_in, fan_out, rngs=rngs)
    bound = 1.0 / fan_in**0.5

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nnx.Linear(fan_in, fan_out, kernel_init=uniform, bias_init=uniform, rngs=rngs)


class MLP(nnx.Module):
    """Dense net ``widths[0] -> widths[1] -> ... -> widths[-1]``.

    Hidden layers use `activation`; the output layer is linear and the model returns logits of
    shape ``(batch, widths[-1])``. `probabilities` applies the output nonlinearity: softmax for
    several outputs, sigmoid for a single output (a binary classifier, as the original's x-y-1
    tabular nets).

    Args:
      widths: layer widths including input and output, at least two entries.
      activation: hidden nonlinearity, one of ``sigmoid`` (the original), ``tanh``, ``relu``.
      rngs: NNX random streams; ``nnx.Rngs(seed)`` fixes the initial weights.
    """

    def __init__(
        self,
        widths: Sequence[int],
        *,
        activation: str = "sigmoid",
        init: str = "torch",
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths must list >= 2 positive layer sizes, got {widths}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        self.widths = widths
        self.activation = activation
        self.layers = nnx.List([_linear(a, b, init=init, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


def probabilities(logits: jax.Array) -> jax.Array:
    """Output probabilities ``(batch, n_out)``: softmax, or sigmoid for a single output unit."""
    if logits.shape[-1] == 1:
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)


def predict_labels(logits: jax.Array) -> jax.Array:
    """Class labels ``(batch,)`` int32: argmax, or ``logit > 0`` for a single output unit."""
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def targets(labels: jax.Array, n_out: int) -> jax.Array:
    """Training targets ``(batch, n_out)`` float32: one-hot, or the 0/1 label for one output."""
    if n_out == 1:
        return labels.astype(jnp.float32)[:, None]
    return jax.nn.one_hot(labels, n_out, dtype=jnp.float32)


def per_example_loss(logits: jax.Array, labels: jax.Array, loss: str) -> jax.Array:
    """Loss of every example, shape ``(batch,)``.

    ``mse``: the original's ``MSELoss`` between output probabilities and one-hot targets, averaged
    over output units (PyTorch's default reduction over all elements of a batch equals the mean of
    this over the batch). ``cross_entropy``: softmax cross-entropy (sigmoid binary cross-entropy for
    one output).
    """
    n_out = logits.shape[-1]
    y = targets(labels, n_out)
    if loss == "mse":
        return jnp.mean((probabilities(logits) - y) ** 2, axis=-1)
    if loss == "cross_entropy":
        if n_out == 1:
            return optax.sigmoid_binary_cross_entropy(logits, y)[:, 0]
        return optax.softmax_cross_entropy(logits, y)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def split_params(model: MLP) -> tuple[Any, dict]:
    """``(graphdef_and_rest, params)``: params as a plain nested dict of arrays.

    The dict looks like ``{'layers': {0: {'kernel': (in, out), 'bias': (out,)}, ...}}``.
    """
    graphdef, state = nnx.split(model, nnx.Param)
    return (graphdef, state), nnx.to_pure_dict(state)


def apply_fn(static: tuple[Any, Any]) -> Callable[[dict, jax.Array], jax.Array]:
    """A pure ``apply(params, x) -> logits`` for the module split by `split_params`."""
    graphdef, state_template = static

    def apply(params: dict, x: jax.Array) -> jax.Array:
        state = jax.tree.map(lambda v: v, state_template)  # a fresh State to fill
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(x)

    return apply


def init_mlp(widths: Sequence[int], *, activation: str = "sigmoid", init: str = "torch", seed: int):
    """Build an MLP with ``nnx.Rngs(seed)``; return ``(apply, params)`` (see `apply_fn`)."""
    model = MLP(widths, activation=activation, init=init, rngs=nnx.Rngs(seed))
    static, params = split_params(model)
    return apply_fn(static), params
