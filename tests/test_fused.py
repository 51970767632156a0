"""The first layer's update fused into the compiled layer gives optax's steps (to rounding)."""

import dataclasses

import jax
import numpy as np
import optax
import pytest
from helpers import synthetic_reviews
from test_native import MODELS, assert_histories_equal, needs_compiler

from jaxlab import optim
from jaxlab.encoding import SparseFeatures
from jaxlab.native import fused
from jaxlab.sweep import run_sweep
from jaxlab.train import TrainConfig, fit


def counts_features(shift=None):
    """64 rows of 300 columns with counts as values (not only 1.0) and some empty rows."""
    rng = np.random.default_rng(0)
    indices, values, offsets = [], [], [0]
    for row in range(64):
        words = np.unique(rng.integers(0, 300, size=rng.integers(1, 40))) if row < 60 else []
        indices += list(words)
        values += list(rng.uniform(0.5, 3.0, size=len(words)))
        offsets.append(len(indices))
    x = SparseFeatures(
        np.asarray(indices, np.int32),
        np.asarray(offsets, np.int64),
        np.asarray(values, np.float32),
        300,
        shift,
    )
    return x, rng.integers(0, 2, 64).astype(np.float32)


def config(width: int, fused_update: bool, **changes) -> TrainConfig:
    changes = {"model_args": {"hidden": (width, 4)}, **changes}
    return TrainConfig(
        input_layer="ffi", batch_size=24, epochs=1, fused_update=fused_update, **changes
    )


@pytest.fixture
def fused_calls(monkeypatch):
    """How many train steps the fused rule built (once per compiled program)."""
    calls = []
    original = fused.step_factory

    def counting(rule, hyperparameters):
        calls.append(rule)
        return original(rule, hyperparameters)

    monkeypatch.setattr(fused, "step_factory", counting)
    return calls


def assert_trees_close(actual, expected, tol=2e-6):
    for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@needs_compiler
@pytest.mark.parametrize(
    ("optimizer", "width", "l2"),  # 16: a width the kernel is compiled for; 8: any other
    [("rmsprop", 16, 0.0), ("rmsprop", 8, 1e-2), ("rmsprop_keras2", 16, 1e-2)],
)
def test_steps_equal_the_optax_steps(fused_calls, optimizer, width, l2):
    """Parameters, optimizer state and losses after an epoch of 3 steps (the last one short),
    the L2 penalty's share of the kernel's gradient and dropout included."""
    data = counts_features()
    changes = {"optimizer": optimizer, "l2": l2, "learning_rate": 0.01}
    changes["model_args"] = {"hidden": (width, 4), "dropout": 0.25}
    actual = fit(config(width, True, **changes), data, data, seed=4, verbose=False)
    assert fused_calls and fused_calls[0] is fused.RULES[optimizer]
    count = len(fused_calls)
    expected = fit(config(width, False, **changes), data, data, seed=4, verbose=False)
    assert len(fused_calls) == count  # the optax path
    np.testing.assert_allclose(actual.history["loss"], expected.history["loss"], rtol=1e-6)
    assert int(actual.state.step) == 3
    assert_trees_close(actual.state.params, expected.state.params)
    assert_trees_close(actual.state.opt_state, expected.state.opt_state)
    assert jax.tree.structure(actual.state) == jax.tree.structure(expected.state)


@needs_compiler
def test_vmapped_sweep_equals_the_optax_sweep(fused_calls):
    """Models sharing their batches (the kernel's column-by-column pass), each with its own
    learning rate and L2 strength. (Per-model batches, and widths the kernel is not compiled
    for, are compared with the sparse layer in test_native.py.)"""
    train, validation = synthetic_reviews(150, 50), synthetic_reviews(60, 50, seed=1)
    base = TrainConfig(
        model_args={"hidden": (16, 8)},
        input_layer="ffi",
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
    assert fused_calls
    assert_histories_equal(runs[True].histories, runs[False].histories, tol=1e-5)
    for values in ({"learning_rate": 3e-3, "l2": 1e-3}, {"learning_rate": 1e-3, "l2": 0.0}):
        assert_trees_close(runs[True].params_of(values), runs[False].params_of(values), 1e-5)


@needs_compiler
def test_shifted_inputs_take_the_optax_path(fused_calls):
    """A shift (standardized inputs) also moves the kernel's gradient, which the compiled rule
    does not see: such runs are updated by optax, with the same results either way."""
    data = counts_features(shift=np.linspace(-0.5, 0.5, 300))
    actual = fit(config(16, True), data, data, verbose=False)
    expected = fit(config(16, False), data, data, verbose=False)
    assert not fused_calls
    assert actual.history["val_loss"] == expected.history["val_loss"]
    for a, b in zip(jax.tree.leaves(actual.state), jax.tree.leaves(expected.state), strict=True):
        np.testing.assert_array_equal(a, b)


def test_only_unchanged_registered_optimizers_with_a_rule_are_fused(monkeypatch):
    assert fused.rule_for("rmsprop") is fused.RULES["rmsprop"]
    assert fused.rule_for("adam") is None
    assert fused.rule_for("my_optimizer") is None

    def my_rmsprop(learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7):
        return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, centered=True)

    entries = dict(optim.OPTIMIZERS._entries)
    monkeypatch.setattr(optim.OPTIMIZERS, "_entries", entries)
    for table in (optim.RANGES, optim.FAMILIES):  # what registering again replaces, restored
        monkeypatch.setitem(table, "rmsprop", table["rmsprop"])
    optim.register_optimizer("rmsprop", my_rmsprop, override=True)
    assert fused.rule_for("rmsprop") is None


@needs_compiler
@pytest.mark.parametrize(
    "changes, eval_batch_size", [({"input_layer": "sparse"}, 61), ({"fused_update": False}, 62)]
)
def test_other_first_layers_and_fused_update_false_are_not_fused(
    fused_calls, changes, eval_batch_size
):
    # A distinct eval batch size per case: a program compiled earlier builds no step again.
    data = counts_features()
    fresh = config(16, True, eval_batch_size=eval_batch_size)
    fit(dataclasses.replace(fresh, **changes), data, data, verbose=False)
    assert not fused_calls
    fit(fresh, data, data, verbose=False)
    assert fused_calls
