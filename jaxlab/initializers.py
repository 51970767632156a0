"""Kernel initializers by name (Keras's names), extendable from user code."""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from jaxlab.registry import Registry

# Each entry is a ``jax.nn.initializers`` initializer: ``init(key, shape, dtype) -> array``.
INITIALIZERS: Registry = Registry("initializer")
register_initializer = INITIALIZERS.register

for _name, _init in {
    "glorot_uniform": nn.initializers.glorot_uniform(),  # Keras Dense default
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_normal": nn.initializers.he_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),  # Flax Dense default
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "normal": nn.initializers.normal(stddev=0.05),  # Keras RandomNormal default
    "normal_1": nn.initializers.normal(stddev=1.0),  # deliberately too large
    "zeros": nn.initializers.zeros_init(),
}.items():
    register_initializer(_name, _init)


def zeros_bias(key, shape, dtype=jnp.float32):
    """Keras's default bias initializer."""
    return jnp.zeros(shape, dtype)
