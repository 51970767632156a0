"""Optimizers by name, with Keras 3's defaults.

Each registry entry is a factory taking numeric hyperparameters as keyword arguments (all with
defaults) and returning an ``optax.GradientTransformation``. :func:`make_optimizer` wraps it in
``optax.inject_hyperparams`` so the hyperparameters live in the optimizer state, where a sweep
can give every model its own values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import optax

from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

OptimizerFactory = Callable[..., optax.GradientTransformation]


def _check_factory(name: str, factory: OptimizerFactory) -> None:
    if not callable(factory):
        raise ConfigError(f"optimizer {name!r}: the factory must be callable")
    parameters = inspect.signature(factory).parameters.values()
    if any(p.default is inspect.Parameter.empty for p in parameters if p.kind != p.VAR_KEYWORD):
        raise ConfigError(f"optimizer {name!r}: every hyperparameter needs a default value")
    if "learning_rate" not in inspect.signature(factory).parameters:
        raise ConfigError(f"optimizer {name!r}: the factory must take learning_rate")
    made = factory()
    if not isinstance(made, optax.GradientTransformation):
        raise ConfigError(
            f"optimizer {name!r}: the factory returned {type(made).__name__}, "
            "not an optax.GradientTransformation"
        )


OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", check=_check_factory)
register_optimizer = OPTIMIZERS.register


@register_optimizer("sgd")
def sgd(learning_rate: float = 0.01) -> optax.GradientTransformation:
    """Keras 3 SGD: lr 0.01, no momentum."""
    return optax.sgd(learning_rate)


@register_optimizer("rmsprop")
def rmsprop(
    learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3 RMSprop: ``v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps)``."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon)


@register_optimizer("rmsprop_keras2")
def rmsprop_keras2(
    learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-8
) -> optax.GradientTransformation:
    """Keras 2 RMSprop (the book's): ``w -= lr g / (sqrt(v) + eps)``."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=False)


@register_optimizer("adam")
def adam(
    learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Adam with Keras 3's default epsilon (optax's is 1e-8)."""
    return optax.adam(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The default hyperparameters of a registered optimizer."""
    parameters = inspect.signature(OPTIMIZERS.get(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.kind != p.VAR_KEYWORD}


def make_optimizer(name: str, **hyperparameters: float) -> optax.GradientTransformation:
    """The named optimizer with its hyperparameters injected into the state.

    Unknown hyperparameter names and non-positive learning rates are rejected.
    """
    factory = OPTIMIZERS.get(name)
    defaults = optimizer_defaults(name)
    unknown = set(hyperparameters) - set(defaults)
    if unknown:
        raise ConfigError(
            f"optimizer {name!r} has no hyperparameter {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(defaults)}"
        )
    values = defaults | {k: v for k, v in hyperparameters.items() if v is not None}
    if not values["learning_rate"] > 0:
        raise ConfigError(f"learning_rate must be positive, got {values['learning_rate']}")
    return optax.inject_hyperparams(factory)(**values)
