"""Models by name: factories of Flax linen modules, and the lesson's network, ``"mlp"``.

A registered factory takes hyperparameters as keyword arguments (every one with a default) and
returns a ``flax.linen.Module`` whose ``__call__(x, *, train=False)`` returns logits. Its
``inputs`` says which data it reads:

- ``"bag"``: reviews as word counts, sparse (the lesson's multi-hot form); the first layer is
  :class:`~jaxlab.layers.BagDense`;
- ``"tokens"``: int32 ``[B, maxlen]`` word indices, 0 = padding (Keras's ``pad_sequences``);
- ``"dense"``: float ``[B, D]`` features.

In a sweep every hyperparameter is a grid axis. Float values train side by side in one program:
the factory receives a traced float32 scalar per model, so the module must use it in ``jnp``
arithmetic (as ``"mlp"`` does with ``dropout``). Names in ``choices`` (strings naming registry
entries, like ``"mlp"``'s ``activation`` and ``kernel_init``) arrive as a :class:`Choice`, which
:func:`pick` turns into the chosen function per model. Anything else (widths, depths, strings
not in ``choices``) compiles one program per value.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

from jaxlab.activations import ACTIVATIONS
from jaxlab.errors import ConfigError
from jaxlab.initializers import INITIALIZERS, zeros_bias
from jaxlab.layers import BagDense
from jaxlab.registry import Registry

INPUT_FORMS = ("bag", "tokens", "dense")


@struct.dataclass
class Choice:
    """One of ``options`` (registry names), chosen per model by a traced ``index``."""

    index: jax.Array
    options: tuple[str, ...] = struct.field(pytree_node=False)


def pick(value: str | Choice, registry: Registry) -> Callable:
    """The function ``registry`` holds under ``value``; for a :class:`Choice`, one that runs the
    chosen entry (``lax.switch``; under vmap every option runs and each model keeps its own)."""
    if not isinstance(value, Choice):
        return registry.get(value)
    functions = [registry.get(name) for name in value.options]

    def chosen(*args, **kwargs):
        branches = [lambda a, f=f: f(*a, **kwargs) for f in functions]
        return jax.lax.switch(value.index, branches, args)

    return chosen


def initializer(value: str | Choice) -> Callable:
    """A kernel initializer by name, or one chosen per model by a :class:`Choice` of names."""
    if not isinstance(value, Choice):
        return INITIALIZERS.get(value)
    options = [INITIALIZERS.get(name) for name in value.options]

    def init(key, shape, dtype=jnp.float32):
        branches = [lambda k, f=f: f(k, shape, dtype) for f in options]
        return jax.lax.switch(value.index, branches, key)

    return init


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its factory, input form and per-model string choices."""

    factory: Callable[..., nn.Module]
    inputs: str
    choices: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        parameters = inspect.signature(self.factory).parameters.values()
        return {p.name: p.default for p in parameters if p.kind != p.VAR_KEYWORD}


def _check_spec(name: str, spec: ModelSpec) -> None:
    if not callable(spec.factory):
        raise ConfigError(f"model {name!r}: the factory must be callable")
    if spec.inputs not in INPUT_FORMS:
        raise ConfigError(f"model {name!r}: inputs must be one of {INPUT_FORMS}, got {spec.inputs}")
    parameters = inspect.signature(spec.factory).parameters.values()
    if any(p.default is inspect.Parameter.empty for p in parameters if p.kind != p.VAR_KEYWORD):
        raise ConfigError(f"model {name!r}: every hyperparameter needs a default value")
    unknown = set(spec.choices) - set(spec.defaults())
    if unknown:
        raise ConfigError(f"model {name!r}: choices {sorted(unknown)} are not hyperparameters")


MODELS: Registry[ModelSpec] = Registry("model", check=_check_spec)


def register_model(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    inputs: str = "bag",
    choices: Sequence[str] = (),
    override: bool = False,
):
    """Registers ``factory(**hyperparameters) -> flax.linen.Module`` under ``name`` (as a call
    or a decorator). See the module docstring for ``inputs`` and ``choices``."""

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name, ModelSpec(factory, inputs, tuple(choices)), override=override)
        return factory

    return add if factory is None else add(factory)


def layer_names(depth: int) -> list[str]:
    """The lesson's names: ``input``, ``hidden`` (then ``hidden_2``, ...), ``output``."""
    hidden = ["hidden"] + [f"hidden_{i}" for i in range(2, depth)]
    return ["input", *hidden[: depth - 2], "output"]


def dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout whose rate may be a traced value (rate 0 returns x unchanged)."""
    keep = jax.random.uniform(key, x.shape) >= rate
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def is_zero(value: Any) -> bool:
    """Whether ``value`` is a Python (not traced) zero: a branch that can be left out."""
    return isinstance(value, int | float) and value == 0


class MLP(nn.Module):
    """Dense layers with a shared activation and one logit out (sigmoid is in the loss); the
    first is :class:`BagDense`. Dropout follows every hidden layer, as in Chollet's example."""

    hidden: Sequence[int] = (16, 16)
    activation: str | Choice = "relu"
    kernel_init: str | Choice = "glorot_uniform"
    dropout: float | jax.Array = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> jax.Array:
        activation = pick(self.activation, ACTIVATIONS)
        init = initializer(self.kernel_init)
        names = layer_names(len(self.hidden) + 1)
        for index, (features, name) in enumerate(zip(self.hidden, names, strict=False)):
            layer = BagDense if index == 0 else nn.Dense
            x = activation(layer(features, kernel_init=init, bias_init=zeros_bias, name=name)(x))
            if train and not is_zero(self.dropout):
                x = dropout(x, self.dropout, self.make_rng("dropout"))
        return nn.Dense(1, kernel_init=init, bias_init=zeros_bias, name=names[-1])(x)[:, 0]


@register_model("mlp", inputs="bag", choices=("activation", "kernel_init"))
def mlp(
    hidden: tuple[int, ...] = (16, 16),
    activation: str = "relu",
    kernel_init: str = "glorot_uniform",
    dropout: float = 0.0,
) -> MLP:
    """The lesson's network: ``Dense(16, relu) -> Dense(16, relu) -> Dense(1)`` by default."""
    widths = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    if not widths or any(isinstance(h, bool) or int(h) != h or h < 1 for h in widths):
        raise ConfigError(f"hidden widths must be positive integers, got {hidden}")
    for name, registry in ((activation, ACTIVATIONS), (kernel_init, INITIALIZERS)):
        if isinstance(name, str):
            registry.get(name)
    if isinstance(dropout, int | float) and not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    return MLP(tuple(int(h) for h in widths), activation, kernel_init, dropout)


def summary(params, name: str = "sequential") -> str:
    """A table like Keras's ``model.summary()`` for any Flax model's parameters: each layer's
    path, output width (its kernel's last axis, where it has one) and parameter count."""
    layers: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        layers.setdefault("/".join(keys[:-1]) or keys[-1], []).append((keys[-1], leaf))
    rows = []
    for layer, leaves in layers.items():
        count = sum(int(np.prod(leaf.shape)) for _, leaf in leaves)
        shapes = dict(leaves)
        width = shapes["kernel"].shape[-1] if "kernel" in shapes else None
        kind = "Dense" if "kernel" in shapes else "Layer"
        rows.append((f"{layer} ({kind})", f"(None, {width})" if width else "?", f"{count:,}"))
    total = sum(int(np.prod(w.shape)) for w in jax.tree_util.tree_leaves(params))
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [header, *rows]) + 4 for i in range(3)]
    rule = "-" * sum(widths)

    def line(cells):
        return cells[0].ljust(widths[0]) + cells[1].ljust(widths[1]) + cells[2].rjust(widths[2])

    lines = [f'Model: "{name}"', rule, line(header), "=" * sum(widths)]
    lines += [line(row) for row in rows]
    lines += [
        "=" * sum(widths),
        f"Total params: {total:,}",
        f"Trainable params: {total:,}",
        "Non-trainable params: 0",
        rule,
    ]
    return "\n".join(lines)
