"""The first layer's optimizer step, fused into the compiled "ffi" layer's backward pass.

With the "ffi" first layer, a step's gradient of the first-layer kernel is as large as the kernel
(V x H for each model: 40 MB for 64 of the lesson's models), and optax reads it back to update
the kernel and its statistics: three passes over kernel-sized arrays per step, which were the
larger part of a many-model epoch on CPU. For an optimizer with a rule here, a step instead
takes the loss's gradient at the layer's output (B x H, through flax's ``perturb``) and the
compiled kernel sums each kernel row's gradient and applies the update to that row and its
optimizer slot at once, in place. Every other parameter goes through optax as usual.

The rules reproduce optax's arithmetic, so both paths agree to float rounding
(``tests/test_fused.py``); ``TrainConfig(fused_update=False)`` always takes the optax path. A rule
belongs to one registered factory: an optimizer registered again under the same name
(``override=True``) is optax's alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxlab import ffi_layer, optim
from jaxlab.models import CsrRows

FIRST = "input"  # the first layer's name (models.layer_names)


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


def _with_kernel(tree: Any, kernel: jax.Array) -> Any:
    """``tree`` (parameter-shaped) with the first layer's kernel replaced."""
    return {**tree, FIRST: {**tree[FIRST], "kernel": kernel}}


def step(
    rule: FusedRule,
    loss: Callable[[Any, Any], tuple[jax.Array, Any]],
    params: Any,
    opt_state: Any,
    optimizer: optax.GradientTransformation,
    x: CsrRows,
    l2: jax.Array | float,
) -> tuple[Any, Any, Any]:
    """One optimizer step; ``loss(params, perturbations)`` returns ``(loss, aux)`` and ``x`` is
    the batch the first layer reads. Returns the new parameters, optimizer state and ``aux``.

    ``l2``: the L2 strength that ``loss`` applies to the first layer's kernel (0: none).
    """
    kernel = params[FIRST]["kernel"]
    frozen = _with_kernel(params, jax.lax.stop_gradient(kernel))  # its gradient is not formed
    probe = {FIRST: {ffi_layer.PRODUCT: jnp.zeros((x.num_rows, kernel.shape[1]), kernel.dtype)}}
    (grads, at_product), aux = jax.grad(loss, argnums=(0, 1), has_aux=True)(frozen, probe)
    # optax updates every parameter; the kernel's (from a zero gradient) is replaced below, and
    # XLA drops the unused arithmetic.
    updates, new_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    values = new_state.hyperparams
    hyper = jnp.stack([*(values[name] for name in rule.hyperparameters), l2]).astype(jnp.float32)
    slot = optax.tree.get(opt_state, rule.slot)[FIRST]["kernel"]
    gradient = at_product[FIRST][ffi_layer.PRODUCT]
    new_kernel, new_slot = ffi_layer.csr_update(rule.code, kernel, slot, gradient, hyper, x)
    slots = _with_kernel(optax.tree.get(new_state, rule.slot), new_slot)
    new_state = optax.tree.set(new_state, **{rule.slot: slots})
    return _with_kernel(new_params, new_kernel), new_state, aux
