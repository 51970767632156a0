"""A user-defined optimizer, added to jaxlab without editing jaxlab.

Importing this module registers ``signum`` (the sign of a momentum average, Bernstein et al.,
2018); from then on ``make_optimizer("signum", learning_rate=...)`` builds it like any built-in
optimizer, with its hyperparameters injected into the state for sweeps.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.optim import register_optimizer


class SignumState(NamedTuple):
    momentum: optax.Updates


def scale_by_signum(beta: float = 0.9) -> optax.GradientTransformation:
    """``m = beta m + (1 - beta) g``; the direction is ``sign(m)``."""

    def init(params: optax.Params) -> SignumState:
        return SignumState(momentum=optax.tree.zeros_like(params))

    def update(updates, state, params=None):
        momentum = jax.tree.map(
            lambda m, g: (beta * m + (1 - beta) * g).astype(m.dtype), state.momentum, updates
        )
        return jax.tree.map(jnp.sign, momentum), SignumState(momentum)

    return optax.GradientTransformation(init, update)


@register_optimizer("signum")
def signum(learning_rate: float = 1e-3, beta: float = 0.9) -> optax.GradientTransformation:
    """Signum: ``w -= lr sign(m)``."""
    return optax.chain(scale_by_signum(beta), optax.scale_by_learning_rate(learning_rate))


if __name__ == "__main__":
    from jaxlab.optim import OPTIMIZERS, optimizer_defaults

    print("optimizers:", ", ".join(OPTIMIZERS.names()))
    print("signum defaults:", optimizer_defaults("signum"))
