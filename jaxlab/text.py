"""Tokenizer, word index and Keras-style integer encoding of reviews.

The conventions are those of ``keras.datasets.imdb.load_data``: index 0 is padding, 1 marks
the start of a review, 2 is out-of-vocabulary, and the word of frequency rank ``r`` (1 = most
frequent) is encoded as ``r + 3``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from jaxlab.errors import ConfigError

# Bump when tokenize() or encode() change: it invalidates cached encodings.
TOKENIZER_VERSION = 1

PAD, START, OOV = 0, 1, 2
INDEX_FROM = 3
MIN_NUM_WORDS = INDEX_FROM + 1

_TOKEN = re.compile(r"[a-z0-9']+")


def tokenize(text: str) -> list[str]:
    """Lower-cases and splits into runs of letters, digits and apostrophes.

    Apostrophes at either end of a token are stripped ("'hello'" -> "hello"), inner ones kept
    ("don't"). HTML line breaks are left in as the word "br", as in Keras's IMDB index.
    """
    tokens = (token.strip("'") for token in _TOKEN.findall(text.lower()))
    return [token for token in tokens if token]


def build_word_index(token_lists: Iterable[Sequence[str]]) -> dict[str, int]:
    """Ranks words by descending frequency, ties broken alphabetically; ranks start at 1."""
    counts: collections.Counter[str] = collections.Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word: rank for rank, (word, _) in enumerate(ordered, start=1)}


@dataclass(frozen=True)
class Sequences:
    """Variable-length integer sequences stored flat.

    Row ``i`` is ``values[offsets[i]:offsets[i+1]]``.

    Indexed like Keras's ``train_data`` (a numpy object array): an integer (negative counts
    from the end) gives one sequence as a numpy array; a slice, a list or array of integers, or
    a boolean mask gives those sequences as :class:`Sequences`. Iterating yields every sequence,
    and ``np.asarray(sequences, dtype=object)`` is Keras's form: an object array of int arrays.
    """

    values: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0:
            raise ConfigError("offsets must be a 1-D array starting at 0")
        if self.offsets[-1] != len(self.values) or np.any(np.diff(self.offsets) < 0):
            raise ConfigError("offsets must be non-decreasing and end at len(values)")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, key):
        if isinstance(key, int | np.integer) and not isinstance(key, bool | np.bool_):
            row = range(len(self))[key]
            return self.values[self.offsets[row] : self.offsets[row + 1]]
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            stop = max(start, stop)
            offsets = self.offsets[start : stop + 1]
            values = self.values[offsets[0] : offsets[-1]]
            return Sequences(values, offsets - offsets[0])
        try:  # numpy's rules, as for Keras's object array: slices, integer arrays, masks
            rows = np.arange(len(self))[key]
        except (IndexError, TypeError, ValueError) as error:
            raise IndexError(f"cannot index Sequences with {key!r}: {error}") from None
        if rows.ndim != 1:
            raise IndexError(
                f"Sequences take an integer, a slice, or a 1-D array of integers or booleans, "
                f"got {key!r}"
            )
        return self.take(rows)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Keras's form of ``train_data``: a 1-D object array holding one int array per row."""
        if dtype is not None and np.dtype(dtype) != np.dtype(object):
            raise ConfigError(
                f"Sequences are rows of varying length, not a {np.dtype(dtype)} array; use "
                "np.asarray(sequences, dtype=object) (Keras's form) or pad_sequences"
            )
        if copy is False:
            raise ValueError("Sequences become an object array only by copying")
        out = np.empty(len(self), dtype=object)
        values = self.values.copy()  # the rows must not share memory with these Sequences
        for row in range(len(self)):
            out[row] = values[self.offsets[row] : self.offsets[row + 1]]
        return out

    def __iter__(self):
        for row in range(len(self)):
            yield self[row]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: Sequence[int] | np.ndarray) -> Sequences:
        """The sequences at ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = np.repeat(self.offsets[:-1][rows] - offsets[:-1], lengths)
        return Sequences(self.values[starts + np.arange(offsets[-1])], offsets)

    @classmethod
    def from_lists(cls, sequences: Iterable[Sequence[int]]) -> Sequences:
        """Builds from Python lists (or arrays) of integers; rejects anything else."""
        arrays = [np.asarray(sequence) for sequence in sequences]
        for array in arrays:
            if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
                raise ConfigError(
                    f"sequences must be 1-D lists of integers, got dtype {array.dtype} "
                    f"with shape {array.shape}"
                )
        lengths = [len(array) for array in arrays]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        values = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
        return cls(values, offsets)


def as_sequences(sequences: Sequences | Iterable[Sequence[int]]) -> Sequences:
    """Accepts :class:`Sequences` or any iterable of integer lists."""
    if isinstance(sequences, Sequences):
        return sequences
    return Sequences.from_lists(sequences)


def encode(token_lists: Iterable[Sequence[str]], word_index: dict[str, int]) -> Sequences:
    """Encodes tokenized reviews as ``[START, rank + INDEX_FROM, ...]``; unknown words -> OOV."""
    lookup = {word: rank + INDEX_FROM for word, rank in word_index.items()}
    values: list[int] = []
    offsets = [0]
    for tokens in token_lists:
        values.append(START)
        values.extend([lookup.get(token, OOV) for token in tokens])
        offsets.append(len(values))
    return Sequences(np.asarray(values, np.int32), np.asarray(offsets, np.int64))


def limit_vocabulary(sequences: Sequences, num_words: int) -> Sequences:
    """Maps every index >= ``num_words`` to OOV, as ``load_data(num_words=...)`` does."""
    check_num_words(num_words)
    values = np.where(sequences.values >= num_words, OOV, sequences.values).astype(np.int32)
    return Sequences(values, sequences.offsets)


def check_num_words(num_words: int | None) -> None:
    if num_words is None:
        return
    if isinstance(num_words, bool) or not isinstance(num_words, int | np.integer):
        raise ConfigError(f"num_words must be an integer, got {num_words!r}")
    if num_words < MIN_NUM_WORDS:
        raise ConfigError(
            f"num_words must be at least {MIN_NUM_WORDS} (indices 0-2 are reserved and words "
            f"start at {INDEX_FROM}), got {num_words}"
        )


def decode(sequence: Sequence[int], index_word: dict[int, str]) -> str:
    """The lesson's decoding: ``' '.join(index_word.get(i - 3, '?') for i in sequence)``."""
    return " ".join(index_word.get(int(i) - INDEX_FROM, "?") for i in sequence)


def pad_sequences(
    sequences: Sequences | Iterable[Sequence[int]],
    maxlen: int,
    padding: str = "pre",
    truncating: str = "pre",
    value: int = 0,
) -> np.ndarray:
    """Keras's ``pad_sequences``: an int32 ``[N, maxlen]`` array, short rows padded with
    ``value`` and long ones cut, each at the start (``"pre"``) or the end (``"post"``)."""
    if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
        raise ConfigError(f"maxlen must be a positive integer, got {maxlen!r}")
    for name, where in (("padding", padding), ("truncating", truncating)):
        if where not in ("pre", "post"):
            raise ConfigError(f"{name} must be 'pre' or 'post', got {where!r}")
    sequences = as_sequences(sequences)
    out = np.full((len(sequences), maxlen), value, np.int32)
    for row, sequence in enumerate(sequences):
        kept = sequence[-maxlen:] if truncating == "pre" else sequence[:maxlen]
        if len(kept):
            if padding == "pre":
                out[row, maxlen - len(kept) :] = kept
            else:
                out[row, : len(kept)] = kept
    return out
