"""The pure steps: make_train_step / make_eval_step on dict batches, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import synthetic_reviews

from jaxlab import TrainState, make_eval_step, make_train_step, sparse_multi_hot
from jaxlab.batching import make_batch, to_device_data
from jaxlab.losses import binary_crossentropy
from jaxlab.models import mlp
from jaxlab.step import l2_penalty

DIM = 50


def test_binary_crossentropy_clips_probabilities_like_keras():
    logits = jnp.array([0.0, 3.0, -40.0])
    labels = jnp.array([1.0, 0.0, 1.0])
    probabilities = np.clip(jax.nn.sigmoid(logits), 1e-7, 1 - 1e-7)
    expected = -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    np.testing.assert_allclose(binary_crossentropy(logits, labels), expected, rtol=1e-5)


def dense_batch(n=40, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [rng.permutation(DIM)[: DIM // 2].tolist() for _ in range(n)]
    labels = rng.integers(0, 2, size=n).astype(np.float32)
    data = to_device_data(sparse_multi_hot(sequences, DIM), labels)
    return make_batch(data, jnp.arange(n, dtype=jnp.int32), "sparse", n * DIM)


@pytest.mark.parametrize("jit", [False, True])
def test_one_train_step_changes_every_parameter_and_counts_the_step(jit):
    # Every word occurs in the batch, so every kernel row gets a gradient; tanh has no dead
    # units (a ReLU unit inactive on the whole batch would rightly get none).
    batch = dense_batch()
    model = mlp(hidden=(8, 8), activation="tanh")
    optimizer = optax.rmsprop(1e-3, decay=0.9, eps=1e-7)
    params = model.init(jax.random.key(0), batch["inputs"])["params"]
    state = TrainState.create(params, optimizer)
    step = make_train_step(model, "binary_crossentropy", optimizer)
    new_state, metrics = (jax.jit(step) if jit else step)(state, batch, jax.random.key(1))
    assert int(new_state.step) == 1
    assert float(metrics["count"]) == 40
    pairs = zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params), strict=True)
    for before, after in pairs:
        assert np.all(np.asarray(before) != np.asarray(after))


def test_the_step_is_the_gradient_of_the_mean_loss_plus_l2():
    batch = dense_batch(seed=1)
    model = mlp(hidden=(8,))
    params = model.init(jax.random.key(0), batch["inputs"])["params"]
    sgd = optax.sgd(0.1)
    step = make_train_step(model, "binary_crossentropy", sgd, l2=0.01)
    new_state, metrics = step(TrainState.create(params, sgd), batch, jax.random.key(0))

    def mean_loss(p):
        logits = model.apply({"params": p}, batch["inputs"])
        return jnp.mean(binary_crossentropy(logits, batch["labels"])) + l2_penalty(p, 0.01)

    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, jax.grad(mean_loss)(params))
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert float(metrics["loss"]) / 40 == pytest.approx(float(mean_loss(params)), rel=1e-5)


def test_eval_step_reports_the_l2_penalty_like_keras_and_weights_rows():
    (x, y), _ = synthetic_reviews(30, DIM, seed=1), None
    data = to_device_data(x, y)
    rows = jnp.asarray(np.r_[np.arange(28), [-1, -1]], jnp.int32)
    batch = make_batch(data, rows, "sparse", 30 * 12)
    model = mlp(hidden=(8, 8))
    params = model.init(jax.random.key(0), batch["inputs"])["params"]
    plain = make_eval_step(model, "binary_crossentropy")(params, batch)
    with_l2 = make_eval_step(model, "binary_crossentropy", l2=0.01)(params, batch)
    penalty = 0.01 * sum(float(jnp.sum(layer["kernel"] ** 2)) for layer in params.values())
    assert float(plain["count"]) == 28  # padding rows weigh 0
    assert float(with_l2["loss"] / with_l2["count"]) == pytest.approx(
        float(plain["loss"] / plain["count"]) + penalty, rel=1e-5
    )


def test_l2_covers_kernels_at_any_depth_and_nothing_else():
    params = {"a": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "b": {"c": {"kernel": 2.0}}}
    assert float(l2_penalty(params, 0.5)) == pytest.approx(0.5 * (6 + 4))
    assert l2_penalty(params, 0.0) == 0.0  # a Python zero leaves the penalty out


def test_vmapped_step_equals_single_steps():
    batch = dense_batch(seed=2)
    model = mlp(hidden=(8,))
    rates = jnp.asarray([1e-3, 1e-2, 3e-2])

    def one(rate, key):
        optimizer = optax.rmsprop(rate, decay=0.9, eps=1e-7)
        params = model.init(key, batch["inputs"])["params"]
        step = make_train_step(model, "binary_crossentropy", optimizer)
        return step(TrainState.create(params, optimizer), batch, key)

    keys = jax.random.split(jax.random.key(0), 3)
    stacked, _ = jax.jit(jax.vmap(one))(rates, keys)
    for i in range(3):
        single, _ = one(rates[i], keys[i])
        for a, b in zip(
            jax.tree.leaves(stacked.params), jax.tree.leaves(single.params), strict=True
        ):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)
