import numpy as np
import pytest

from jaxlab import ConfigError, Sequences, multi_hot, sparse_multi_hot


def lesson_vectorize(sequences, dimension):
    """The lesson's vectorize_sequences, verbatim apart from the name."""
    results = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        results[i, sequence] = 1.0
    return results


def random_sequences(rng, n=50, dim=40):
    return [rng.integers(0, dim, size=rng.integers(0, 30)).tolist() for _ in range(n)]


def test_multi_hot_equals_the_lessons_vectorize_in_float32():
    sequences = random_sequences(np.random.default_rng(0))
    dense = multi_hot(sequences, 40)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, lesson_vectorize(sequences, 40))


def test_sparse_form_holds_sorted_unique_indices_and_equals_dense():
    sequences = random_sequences(np.random.default_rng(1))
    sparse = sparse_multi_hot(sequences, 40)
    assert sparse.shape == (50, 40)
    for row, sequence in enumerate(sequences):
        got = sparse.indices[sparse.offsets[row] : sparse.offsets[row + 1]]
        assert got.tolist() == sorted(set(sequence))
    np.testing.assert_array_equal(sparse.to_dense(), multi_hot(sequences, 40))
    np.testing.assert_array_equal(sparse.take([3, 1]).to_dense(), multi_hot(sequences, 40)[[3, 1]])


def test_sequences_object_and_lists_give_the_same_encoding():
    lists = [[1, 5, 5, 2], [3]]
    np.testing.assert_array_equal(multi_hot(Sequences.from_lists(lists), 8), multi_hot(lists, 8))


@pytest.mark.parametrize("encode", [multi_hot, sparse_multi_hot])
def test_index_outside_dim_is_a_clear_error(encode):
    with pytest.raises(ConfigError, match=r"\[0, 10\)"):
        encode([[1, 10]], 10)
    with pytest.raises(ConfigError, match="dim"):
        encode([[1]], 0)
