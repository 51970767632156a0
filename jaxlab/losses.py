"""Losses by name: ``(logits, labels) -> per-example loss``, each with its accuracy.

``TrainConfig(loss=...)`` picks one; user code adds its own with :func:`register_loss`, without
editing jaxlab. The step weights the per-example values (padding rows weigh 0) and averages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

# Keras clips probabilities to [eps, 1 - eps] in binary_crossentropy; clipping the logit
# to +-log((1 - eps) / eps) is the same thing.
KERAS_EPSILON = 1e-7
LOGIT_CLIP = float(np.log((1 - KERAS_EPSILON) / KERAS_EPSILON))


def _squeezed(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``[B, 1]`` logits of a binary model as ``[B]``, to line up with the labels."""
    if logits.ndim == labels.ndim + 1 and logits.shape[-1] == 1:
        return logits[..., 0]
    return logits


def binary_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras's binary cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]), from logits."""
    clipped = jnp.clip(_squeezed(logits, labels), -LOGIT_CLIP, LOGIT_CLIP)
    return optax.sigmoid_binary_cross_entropy(clipped, labels.astype(clipped.dtype))


def binary_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras's ``'accuracy'`` for one sigmoid output: probability above 0.5."""
    return ((_squeezed(logits, labels) > 0) == (labels > 0.5)).astype(jnp.float32)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of ``[B, K]`` logits against integer labels ``0..K-1``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def argmax_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return (jnp.argmax(logits, axis=-1) == labels.astype(jnp.int32)).astype(jnp.float32)


def binary_labels(labels: np.ndarray) -> None:
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1 for binary classification")


def integer_labels(labels: np.ndarray) -> None:
    if not (np.all(labels == np.round(labels)) and np.all(labels >= 0)):
        raise ConfigError("labels must be integers 0..K-1 for softmax_cross_entropy")


@dataclass(frozen=True)
class Loss:
    """A registered loss: per-example ``loss`` and ``accuracy`` (both ``(logits, labels) ->
    [B]``) and ``check_labels`` (raises :class:`ConfigError` on labels it cannot take)."""

    loss: Callable[[jax.Array, jax.Array], jax.Array]
    accuracy: Callable[[jax.Array, jax.Array], jax.Array] = binary_accuracy
    check_labels: Callable[[np.ndarray], None] | None = None
    label_dtype: str = "float32"


def _check(name: str, entry: Loss) -> None:
    if not isinstance(entry, Loss) or not callable(entry.loss) or not callable(entry.accuracy):
        raise ConfigError(f"loss {name!r}: register a function (logits, labels) -> loss")


LOSSES: Registry[Loss] = Registry("loss", check=_check)


def register_loss(
    name: str,
    fn: Callable | None = None,
    *,
    accuracy: Callable | None = None,
    integer_labels: bool = False,
    override: bool = False,
):
    """Registers ``fn(logits, labels) -> per-example loss`` under ``name`` (as a call or a
    decorator). ``accuracy(logits, labels) -> per-example 0/1`` defaults to binary accuracy for
    1-D logits and argmax accuracy otherwise; ``integer_labels`` keeps labels as int32."""

    def add(fn: Callable) -> Callable:
        if not callable(fn):
            raise ConfigError(f"loss {name!r}: register a function (logits, labels) -> loss")
        chosen = accuracy or _default_accuracy
        dtype = "int32" if integer_labels else "float32"
        LOSSES.register(name, Loss(fn, chosen, None, dtype), override=override)
        return fn

    return add if fn is None else add(fn)


def _default_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    if _squeezed(logits, labels).ndim == labels.ndim:
        return binary_accuracy(logits, labels)
    return argmax_accuracy(logits, labels)


LOSSES.register(
    "binary_crossentropy", Loss(binary_crossentropy, binary_accuracy, binary_labels, "float32")
)
LOSSES.register(
    "softmax_cross_entropy",
    Loss(softmax_cross_entropy, argmax_accuracy, integer_labels, "int32"),
)
