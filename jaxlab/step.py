"""The train step and the evaluation step: pure functions of a model, a loss and an optimizer.

A batch is a dict ``{"inputs", "labels", "weights"}`` (padding rows weigh 0). A step returns
*sums* over the batch (``loss``, ``correct``, ``count``), so an epoch's metrics are the
sample-weighted means Keras reports. Both steps are jittable and vmappable; a sweep vmaps them
over models built with each model's own hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct

from jaxlab.losses import LOSSES, Loss
from jaxlab.models import is_zero

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


@struct.dataclass
class TrainState:
    """Everything a step changes: parameters, optimizer state, the number of steps taken."""

    params: Any
    opt_state: Any
    step: jax.Array

    @classmethod
    def create(cls, params: Any, optimizer: optax.GradientTransformation) -> TrainState:
        return cls(params, optimizer.init(params), jnp.zeros([], jnp.int32))


def as_loss(loss_fn: str | Loss | Callable) -> Loss:
    """A registered loss by name, a :class:`Loss`, or a bare ``(logits, labels) -> loss``."""
    if isinstance(loss_fn, str):
        return LOSSES.get(loss_fn)
    return loss_fn if isinstance(loss_fn, Loss) else Loss(loss_fn)


def l2_penalty(params: Any, strength: float | jax.Array) -> jax.Array | float:
    """Keras's ``l2 * sum(w ** 2)`` over every ``kernel`` at any depth (biases and other
    parameters are not regularized); 0 when ``strength`` is a Python zero."""
    if is_zero(strength):
        return 0.0
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [leaf for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel"]
    return strength * sum(jnp.sum(kernel**2) for kernel in kernels)


def make_objective(model: nn.Module, loss_fn: str | Loss | Callable, l2: float | jax.Array = 0.0):
    """``objective(params, batch, key, perturbations=None) -> (loss, metrics)``: the mean loss
    plus the L2 penalty (what is differentiated), and the batch's sums. ``key`` None evaluates
    (no dropout); ``perturbations`` is flax's collection of that name, if any."""
    loss = as_loss(loss_fn)

    def objective(params, batch: Batch, key, perturbations=None) -> tuple[jax.Array, Metrics]:
        variables = {"params": params}
        if perturbations is not None:
            variables["perturbations"] = perturbations
        train = key is not None
        rngs = {"dropout": key} if train else None
        logits = model.apply(variables, batch["inputs"], train=train, rngs=rngs)
        labels, weights = batch["labels"], batch["weights"]
        count = jnp.sum(weights)
        data_loss = jnp.sum(weights * loss.loss(logits, labels))
        correct = jnp.sum(weights * loss.accuracy(logits, labels))
        penalty = l2_penalty(params, l2)
        metrics = {"loss": data_loss + count * penalty, "correct": correct, "count": count}
        return data_loss / jnp.maximum(count, 1.0) + penalty, metrics

    return objective


def make_train_step(
    model: nn.Module,
    loss_fn: str | Loss | Callable,
    optimizer: optax.GradientTransformation,
    *,
    l2: float | jax.Array = 0.0,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """``train_step(state, batch, key) -> (state, metrics)``: one optimizer step on the batch's
    mean loss (plus ``l2`` times the kernels' squares); ``key`` draws dropout masks."""
    objective = make_objective(model, loss_fn, l2)

    def train_step(state: TrainState, batch: Batch, key: jax.Array):
        grads, metrics = jax.grad(objective, has_aux=True)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), metrics

    return train_step


def make_eval_step(
    model: nn.Module, loss_fn: str | Loss | Callable, *, l2: float | jax.Array = 0.0
) -> Callable[[Any, Batch], Metrics]:
    """``eval_step(params, batch) -> metrics``: the batch's sums, the loss with the L2 penalty
    (as Keras reports ``val_loss``), without dropout."""
    objective = make_objective(model, loss_fn, l2)

    def eval_step(params, batch: Batch) -> Metrics:
        return objective(params, batch, None)[1]

    return eval_step


def means(metrics: Metrics) -> dict[str, jax.Array]:
    """Sums to Keras's epoch numbers: ``loss`` and ``accuracy`` (sample-weighted means)."""
    return {
        "loss": metrics["loss"] / metrics["count"],
        "accuracy": metrics["correct"] / metrics["count"],
    }
