"""Per-column feature scaling fitted on the training split, kept sparse.

A scaling is ``x' = (x - offset) / scale`` per column. Its statistics come from the training
split only and are then applied to every split. Dividing keeps zeros at zero; subtracting an
offset would not, so it is kept apart as :attr:`SparseFeatures.shift` and folded into the first
layer: ``((x - m) / s) @ W = (x / s) @ W - (m / s) @ W``.

Register a new one with ``SCALINGS.register(name, fn)`` where ``fn(column_stats)`` returns
``(offset, scale)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxlab.encoding import SparseFeatures, SparseMultiHot, as_features
from jaxlab.errors import ConfigError
from jaxlab.registry import Registry

SCALINGS = Registry("scaling")


@dataclass(frozen=True)
class ColumnStats:
    """Per-column statistics of a sparse feature matrix, implicit zeros included."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray


def column_stats(x: SparseMultiHot | SparseFeatures) -> ColumnStats:
    x = as_features(x)
    if x.shift is not None:
        raise ConfigError("scalings are fitted on unscaled features; these are already shifted")
    rows, dim = len(x), x.dim
    values = x.values.astype(np.float64)
    mean = np.bincount(x.indices, values, minlength=dim) / rows
    square = np.bincount(x.indices, values**2, minlength=dim) / rows
    std = np.sqrt(np.maximum(square - mean**2, 0.0))
    stored = np.bincount(x.indices, minlength=dim)
    has_zero = stored < rows  # some row has no entry in this column
    low = np.full(dim, np.inf)
    high = np.full(dim, -np.inf)
    np.minimum.at(low, x.indices, values)
    np.maximum.at(high, x.indices, values)
    low = np.where(has_zero, np.minimum(low, 0.0), low)
    high = np.where(has_zero, np.maximum(high, 0.0), high)
    return ColumnStats(mean, std, low, high)


def _nonzero(scale: np.ndarray) -> np.ndarray:
    """A constant column is left unscaled rather than divided by zero."""
    return np.where(scale > 0, scale, 1.0)


@SCALINGS.register("none")
def _none(stats: ColumnStats):
    return np.zeros_like(stats.mean), np.ones_like(stats.mean)


@SCALINGS.register("standardize")
def _standardize(stats: ColumnStats):
    return stats.mean, _nonzero(stats.std)


@SCALINGS.register("min_max")
def _min_max(stats: ColumnStats):
    return stats.min, _nonzero(stats.max - stats.min)


def apply_scaling(
    x: SparseMultiHot | SparseFeatures, offset: np.ndarray, scale: np.ndarray
) -> SparseFeatures:
    """``(x - offset) / scale`` per column, as sparse values plus a shift."""
    x = as_features(x)
    values = (x.values / scale[x.indices]).astype(np.float32)
    shift = (offset / scale).astype(np.float32)
    return SparseFeatures(x.indices, x.offsets, values, x.dim, shift if shift.any() else None)


def scale_splits(name: str, train, *others) -> list[SparseFeatures]:
    """Fits scaling ``name`` on ``train`` and applies it to ``train`` and each of ``others``."""
    offset, scale = SCALINGS.get(name)(column_stats(train))
    return [apply_scaling(x, offset, scale) for x in (train, *others)]
