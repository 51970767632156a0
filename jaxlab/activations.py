"""Activation functions by name, extendable from user code."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlab.registry import Registry

ACTIVATIONS: Registry = Registry("activation")
register_activation = ACTIVATIONS.register

for _name, _fn in {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.2),  # Keras LeakyReLU default slope
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # Keras gelu default
    "elu": jax.nn.elu,
    "linear": lambda x: x,
}.items():
    register_activation(_name, _fn)
