import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.batching import gather_batch, to_device_data
from jaxlab.encoding import as_features, sparse_multi_hot, sparse_word_counts
from jaxlab.errors import ConfigError
from jaxlab.models import mlp
from jaxlab.scaling import SCALINGS, column_stats, scale_splits
from jaxlab.train import TrainConfig, fit

DIM = 40


def random_sequences(n: int, seed: int, dim: int = DIM, max_len: int = 30):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, dim, size=rng.integers(1, max_len)).tolist() for _ in range(n)]


def dense_counts(sequences, dim: int = DIM) -> np.ndarray:
    out = np.zeros((len(sequences), dim), np.float32)
    for row, sequence in enumerate(sequences):
        np.add.at(out[row], sequence, 1.0)
    return out


def test_word_counts_equal_the_dense_counts_and_share_multi_hot_columns():
    sequences = random_sequences(50, seed=0)
    counts = sparse_word_counts(sequences, DIM)
    np.testing.assert_array_equal(counts.to_dense(), dense_counts(sequences))
    binary = sparse_multi_hot(sequences, DIM)
    np.testing.assert_array_equal(counts.indices, binary.indices)
    np.testing.assert_array_equal(as_features(binary).to_dense(), binary.to_dense())
    np.testing.assert_array_equal(counts.take([3, 1]).to_dense(), dense_counts(sequences)[[3, 1]])


def test_column_stats_count_the_implicit_zeros():
    sequences = random_sequences(60, seed=1) + [list(range(DIM))] * 2
    dense = dense_counts(sequences)
    stats = column_stats(sparse_word_counts(sequences, DIM))
    np.testing.assert_allclose(stats.mean, dense.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, dense.std(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(stats.min, dense.min(0))
    np.testing.assert_array_equal(stats.max, dense.max(0))


@pytest.mark.parametrize("name", ["none", "standardize", "min_max"])
def test_scalings_use_training_statistics_for_every_split(name):
    train_seq, val_seq = random_sequences(80, seed=2), random_sequences(30, seed=3)
    train, val = sparse_word_counts(train_seq, DIM), sparse_word_counts(val_seq, DIM)
    scaled_train, scaled_val = scale_splits(name, train, val)
    dense_train, dense_val = dense_counts(train_seq), dense_counts(val_seq)
    offset, scale = {
        "none": (0.0, 1.0),
        "standardize": (dense_train.mean(0), dense_train.std(0)),
        "min_max": (dense_train.min(0), dense_train.max(0) - dense_train.min(0)),
    }[name]
    scale = np.where(np.asarray(scale) > 0, scale, 1.0)
    np.testing.assert_allclose(scaled_train.to_dense(), (dense_train - offset) / scale, atol=1e-5)
    np.testing.assert_allclose(scaled_val.to_dense(), (dense_val - offset) / scale, atol=1e-5)
    if name == "standardize":
        np.testing.assert_allclose(scaled_train.to_dense().mean(0), 0.0, atol=1e-5)
    if name == "min_max":
        assert scaled_train.to_dense().min() >= 0 and scaled_train.to_dense().max() <= 1 + 1e-6
    # Dividing keeps the zeros: the sparse part has exactly the counts' entries.
    np.testing.assert_array_equal(scaled_train.indices, train.indices)


def test_unknown_scaling_and_rescaling_are_clear_errors():
    train = sparse_word_counts(random_sequences(10, seed=4), DIM)
    with pytest.raises(ConfigError, match="unknown scaling 'zscore'; known: none, standardize"):
        scale_splits("zscore", train)
    (standardized,) = scale_splits("standardize", train)
    with pytest.raises(ConfigError, match="already shifted"):
        scale_splits("min_max", standardized)


def test_folded_shift_gives_the_dense_layers_outputs_and_gradients():
    sequences = random_sequences(64, seed=5)
    (features,) = scale_splits("standardize", sparse_word_counts(sequences, DIM))
    assert features.shift is not None
    data = to_device_data(features, np.zeros(64))
    rows = jnp.asarray(np.r_[np.arange(60), [-1] * 4], jnp.int32)
    inputs, _, weights = gather_batch(data, rows, max_nonzeros=64 * 30)
    np.testing.assert_allclose(inputs.to_dense()[:60], features.to_dense()[:60], atol=1e-5)
    model = mlp()
    params = model.init(jax.random.key(0), inputs)["params"]

    def loss(params, x):
        return jnp.sum(weights * jnp.tanh(model.apply({"params": params}, x)))

    reference = jax.value_and_grad(loss)(params, jnp.asarray(features.to_dense()[rows]))
    for method in ("sparse", "dense"):
        batch = gather_batch(data, rows, 64 * 30, method)[0]
        value, grads = jax.value_and_grad(loss)(params, batch)
        np.testing.assert_allclose(value, reference[0], rtol=1e-5)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference[1]), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_training_on_standardized_counts_is_the_same_sparse_or_dense():
    labels = lambda seqs: np.array([np.mean(np.array(s) < DIM // 2) > 0.5 for s in seqs])  # noqa: E731
    train_seq, val_seq = random_sequences(200, seed=6), random_sequences(100, seed=7)
    train, val = scale_splits(
        "standardize", sparse_word_counts(train_seq, DIM), sparse_word_counts(val_seq, DIM)
    )
    base = TrainConfig(model_args={"hidden": (8, 8)}, epochs=5, batch_size=64, learning_rate=0.01)
    histories = [
        fit(
            dataclasses.replace(base, input_layer=kind),
            (train, labels(train_seq)),
            (val, labels(val_seq)),
            seed=0,
            verbose=False,
        ).history
        for kind in ("sparse", "dense", "ffi")
    ]
    for metric in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(histories[0][metric], histories[1][metric], rtol=1e-4)
        np.testing.assert_allclose(histories[0][metric], histories[2][metric], rtol=1e-4)
    assert histories[0]["val_accuracy"][-1] > 0.6


def test_scalings_registry_is_extendable():
    SCALINGS.register(
        "halve", lambda stats: (np.zeros_like(stats.mean), np.full_like(stats.mean, 2))
    )
    try:
        counts = sparse_word_counts(random_sequences(5, seed=8), DIM)
        (halved,) = scale_splits("halve", counts)
        np.testing.assert_allclose(halved.to_dense(), counts.to_dense() / 2)
    finally:
        SCALINGS.unregister("halve")
