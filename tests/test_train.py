"""fit: Keras's semantics, reproducibility from seeds, the returned state, bad configs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import synthetic_reviews

from jaxlab import ConfigError, FitResult, TrainConfig, fit, make_train_step, run_sweep
from jaxlab.batching import make_batch, shuffled_batches, to_device_data
from jaxlab.step import TrainState
from jaxlab.sweep import step_memory_bytes
from jaxlab.train import epoch_keys, run_keys

DIM = 50
TINY = {"hidden": (8, 8)}


@pytest.fixture(scope="module")
def tiny():
    return synthetic_reviews(70, DIM, seed=0), synthetic_reviews(30, DIM, seed=1)


def test_epoch_metrics_are_sample_weighted_means_of_the_steps_and_keep_the_partial_batch(tiny):
    (x, y), val = tiny
    config = TrainConfig(model_args=TINY, batch_size=32, epochs=1, input_layer="sparse")
    result = fit(config, (x, y), val, seed=3, verbose=False)

    # Replay the epoch with the public step: each batch's mean loss before its update.
    data = to_device_data(x, y)
    keys = run_keys(3)
    shuffle_key, dropout_key = epoch_keys(keys, 0)
    model = config.make_model()
    optimizer = optax.rmsprop(1e-3, decay=0.9, eps=1e-7)
    example = make_batch(data, jnp.zeros(1, jnp.int32), "sparse", 64)
    state = TrainState.create(model.init(keys["init"], example["inputs"])["params"], optimizer)
    step = jax.jit(make_train_step(model, "binary_crossentropy", optimizer))
    losses, sizes = [], []
    for index, rows in enumerate(shuffled_batches(shuffle_key, 70, 32)):
        batch = make_batch(data, rows, "sparse", 32 * 12)
        state, sums = step(state, batch, jax.random.fold_in(dropout_key, index))
        losses.append(float(sums["loss"] / sums["count"]))
        sizes.append(int(sums["count"]))
    assert sizes == [32, 32, 6]
    expected = np.average(losses, weights=sizes)
    assert result.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(np.mean(losses), rel=1e-3)  # weighting matters here
    for a, b in zip(
        jax.tree.leaves(result.state.params), jax.tree.leaves(state.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_returns_history_and_state_full_batch(tiny):
    (x, y), val = tiny
    calls = []
    result = fit(
        TrainConfig(model_args=TINY, epochs=3, batch_size=10**6),
        (x, y),
        val,
        verbose=False,
        on_epoch_end=lambda epoch, history, state: calls.append((epoch, int(state.step))),
    )
    assert isinstance(result, FitResult)
    history, state = result
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert all(len(values) == 3 for values in history.values())
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])
    assert calls == [(0, 1), (1, 2), (2, 3)]  # full batch: one step per epoch
    assert int(state.step) == 3 and state.params["input"]["kernel"].shape == (DIM, 8)


def test_same_seed_same_history_other_seed_different(tiny):
    config = TrainConfig(model_args=TINY | {"dropout": 0.3}, epochs=3, batch_size=16)
    first, again, other = (fit(config, *tiny, seed=s, verbose=False).history for s in (0, 0, 1))
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first[metric] == again[metric]
    assert first["loss"] != other["loss"]


def test_zero_l2_and_dropout_are_left_out_and_train_as_when_swept(tiny):
    # fit with Python zeros leaves the penalty and the masks out of the program; the sweep's
    # traced zeros compute them: the same numbers.
    config = TrainConfig(model_args=TINY, epochs=2, batch_size=32)
    alone = fit(config, *tiny, seed=4, verbose=False).history
    swept = run_sweep(
        config,
        {"l2": [0.0, 1e-3], "dropout": [0.0, 0.5]},
        [4],
        *tiny,
        data_order="per_model",
        verbose=False,
    )
    for metric in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(swept.histories[metric][0, 0, 0], alone[metric], rtol=1e-6)
    assert not np.allclose(swept.histories["loss"][1, 1, 0], alone["loss"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": -5}, "batch_size must be a positive integer"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"optimizer": "adamax9"}, "unknown optimizer 'adamax9'; known: .*rmsprop"),
        ({"optimizer_args": {"momentum_typo": 0.9}}, "has no hyperparameter momentum_typo"),
        ({"loss": "hinge"}, "unknown loss 'hinge'; known: binary_crossentropy"),
        ({"l2": -1.0}, "l2"),
        ({"fused_update": "no"}, "fused_update must be True or False, got 'no'"),
        ({"scan_epoch": 1}, "scan_epoch must be True or False"),
    ],
)
def test_bad_training_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_scan_epoch_false_trains_the_same(tiny):
    config = TrainConfig(model_args=TINY, epochs=2, batch_size=16)
    scanned = fit(config, *tiny, seed=2, verbose=False).history
    stepped = fit(dataclasses.replace(config, scan_epoch=False), *tiny, seed=2, verbose=False)
    for metric in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(stepped.history[metric], scanned[metric], rtol=1e-5)


def test_step_memory_grows_with_the_batch_and_the_dense_first_layer():
    wide = 5000  # a dense batch is 64 x 5000 floats; its ~400 nonzeros are far fewer
    train = synthetic_reviews(70, wide, seed=0)

    def memory(layer, batch_size):
        config = TrainConfig(model_args=TINY, input_layer=layer, batch_size=batch_size)
        return step_memory_bytes(config, train)

    assert memory("dense", 64) > memory("dense", 8) > 0
    assert memory("dense", 64) > memory("sparse", 64)
