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


def _first_row(offsets: np.ndarray, entry: int) -> int:
    """The row holding entry ``entry`` of a row-compressed array."""
    return int(np.searchsorted(offsets, entry, side="right")) - 1


def check_finite(name: str, array: np.ndarray, offsets: np.ndarray | None = None) -> None:
    """Refuses a 1-D ``array`` of numbers that are not finite as float32 (what models read);
    ``offsets`` (row-compressed) name the row of the first one."""
    if array.dtype.kind not in "biuf":
        raise ConfigError(f"{name} must be real numbers, got {array.dtype}")
    if array.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(array.astype(np.float32, copy=False))
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        where = f"at row {_first_row(offsets, bad)}" if offsets is not None else f"at {bad}"
        raise ConfigError(f"{name} must be finite float32 numbers, got {array[bad]} {where}")


def check_rows(indices, offsets, dim, values=None, shift=None, what: str = "SparseMultiHot"):
    """Refuses (:class:`ConfigError`, naming what is wrong) rows that native code or XLA would
    read out of bounds or turn into NaN: ``offsets`` a 1-D integer array from 0, non-decreasing,
    ending at the number of ``indices``; ``indices`` integers in ``[0, dim)``; ``values`` (one
    per index) and ``shift`` (``dim``) finite. Vectorized: about 10 ms for IMDB's 25,000 rows."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ConfigError(f"{what} dim must be a positive integer, got {dim!r}")
    indices, offsets = np.asarray(indices), np.asarray(offsets)
    for name, array in (("offsets", offsets), ("indices", indices)):
        if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
            raise ConfigError(
                f"{what} {name} must be a 1-D integer array, got {array.dtype} of shape "
                f"{array.shape}"
            )
    count = len(indices)
    if offsets.size == 0 or offsets[0] != 0:
        first = offsets[0] if offsets.size else "nothing"
        raise ConfigError(f"{what} offsets must start at 0, got {first}")
    steps = np.diff(offsets)
    if steps.size and steps.min() < 0:
        row = int(np.flatnonzero(steps < 0)[0])
        raise ConfigError(
            f"{what} offsets must be non-decreasing, got {offsets[row + 1]} after "
            f"{offsets[row]} at row {row}"
        )
    if offsets[-1] != count:
        raise ConfigError(
            f"{what} offsets must be non-decreasing and end at {count} (the number of "
            f"indices), got {offsets[-1]} at row {max(len(offsets) - 2, 0)}"
        )
    if count and (indices.min() < 0 or indices.max() >= dim):
        bad = int(np.flatnonzero((indices < 0) | (indices >= dim))[0])
        raise ConfigError(
            f"{what} indices must lie in [0, {dim}) (dim), got {indices[bad]} at row "
            f"{_first_row(offsets, bad)}"
        )
    if values is not None:
        values = np.asarray(values)
        if values.shape != (count,):
            raise ConfigError(
                f"{what} values must be one per index ({count}), got shape {values.shape}"
            )
        check_finite(f"{what} values", values, offsets)
    if shift is not None:
        shift = np.asarray(shift)
        if shift.shape != (dim,):
            raise ConfigError(f"{what} shift must have dim={dim} values, got shape {shift.shape}")
        check_finite(f"{what} shift", shift)


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

    def __post_init__(self) -> None:
        check_rows(self.indices, self.offsets, self.dim)

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

    def __post_init__(self) -> None:
        check_rows(self.indices, self.offsets, self.dim, self.values, self.shift, "SparseFeatures")

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
