"""Keras 3's optimizer rules that optax does not have, as optax transformations.

Moments are kept in the parameters' dtype, as Keras keeps them in the variables' dtype; `count`
is the step number t, counted from 1 after update. :mod:`jaxlab.optim` registers them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def _moving_average(new: optax.Updates, old: optax.Updates, beta: Any) -> optax.Updates:
    """Keras's ``old + (new - old) * (1 - beta)``, in ``old``'s dtype."""
    return jax.tree.map(lambda n, o: (o + (n - o) * (1 - beta)).astype(o.dtype), new, old)


class ScaleByKerasAdamState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_keras_adam(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3's Adam direction, ``m sqrt(1 - b2^t) / (1 - b1^t) / (sqrt(v) + eps)``.

    optax's ``scale_by_adam`` adds eps to the bias-corrected ``sqrt(v / (1 - b2^t))`` instead.
    """

    def init(params: optax.Params) -> ScaleByKerasAdamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByKerasAdamState(jnp.zeros([], jnp.int32), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        t = count.astype(jnp.float32)
        mu = _moving_average(updates, state.mu, beta_1)
        nu = _moving_average(jax.tree.map(jnp.square, updates), state.nu, beta_2)
        alpha = jnp.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        direction = jax.tree.map(
            lambda m, v: (alpha * m / (jnp.sqrt(v) + epsilon)).astype(m.dtype), mu, nu
        )
        return direction, ScaleByKerasAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


class ScaleByKerasNadamState(NamedTuple):
    count: jax.Array
    u_product: jax.Array
    mu: optax.Updates
    nu: optax.Updates


NADAM_SCHEDULE_DECAY = 0.96  # Keras's momentum schedule: u_t = beta_1 (1 - 0.5 * 0.96^t)


def scale_by_keras_nadam(
    beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3's Nadam direction, with its momentum schedule ``u_t = b1 (1 - 0.5 * 0.96^t)``.

    optax's ``nadam`` uses a constant ``b1`` and adds eps to the bias-corrected ``sqrt(v)``.
    """

    def init(params: optax.Params) -> ScaleByKerasNadamState:
        zeros = optax.tree.zeros_like(params)
        return ScaleByKerasNadamState(jnp.zeros([], jnp.int32), jnp.ones([]), zeros, zeros)

    def update(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        t = count.astype(jnp.float32)
        u_t = beta_1 * (1 - 0.5 * NADAM_SCHEDULE_DECAY**t)
        u_next = beta_1 * (1 - 0.5 * NADAM_SCHEDULE_DECAY ** (t + 1))
        u_product = state.u_product * u_t
        u_product_next = u_product * u_next
        mu = _moving_average(updates, state.mu, beta_1)
        nu = _moving_average(jax.tree.map(jnp.square, updates), state.nu, beta_2)

        def direction(g: jax.Array, m: jax.Array, v: jax.Array) -> jax.Array:
            m_hat = u_next * m / (1 - u_product_next) + (1 - u_t) * g / (1 - u_product)
            v_hat = v / (1 - beta_2**t)
            return (m_hat / (jnp.sqrt(v_hat) + epsilon)).astype(g.dtype)

        directions = jax.tree.map(direction, updates, mu, nu)
        return directions, ScaleByKerasNadamState(count, u_product, mu, nu)

    return optax.GradientTransformation(init, update)
