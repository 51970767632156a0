"""The first layer's optimizer step, fused into the compiled bag layer's backward pass.

With the compiled ("ffi") first layer, a step's gradient of a :class:`~jaxlab.layers.BagDense`
kernel is as large as the kernel (V x H for each model: 40 MB for 64 of the lesson's models),
and optax reads it back to update the kernel and its statistics: three passes over kernel-sized
arrays per step, which were the larger part of a many-model epoch on CPU. For an optimizer with
a rule here, :func:`step_factory` gives a train step that instead takes the loss's gradient at
each ``BagDense``'s output (B x H, through flax's ``perturb``) and lets the compiled kernel sum
each kernel row's gradient and apply the update to that row and its optimizer slot at once, in
place. Every other parameter goes through optax as usual.

The rules reproduce optax's arithmetic, so both paths agree to float rounding
(``tests/test_fused.py``); ``TrainConfig(fused_update=False)`` always takes the optax path. A rule
belongs to one registered factory: an optimizer registered again under the same name
(``override=True``) is optax's alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxlab import optim
from jaxlab.layers import PRODUCT
from jaxlab.native import bag
from jaxlab.step import Batch, TrainState, make_objective


@dataclass(frozen=True)
class FusedRule:
    """A compiled update rule (``Rule`` in ``csrc/embag.cc``) standing in for an optimizer."""

    factory: Callable[..., optax.GradientTransformation]  # the registered optimizer it reproduces
    code: int
    slot: str  # the optimizer state's field holding the per-parameter statistic
    hyperparameters: tuple[str, str, str]  # learning rate, decay, epsilon


RULES: Mapping[str, FusedRule] = {
    "rmsprop": FusedRule(optim.rmsprop, 0, "nu", ("learning_rate", "rho", "epsilon")),
    "rmsprop_keras2": FusedRule(optim.rmsprop_keras2, 1, "nu", ("learning_rate", "rho", "epsilon")),
}


def rule_for(optimizer: str) -> FusedRule | None:
    """The compiled rule for the registered optimizer ``optimizer``, or None (optax's path)."""
    rule = RULES.get(optimizer)
    if rule is None or optim.OPTIMIZERS.get(optimizer) is not rule.factory:
        return None
    return rule


def _get(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def _replaced(tree, values: Mapping[tuple[str, ...], jax.Array]):
    """``tree`` (nested dicts) with the leaves at ``values``' paths replaced."""
    flat = traverse_util.flatten_dict(tree)
    return traverse_util.unflatten_dict({**flat, **values})


def step_factory(rule: FusedRule, hyperparameters: Mapping[str, jax.Array]):
    """A drop-in for :func:`jaxlab.step.make_train_step` whose ``BagDense`` kernels (read from
    :class:`~jaxlab.layers.CsrRows`) are updated by the compiled ``rule`` with these
    hyperparameters; the batch's inputs must be the CsrRows those layers read."""

    def make_train_step(model, loss_fn, optimizer, *, l2=0.0):
        objective = make_objective(model, loss_fn, l2)

        def train_step(state: TrainState, batch: Batch, key: jax.Array):
            x = batch["inputs"]
            shapes = jax.eval_shape(model.init, {"params": jax.random.key(0)}, x)
            probe = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["perturbations"])
            layers = [path[:-1] for path in traverse_util.flatten_dict(probe)]
            kernels = {(*p, "kernel"): _get(state.params, (*p, "kernel")) for p in layers}
            frozen = _replaced(state.params, jax.tree.map(jax.lax.stop_gradient, kernels))
            grad_fn = jax.grad(objective, argnums=(0, 3), has_aux=True)
            (grads, at_product), metrics = grad_fn(frozen, batch, key, probe)
            # optax updates every parameter; the kernels' (from zero gradients) are replaced
            # below, and XLA drops the unused arithmetic.
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            values = [hyperparameters[name] for name in rule.hyperparameters]
            hyper = jnp.stack([*values, jnp.asarray(l2, jnp.float32)]).astype(jnp.float32)
            slots = optax.tree.get(state.opt_state, rule.slot)
            new_kernels, new_slots = {}, {}
            for layer in layers:
                path = (*layer, "kernel")
                gradient = _get(at_product, (*layer, PRODUCT))
                new_kernels[path], new_slots[path] = bag.csr_update(
                    rule.code, kernels[path], _get(slots, path), gradient, hyper, x
                )
            slots = _replaced(optax.tree.get(opt_state, rule.slot), new_slots)
            opt_state = optax.tree.set(opt_state, **{rule.slot: slots})
            return TrainState(_replaced(params, new_kernels), opt_state, state.step + 1), metrics

        return train_step

    return make_train_step
