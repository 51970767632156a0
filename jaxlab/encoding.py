"""Multi-hot encodings of integer sequences: the lesson's dense form and a compact sparse form."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from jaxlab.errors import ConfigError
from jaxlab.text import Sequences, as_sequences


def _checked(sequences: Sequences | Iterable[Sequence[int]], dim: int) -> Sequences:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ConfigError(f"dim must be a positive integer, got {dim!r}")
    sequences = as_sequences(sequences)
    if sequences.values.size and (sequences.values.min() < 0 or sequences.values.max() >= dim):
        raise ConfigError(
            f"sequence values must lie in [0, {dim}); found {sequences.values.min()}.."
            f"{sequences.values.max()} (load with num_words={dim} or raise dim)"
        )
    return sequences


def multi_hot(sequences: Sequences | Iterable[Sequence[int]], dim: int = 10000) -> np.ndarray:
    """The lesson's ``vectorize_sequences``: row i has ones at the indices of sequence i.

    Returns float32 of shape ``(len(sequences), dim)`` (the lesson's float64 doubles the memory).
    """
    sequences = _checked(sequences, dim)
    out = np.zeros((len(sequences), dim), np.float32)
    rows = np.repeat(np.arange(len(sequences)), sequences.lengths)
    out[rows, sequences.values] = 1.0
    return out


@dataclass(frozen=True)
class SparseMultiHot:
    """Multi-hot rows stored as each row's sorted unique indices plus offsets.

    Row ``i`` has ones at ``indices[offsets[i]:offsets[i+1]]`` and zeros elsewhere in ``dim``.
    """

    indices: np.ndarray
    offsets: np.ndarray
    dim: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    def to_dense(self) -> np.ndarray:
        return multi_hot(Sequences(self.indices, self.offsets), self.dim)

    def take(self, rows: Sequence[int] | np.ndarray) -> SparseMultiHot:
        taken = Sequences(self.indices, self.offsets).take(rows)
        return SparseMultiHot(taken.values, taken.offsets, self.dim)


def _sorted_unique_keys(sequences: Sequences, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Each (row, word) pair once, as ``row * dim + word`` in sorted order, with its count."""
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    keys = np.sort(rows * dim + sequences.values)
    if not keys.size:
        return keys, np.zeros(0, np.int64)
    # Drop repeats by hand: np.unique is many times slower than a sort on large arrays.
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    counts = np.diff(np.concatenate([starts, [keys.size]]))
    return keys[starts], counts


def _offsets(keys: np.ndarray, num_rows: int, dim: int) -> np.ndarray:
    counts = np.bincount(keys // dim, minlength=num_rows)
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def sparse_multi_hot(
    sequences: Sequences | Iterable[Sequence[int]], dim: int = 10000
) -> SparseMultiHot:
    """The same rows as :func:`multi_hot` without materializing the zeros."""
    sequences = _checked(sequences, dim)
    keys, _ = _sorted_unique_keys(sequences, dim)
    offsets = _offsets(keys, len(sequences), dim)
    return SparseMultiHot((keys % dim).astype(np.int32), offsets, int(dim))


@dataclass(frozen=True)
class SparseFeatures:
    """Real-valued rows stored sparsely, minus an optional per-column shift.

    Row ``i`` is ``values[offsets[i]:offsets[i+1]]`` at columns ``indices[...]``, zeros
    elsewhere, minus ``shift`` (a ``dim`` vector, or None for no shift). The shift is what
    keeps standardized features sparse: ``(x - m) / s`` is ``x / s`` (sparse) minus ``m / s``.
    """

    indices: np.ndarray
    offsets: np.ndarray
    values: np.ndarray
    dim: int
    shift: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    def to_dense(self) -> np.ndarray:
        out = np.zeros(self.shape, np.float32)
        rows = np.repeat(np.arange(len(self)), self.lengths)
        out[rows, self.indices] = self.values
        return out if self.shift is None else out - self.shift.astype(np.float32)

    def take(self, rows: Sequence[int] | np.ndarray) -> SparseFeatures:
        taken = Sequences(self.indices, self.offsets).take(rows)
        values = Sequences(self.values, self.offsets).take(rows).values
        return SparseFeatures(taken.values, taken.offsets, values, self.dim, self.shift)


def as_features(x: SparseMultiHot | SparseFeatures) -> SparseFeatures:
    """Multi-hot rows as :class:`SparseFeatures` with values 1 (others unchanged)."""
    if isinstance(x, SparseFeatures):
        return x
    return SparseFeatures(x.indices, x.offsets, np.ones(len(x.indices), np.float32), x.dim)


def sparse_word_counts(
    sequences: Sequences | Iterable[Sequence[int]], dim: int = 10000
) -> SparseFeatures:
    """How often each word occurs in each review (raw counts), stored sparsely."""
    sequences = _checked(sequences, dim)
    keys, counts = _sorted_unique_keys(sequences, dim)
    offsets = _offsets(keys, len(sequences), dim)
    return SparseFeatures(
        (keys % dim).astype(np.int32), offsets, counts.astype(np.float32), int(dim)
    )
