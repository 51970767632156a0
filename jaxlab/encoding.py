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


def sparse_multi_hot(
    sequences: Sequences | Iterable[Sequence[int]], dim: int = 10000
) -> SparseMultiHot:
    """The same rows as :func:`multi_hot` without materializing the zeros."""
    sequences = _checked(sequences, dim)
    rows = np.repeat(np.arange(len(sequences), dtype=np.int64), sequences.lengths)
    keys = np.sort(rows * dim + sequences.values)
    # Drop repeats by hand: np.unique is many times slower than a sort on large arrays.
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if keys.size else keys
    counts = np.bincount(keys // dim, minlength=len(sequences))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return SparseMultiHot((keys % dim).astype(np.int32), offsets, int(dim))
