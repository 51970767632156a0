import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import ConfigError, TrainConfig, batching, fit, multi_hot, sparse_multi_hot


def make_data(n=40, dim=30, seed=0):
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, dim, size=rng.integers(0, 15)).tolist() for _ in range(n)]
    labels = rng.integers(0, 2, size=n).astype(np.float32)
    return sequences, labels


def test_gather_batch_equals_the_dense_rows_and_pads_with_zero_weight():
    sequences, labels = make_data()
    data = batching.to_device_data(sparse_multi_hot(sequences, 30), labels)
    rows = np.array([5, 0, 39, 12, 7, -1, -1], np.int32)
    lengths = batching.row_lengths(data)
    inputs, batch_labels, weights = batching.gather_batch(
        data, jnp.asarray(rows), int(lengths[rows[rows >= 0]].sum()) + 3
    )
    expected = multi_hot(sequences, 30)[rows[:5]]
    np.testing.assert_array_equal(np.asarray(inputs.to_dense())[:5], expected)
    np.testing.assert_array_equal(np.asarray(inputs.to_dense())[5:], 0.0)
    np.testing.assert_array_equal(weights, [1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch_labels[:5], labels[rows[:5]])


def test_dense_feature_arrays_keep_their_values():
    x = np.array([[0.0, 2.5, 0.0], [1.0, 0.0, -3.0]], np.float32)
    data = batching.to_device_data(x, np.array([0, 1]))
    inputs, _, _ = batching.gather_batch(data, jnp.array([1, 0], jnp.int32), 4)
    np.testing.assert_array_equal(inputs.to_dense(), x[[1, 0]])


def test_shuffled_batches_cover_every_row_once_and_pad_the_last_batch():
    batches = np.asarray(batching.shuffled_batches(jax.random.key(0), 10, 4))
    assert batches.shape == (3, 4)
    assert sorted(batches[batches >= 0].tolist()) == list(range(10))
    assert (batches[-1] == -1).sum() == 2


def test_capacity_is_checked_against_the_actual_shuffle():
    lengths = np.array([1, 1, 1, 50, 50, 1])
    data = batching.to_device_data(
        sparse_multi_hot([list(range(length)) for length in lengths], 60), np.zeros(6)
    )
    batches = jnp.array([[3, 4], [0, 1], [2, 5]], jnp.int32)
    assert int(batching.most_nonzeros(data, batches)) == 100
    assert batching.nonzeros_capacity(lengths, 2) <= 100


def test_bad_labels_or_inputs_are_clear_errors():
    x = sparse_multi_hot([[1], [2]], 5)
    with pytest.raises(ConfigError, match="one label per input"):
        batching.to_device_data(x, np.zeros(3))
    with pytest.raises(ConfigError, match="0 or 1"):
        fit(TrainConfig(epochs=1), (x, np.array([0, 2])), (x, np.zeros(2)), verbose=False)
    with pytest.raises(
        ConfigError, match="SparseMultiHot, SparseFeatures or a 2-D array, got list"
    ):
        batching.to_device_data([[1], [2]], np.zeros(2))
    with pytest.raises(ConfigError, match="tokens inputs must be integers"):
        batching.to_device_data(np.zeros((2, 3)), np.zeros(2), "tokens")
    tokens = np.array([[3, 0, 0], [4, -2, 1]])
    for bad in (tokens, np.where(tokens < 0, 2**40, tokens), jnp.asarray(tokens)):
        with pytest.raises(ConfigError, match=r"word indices .* at row 1, column 1"):
            batching.to_device_data(bad, np.zeros(2), "tokens")
    ok = batching.to_device_data(np.abs(tokens), np.zeros(2), "tokens")
    np.testing.assert_array_equal(ok.inputs, np.abs(tokens))
    with pytest.raises(ConfigError, match="dense inputs must be a 2-D array"):
        batching.to_device_data(np.zeros(3), np.zeros(3), "dense")
    with pytest.raises(ConfigError, match="labels must be finite"):
        batching.to_device_data(np.zeros((2, 3)), np.array([0, np.nan]), "dense")


def test_rows_that_do_not_fit_the_batch_are_refused_not_truncated():
    sequences, labels = make_data()
    data = batching.to_device_data(sparse_multi_hot(sequences, 30), labels)
    rows = jnp.arange(8, dtype=jnp.int32)
    needed = int(batching.most_nonzeros(data, rows[None]))
    inputs, _, _ = batching.gather_batch(data, rows, needed)
    np.testing.assert_allclose(
        inputs.to_dense().sum(), float(np.sum(np.asarray(data.values)[: int(data.offsets[8])]))
    )
    with pytest.raises(ConfigError, match=f"these rows have {needed} nonzeros"):
        batching.gather_batch(data, rows, needed - 1)
    with pytest.raises(ConfigError, match="room for"):
        batching.make_batch(data, rows, "sparse", needed - 1)
