"""The first layer's update fused into the compiled layer gives optax's steps (to rounding)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import synthetic_reviews
from test_ffi_layer import MODELS, assert_histories_equal, counts_dataset, needs_compiler

from jaxlab import fused, optim
from jaxlab.batching import to_device_data
from jaxlab.models import ModelConfig
from jaxlab.sweep import run_sweep
from jaxlab.train import ModelSettings, TrainConfig, make_trainer

STEPS = 3


def config(width: int, fused_update: bool, **changes) -> TrainConfig:
    model = ModelConfig(hidden=(width, 4), num_words=300, input_layer="ffi")
    return TrainConfig(model=model, batch_size=24, fused_update=fused_update, **changes)


def run_steps(cfg: TrainConfig, data, penalized: bool):
    """STEPS train steps on fixed batches (the last one padded); the final state and sums."""
    trainer = make_trainer(cfg, data, data, penalized=penalized, drops=cfg.dropout > 0)
    reg = ModelSettings.of(cfg)
    state = trainer.init(jax.random.key(4))
    order = np.random.default_rng(5).permutation(data.num_rows)
    rows = np.r_[order, [-1] * (STEPS * 24 - data.num_rows)].reshape(STEPS, 24)
    step = jax.jit(trainer.train_step)
    sums = []
    for index, batch_rows in enumerate(jnp.asarray(rows, jnp.int32)):
        state, batch_sums = step(state, data, batch_rows, reg, jax.random.key(index))
        sums.append(batch_sums.loss)
    return trainer, state, np.asarray(sums)


def assert_trees_close(actual, expected, tol=2e-6):
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@needs_compiler
@pytest.mark.parametrize(
    ("optimizer", "width", "l2"),  # 16: a width the kernel is compiled for; 8: any other
    [("rmsprop", 16, 0.0), ("rmsprop", 8, 1e-2), ("rmsprop_keras2", 16, 1e-2)],
)
def test_steps_equal_the_optax_steps(optimizer, width, l2):
    """Parameters, optimizer state and batch losses after a few steps, the L2 penalty's share
    of the kernel's gradient and dropout included."""
    data = counts_dataset()
    changes = {"optimizer": optimizer, "l2": l2, "dropout": 0.25, "learning_rate": 0.01}
    trainer, actual, losses = run_steps(config(width, True, **changes), data, l2 > 0)
    assert trainer.fused_rule is fused.RULES[optimizer]
    reference, expected, expected_losses = run_steps(config(width, False, **changes), data, l2 > 0)
    assert reference.fused_rule is None
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-6)
    assert_trees_close(actual.params, expected.params)
    assert_trees_close(actual.opt_state, expected.opt_state)
    kernel = actual.params["input"]["kernel"]
    assert float(jnp.max(jnp.abs(kernel - expected.params["input"]["kernel"]))) < 1e-6
    assert jax.tree.structure(actual.opt_state) == jax.tree.structure(expected.opt_state)


@needs_compiler
def test_vmapped_sweep_equals_the_optax_sweep():
    """Eight models sharing their batches (the kernel's column-by-column pass), each with its
    own learning rate and L2 strength. (Per-model batches, and widths the kernel is not compiled
    for, are compared with the sparse layer in test_ffi_layer.py.)"""
    train, validation = synthetic_reviews(150, 50), synthetic_reviews(60, 50, seed=1)
    base = TrainConfig(
        model=ModelConfig(hidden=(16, 8), num_words=50, input_layer="ffi"),
        epochs=2,
        batch_size=32,
        eval_batch_size=40,
    )
    grid = {"learning_rate": [1e-3, 3e-3], "l2": [0.0, 1e-3]}
    seeds = list(range(-(-MODELS // 4)))
    runs = {
        fused_update: run_sweep(
            dataclasses.replace(base, fused_update=fused_update),
            grid,
            seeds,
            train,
            validation,
            keep_params=True,
            verbose=False,
        )
        for fused_update in (True, False)
    }
    assert_histories_equal(runs[True].histories, runs[False].histories, tol=1e-5)
    for values in ({"learning_rate": 3e-3, "l2": 1e-3}, {"learning_rate": 1e-3, "l2": 0.0}):
        assert_trees_close(runs[True].params_of(values), runs[False].params_of(values), 1e-5)


@needs_compiler
def test_shifted_inputs_take_the_optax_path():
    """A shift (standardized inputs) also moves the kernel's gradient, which the compiled rule
    does not see: such batches are updated by optax, with the same results either way."""
    rng = np.random.default_rng(3)
    x = (rng.random((48, 300)) < 0.05).astype(np.float32)
    data = to_device_data(x, rng.integers(0, 2, 48))
    data = dataclasses.replace(data, shift=jnp.linspace(-0.5, 0.5, 300))
    _, actual, _ = run_steps(config(16, True), data, False)
    _, expected, _ = run_steps(config(16, False), data, False)
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


def test_only_unchanged_registered_optimizers_with_a_rule_are_fused(monkeypatch):
    assert fused.rule_for("rmsprop") is fused.RULES["rmsprop"]
    assert fused.rule_for("adam") is None
    assert fused.rule_for("my_optimizer") is None

    def my_rmsprop(learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, centered=True)

    entries = dict(optim.OPTIMIZERS._entries)
    monkeypatch.setattr(optim.OPTIMIZERS, "_entries", entries)
    optim.register_optimizer("rmsprop", my_rmsprop, override=True)
    assert fused.rule_for("rmsprop") is None


@needs_compiler
def test_other_first_layers_and_fused_update_false_are_not_fused():
    data = counts_dataset()
    for layer in ("sparse", "dense"):
        cfg = TrainConfig(model=ModelConfig(num_words=300, input_layer=layer))
        assert make_trainer(cfg, data, data).fused_rule is None
    assert make_trainer(config(16, False), data, data).fused_rule is None
    assert make_trainer(config(16, True), data, data).fused_rule is not None
