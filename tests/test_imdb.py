import numpy as np
import pytest

from jaxlab import DataNotFoundError, imdb, text
from jaxlab.errors import ConfigError

SYNTHETIC = {
    "train": (["The film was good, the end, the.", "Bad film!<br />Bad."], np.array([1, 0])),
    "test": (["Good film, unseen words.", "the the the"], np.array([1, 0])),
}


@pytest.fixture
def fake_tfds(monkeypatch):
    """Replaces the TFDS read with tiny synthetic reviews; counts reads."""
    calls = []

    def read_split(builder, split):
        calls.append(split)
        return list(SYNTHETIC[split][0]), SYNTHETIC[split][1].copy()

    monkeypatch.setattr(imdb, "_read_split", read_split)
    monkeypatch.setattr(imdb, "_prepared_builder", lambda *a: _FakeBuilder())
    return calls


class _FakeBuilder:
    class info:  # noqa: N801
        version = imdb.VERSION


def test_synthetic_load_uses_keras_conventions(fake_tfds, tmp_path):
    (train, train_labels), (test, test_labels) = imdb.load_imdb(num_words=None, cache_dir=tmp_path)
    index = imdb.get_word_index(cache_dir=tmp_path)
    # the x3, film x2 / bad x2 (tie -> alphabetical: bad before film), then the rest.
    assert list(index)[:3] == ["the", "bad", "film"]
    assert train[0].tolist()[:3] == [text.START, index["the"] + 3, index["film"] + 3]
    assert text.OOV in test[0].tolist()  # "unseen" is not in the training vocabulary
    assert train_labels.tolist() == [1, 0] and test_labels.tolist() == [1, 0]
    index_word = imdb.index_to_word(index)
    assert imdb.decode_review(train[0], index_word) == "? the film was good the end the"


def test_num_words_limits_indices(fake_tfds, tmp_path):
    (train, _), (test, _) = imdb.load_imdb(num_words=5, cache_dir=tmp_path)
    assert max(train.values.max(), test.values.max()) < 5


def test_second_load_reads_the_cache_not_tfds(fake_tfds, tmp_path):
    first = imdb.load_imdb(cache_dir=tmp_path)
    reads = len(fake_tfds)
    second = imdb.load_imdb(cache_dir=tmp_path)
    assert len(fake_tfds) == reads
    np.testing.assert_array_equal(first[0][0].values, second[0][0].values)


def test_corrupt_cache_is_rebuilt_not_trusted(fake_tfds, tmp_path):
    imdb.load_imdb(cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    good = path.read_bytes()
    reads = len(fake_tfds)
    # Flip a byte inside the stored arrays, then truncate: both must be rebuilt.
    middle = len(good) // 2
    flipped = good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    for damaged in (flipped, good[:middle]):
        path.write_bytes(damaged)
        with pytest.warns(UserWarning, match="rebuilding damaged IMDB cache"):
            (train, _), _ = imdb.load_imdb(cache_dir=tmp_path)
        assert train[0].tolist()[0] == text.START
        assert path.read_bytes() == good
    assert len(fake_tfds) == reads + 2 * len(imdb.SPLITS)


def test_interrupted_cache_write_leaves_no_valid_looking_file(fake_tfds, tmp_path, monkeypatch):
    def fail_midway(file, **arrays):
        file.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(imdb.np, "savez", fail_midway)
    with pytest.raises(KeyboardInterrupt):
        imdb.load_imdb(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown split 'validation'"):
        imdb.read_reviews("validation")


def test_missing_data_dir_is_one_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as error:
        imdb.load_imdb(data_dir=tmp_path / "nowhere", cache_dir=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message and "TFDS_DATA_DIR" in message


@pytest.mark.imdb
def test_real_imdb_sizes_labels_and_index_facts(imdb, imdb_dir, imdb_cache):
    from jaxlab import decode_review, get_word_index, index_to_word

    (train, train_labels), (test, test_labels) = imdb
    assert len(train) == len(train_labels) == 25000
    assert len(test) == len(test_labels) == 25000
    assert train_labels.sum() == test_labels.sum() == 12500
    assert max(train.values.max(), test.values.max()) == 9999
    index_word = index_to_word(get_word_index(imdb_dir, imdb_cache))
    assert index_word[1] == "the" and index_word[25] == "have"
    decoded = decode_review(train[0], index_word)
    assert decoded.startswith(
        "? this was an absolutely terrible movie don't be ? in by christopher"
    )
    assert train[0][0] == text.START
