import numpy as np
import pytest

from jaxlab import ConfigError, Sequences, text


def test_tokenize_lowercases_keeps_inner_apostrophes_and_br():
    assert text.tokenize("Don't PANIC!<br /><br />'Quoted' 42x") == [
        "don't",
        "panic",
        "br",
        "br",
        "quoted",
        "42x",
    ]


def test_word_index_ranks_by_frequency_and_breaks_ties_alphabetically():
    index = text.build_word_index([["b", "a", "c", "c"], ["b", "a", "d"]])
    # c, b, a appear twice; a < b < c alphabetically; then d once.
    assert index == {"a": 1, "b": 2, "c": 3, "d": 4}


def test_encode_uses_keras_offsets_start_and_oov():
    index = {"the": 1, "movie": 2}
    encoded = text.encode([["the", "movie", "unknown"], []], index)
    assert encoded[0].tolist() == [text.START, 1 + 3, 2 + 3, text.OOV]
    assert encoded[1].tolist() == [text.START]


def test_limit_vocabulary_maps_rare_indices_to_oov():
    sequences = Sequences.from_lists([[1, 3, 4, 5, 9], [1, 2]])
    limited = text.limit_vocabulary(sequences, 5)
    assert limited[0].tolist() == [1, 3, 4, 2, 2]
    assert limited[1].tolist() == [1, 2]


def test_decode_matches_the_lessons_expression():
    index_word = {1: "the", 2: "movie"}
    sequence = [1, 4, 5, 2, 99]
    expected = " ".join(index_word.get(i - 3, "?") for i in sequence)
    assert text.decode(sequence, index_word) == expected == "? the movie ? ?"


@pytest.mark.parametrize("num_words", [3, 0, -1, 2.5, "10"])
def test_bad_num_words_is_a_clear_error(num_words):
    with pytest.raises(ConfigError, match="num_words"):
        text.check_num_words(num_words)


def test_sequences_indexing_iteration_and_take():
    sequences = Sequences.from_lists([[1, 2], [], [3, 4, 5]])
    assert len(sequences) == 3
    assert [s.tolist() for s in sequences] == [[1, 2], [], [3, 4, 5]]
    assert sequences[-1].tolist() == [3, 4, 5]
    taken = sequences.take([2, 0])
    assert [s.tolist() for s in taken] == [[3, 4, 5], [1, 2]]
    with pytest.raises(IndexError):
        sequences[3]


@pytest.mark.parametrize("bad", [[[1.5, 2.0]], [["a", "b"]], [[[1, 2]]]])
def test_non_integer_sequences_are_rejected(bad):
    with pytest.raises(ConfigError, match="integers"):
        Sequences.from_lists(bad)


def test_sequences_reject_inconsistent_offsets():
    with pytest.raises(ConfigError):
        Sequences(np.arange(3, dtype=np.int32), np.array([0, 2]))
