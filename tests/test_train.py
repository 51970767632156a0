import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import synthetic_reviews

from jaxlab import ConfigError, batching, sparse_multi_hot
from jaxlab.models import ModelConfig
from jaxlab.train import (
    ModelSettings,
    TrainConfig,
    binary_crossentropy,
    epoch_keys,
    fit,
    make_trainer,
    run_keys,
    train_epoch,
)

DIM = 50
TINY = ModelConfig(hidden=(8, 8), num_words=DIM)
NO_REG = ModelSettings(jnp.float32(0.0), jnp.float32(0.0), jnp.int32(0))


@pytest.fixture(scope="module")
def tiny():
    return synthetic_reviews(70, DIM, seed=0), synthetic_reviews(30, DIM, seed=1)


def test_binary_crossentropy_clips_probabilities_like_keras():
    logits = jnp.array([0.0, 3.0, -40.0])
    labels = jnp.array([1.0, 0.0, 1.0])
    probabilities = np.clip(jax.nn.sigmoid(logits), 1e-7, 1 - 1e-7)
    expected = -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    np.testing.assert_allclose(binary_crossentropy(logits, labels), expected, rtol=1e-5)


def test_one_train_step_changes_every_parameter():
    # Every word occurs in the batch, so every kernel row gets a gradient; tanh has no dead
    # units (a ReLU unit inactive on the whole batch would rightly get none).
    rng = np.random.default_rng(0)
    sequences = [rng.permutation(DIM)[: DIM // 2].tolist() for _ in range(40)]
    labels = rng.integers(0, 2, size=40).astype(np.float32)
    data = batching.to_device_data(sparse_multi_hot(sequences, DIM), labels)
    model = ModelConfig(hidden=(8, 8), activation="tanh", num_words=DIM)
    trainer = make_trainer(TrainConfig(model=model, batch_size=40), data, data)
    state = trainer.init(run_keys(0)["init"])
    new_state, _ = jax.jit(trainer.train_step)(
        state, data, jnp.arange(40, dtype=jnp.int32), NO_REG, jax.random.key(0)
    )
    pairs = zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params), strict=True)
    for before, after in pairs:
        assert np.all(np.asarray(before) != np.asarray(after))


def test_epoch_metrics_are_sample_weighted_means_and_keep_the_partial_batch(tiny):
    (x, y), (vx, vy) = tiny
    train, val = batching.to_device_data(x, y), batching.to_device_data(vx, vy)
    config = TrainConfig(model=TINY, batch_size=32)  # 70 rows: batches of 32, 32 and 6
    trainer = make_trainer(config, train, val)
    assert trainer.steps_per_epoch == 3
    keys = run_keys(3)
    shuffle_key, dropout_key = epoch_keys(keys, 0)
    _, sums = train_epoch(
        trainer, trainer.init(keys["init"]), train, shuffle_key, dropout_key, NO_REG
    )
    assert float(sums.count) == 70

    # Replay the same batches one step at a time: each batch's mean loss before its update.
    batches = batching.shuffled_batches(shuffle_key, 70, 32)
    step = jax.jit(trainer.train_step)
    state = trainer.init(keys["init"])
    losses, sizes = [], []
    for index, rows in enumerate(batches):
        key = jax.random.fold_in(dropout_key, index)
        state, batch_sums = step(state, train, rows, NO_REG, key)
        losses.append(float(batch_sums.loss / batch_sums.count))
        sizes.append(int(batch_sums.count))
    assert sizes == [32, 32, 6]
    expected = np.average(losses, weights=sizes)
    assert float(sums.loss / sums.count) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(np.mean(losses), rel=1e-3)  # weighting matters here


def test_fit_history_shape_and_full_batch(tiny):
    (x, y), val = tiny
    history = fit(TrainConfig(model=TINY, epochs=3, batch_size=10**6), (x, y), val, verbose=False)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert all(len(values) == 3 for values in history.values())
    assert all(0 <= a <= 1 for a in history["accuracy"] + history["val_accuracy"])


def test_same_seed_same_history_other_seed_different(tiny):
    config = TrainConfig(model=TINY, epochs=3, batch_size=16, dropout=0.3)
    first, again, other = (fit(config, *tiny, seed=s, verbose=False) for s in (0, 0, 1))
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert first[metric] == again[metric]
    assert first["loss"] != other["loss"]


def test_reported_val_loss_includes_the_l2_penalty(tiny):
    (x, y), (vx, vy) = tiny
    train, val = batching.to_device_data(x, y), batching.to_device_data(vx, vy)
    trainer = make_trainer(TrainConfig(model=TINY, l2=0.01), train, val)
    params = trainer.init(run_keys(0)["init"]).params
    plain = trainer.evaluate(params, val, NO_REG)
    with_l2 = trainer.evaluate(
        params, val, ModelSettings(jnp.float32(0.01), jnp.float32(0), jnp.int32(0))
    )
    penalty = 0.01 * sum(float(jnp.sum(layer["kernel"] ** 2)) for layer in params.values())
    assert float(with_l2.loss / with_l2.count) == pytest.approx(
        float(plain.loss / plain.count) + penalty, rel=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": -5}, "batch_size must be a positive integer"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"optimizer": "adamax9"}, "unknown optimizer 'adamax9'; known: .*rmsprop"),
        ({"optimizer_args": {"momentum_typo": 0.9}}, "has no hyperparameter momentum_typo"),
        ({"dropout": 1.0}, "dropout"),
        ({"l2": -1.0}, "l2"),
        ({"fused_update": "no"}, "fused_update must be True or False, got 'no'"),
    ],
)
def test_bad_training_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_step_memory_grows_with_the_batch_and_the_dense_first_layer():
    from jaxlab.train import step_memory_bytes

    wide = 5000  # a dense batch is 64 x 5000 floats; its ~400 nonzeros are far fewer
    train = batching.to_device_data(*synthetic_reviews(70, wide, seed=0))
    val = batching.to_device_data(*synthetic_reviews(30, wide, seed=1))

    def memory(layer, batch_size):
        model = ModelConfig(hidden=(8, 8), num_words=wide, input_layer=layer)
        config = TrainConfig(model=model, batch_size=batch_size)
        return step_memory_bytes(make_trainer(config, train, val), train)

    assert memory("dense", 64) > memory("dense", 8) > 0
    assert memory("dense", 64) > memory("sparse", 64)


def test_a_trainer_without_l2_or_dropout_leaves_them_out_and_trains_the_same(tiny):
    (x, y), (vx, vy) = tiny
    train, val = batching.to_device_data(x, y), batching.to_device_data(vx, vy)
    config = TrainConfig(model=TINY, batch_size=32)
    plain = make_trainer(config, train, val)
    assert not plain.penalized and not plain.drops  # l2 = dropout = 0: the defaults leave them out
    assert make_trainer(dataclasses.replace(config, l2=0.01), train, val).penalized
    assert make_trainer(dataclasses.replace(config, dropout=0.5), train, val).drops
    keys = run_keys(5)
    shuffle_key, dropout_key = epoch_keys(keys, 0)
    outputs = []
    for trainer in (plain, dataclasses.replace(plain, penalized=True, drops=True)):
        state, sums = train_epoch(
            trainer, trainer.init(keys["init"]), train, shuffle_key, dropout_key, NO_REG
        )
        outputs.append((state.params, sums, trainer.evaluate(state.params, val, NO_REG)))
    for left, right in zip(*(jax.tree.leaves(o) for o in outputs), strict=True):
        np.testing.assert_array_equal(left, right)
