"""The dataset held on the device once, and batches gathered from it inside compiled code.

A dataset is stored row-compressed (CSR): ``columns[offsets[i]:offsets[i+1]]`` are row ``i``'s
nonzero columns and ``values`` their values. A batch is a list of row numbers (``-1`` pads a
short last batch); :func:`gather_batch` turns it into :class:`SparseRows` of a static size, so a
whole epoch runs in one ``lax.scan`` and every model of a sweep can share the same arrays.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlab import shuffle
from jaxlab.encoding import SparseFeatures, SparseMultiHot, as_features
from jaxlab.errors import ConfigError
from jaxlab.models import CsrRows, SparseRows


@struct.dataclass
class DeviceData:
    columns: jax.Array  # nnz int32
    values: jax.Array  # nnz float32
    offsets: jax.Array  # n + 1 int32
    labels: jax.Array  # n float32
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32: every row is its entries minus this

    @property
    def num_rows(self) -> int:
        return self.labels.shape[0]


def to_device_data(
    x: SparseMultiHot | SparseFeatures | np.ndarray, labels: np.ndarray
) -> DeviceData:
    """Accepts sparse multi-hot rows, :class:`SparseFeatures` (e.g. scaled word counts) or any
    dense 2-D feature array."""
    labels = np.asarray(labels)
    shift = None
    if isinstance(x, SparseMultiHot | SparseFeatures):
        x = as_features(x)
        columns, offsets, dim, values, shift = x.indices, x.offsets, x.dim, x.values, x.shift
    elif isinstance(x, np.ndarray) and x.ndim == 2:
        rows, columns = np.nonzero(x)
        values = x[rows, columns].astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(x)))])
        dim = x.shape[1]
    else:
        raise ConfigError(
            "inputs must be SparseMultiHot, SparseFeatures or a 2-D numpy array, "
            f"got {type(x).__name__}"
        )
    if labels.shape != (len(offsets) - 1,):
        raise ConfigError(
            f"got {len(offsets) - 1} inputs but labels of shape {labels.shape}; "
            "expected one label per input"
        )
    if not np.isin(labels, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1 for binary classification")
    return DeviceData(
        jnp.asarray(columns, jnp.int32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(offsets, jnp.int32),
        jnp.asarray(labels, jnp.float32),
        int(dim),
        None if shift is None else jnp.asarray(shift, jnp.float32),
    )


def row_lengths(data: DeviceData) -> np.ndarray:
    return np.diff(np.asarray(data.offsets))


def shuffled_batches(key: jax.Array, num_rows: int, batch_size: int) -> jax.Array:
    """A permutation of the rows cut into batches; the last one padded with -1 (S x B)."""
    steps = -(-num_rows // batch_size)
    rows = shuffle.permutation(key, num_rows)
    padded = jnp.full(steps * batch_size, -1, jnp.int32).at[:num_rows].set(rows)
    return padded.reshape(steps, batch_size)


def ordered_batches(num_rows: int, batch_size: int) -> jax.Array:
    """Rows in order, cut into batches, the last one padded with -1 (S x B)."""
    steps = -(-num_rows // batch_size)
    rows = jnp.arange(steps * batch_size, dtype=jnp.int32)
    return jnp.where(rows < num_rows, rows, -1).reshape(steps, batch_size)


def nonzeros_capacity(lengths: np.ndarray, batch_size: int, sigmas: float = 10.0) -> int:
    """Room for the nonzeros of a batch of randomly shuffled rows.

    The mean plus ``sigmas`` standard deviations of a batch's total (rounded up to 1024), at
    most the ``batch_size`` longest rows. A shuffle whose batches need more is caught by
    :func:`most_nonzeros` before it runs, never truncated.
    """
    worst = int(np.sort(lengths)[::-1][:batch_size].sum())
    mean, std = float(np.mean(lengths)), float(np.std(lengths))
    likely = batch_size * mean + sigmas * std * np.sqrt(batch_size)
    return min(worst, int(np.ceil(likely / 1024)) * 1024)


def most_nonzeros(data: DeviceData, batches_SxB: jax.Array) -> jax.Array:
    """The largest number of nonzeros in any of these batches (rows -1 count as empty)."""
    lengths = jnp.diff(data.offsets)
    lengths_padded = jnp.concatenate([lengths, jnp.zeros(1, lengths.dtype)])
    return jnp.max(jnp.sum(lengths_padded[batches_SxB], axis=-1))


def max_nonzeros_ordered(lengths: np.ndarray, batch_size: int) -> int:
    """The most nonzeros in any batch of :func:`ordered_batches`."""
    batches = np.asarray(ordered_batches(len(lengths), batch_size))
    padded = np.concatenate([lengths, [0]])
    return int(padded[batches].sum(axis=1).max())


def gather_batch(
    data: DeviceData, rows_B: jax.Array, max_nonzeros: int
) -> tuple[SparseRows, jax.Array, jax.Array]:
    """The rows ``rows_B`` (``-1`` = padding) as SparseRows with ``max_nonzeros`` entries.

    Returns ``(inputs, labels_B, weights_B)``; padding rows have weight 0.
    """
    batch_size = rows_B.shape[0]
    valid_B = rows_B >= 0
    safe_B = jnp.where(valid_B, rows_B, 0)
    starts_B = data.offsets[safe_B]
    lengths_B = jnp.where(valid_B, data.offsets[safe_B + 1] - starts_B, 0)
    ends_B = jnp.cumsum(lengths_B)
    firsts_B = ends_B - lengths_B
    # Each output slot's batch row: count the rows that start at or before it.
    marks_N = jnp.zeros(max_nonzeros, jnp.int32).at[firsts_B].add(1, mode="drop")
    row_N = jnp.cumsum(marks_N) - 1
    slot_N = jnp.arange(max_nonzeros, dtype=jnp.int32)
    used_N = slot_N < ends_B[-1]
    row_N = jnp.clip(row_N, 0, batch_size - 1)
    source_N = jnp.where(used_N, starts_B[row_N] + slot_N - firsts_B[row_N], 0)
    inputs = SparseRows(
        columns=data.columns[source_N],
        row_ids=jnp.where(used_N, row_N, batch_size),
        values=jnp.where(used_N, data.values[source_N], 0.0),
        num_rows=batch_size,
        dim=data.dim,
        shift=data.shift,
    )
    return inputs, data.labels[safe_B], valid_B.astype(jnp.float32)


def csr_batch(data: DeviceData, rows_B: jax.Array) -> tuple[CsrRows, jax.Array, jax.Array]:
    """The rows ``rows_B`` (``-1`` = padding) as :class:`CsrRows`: the dataset itself and the
    row numbers, for the "ffi" first layer to read in place. Returns ``(inputs, labels_B,
    weights_B)`` like :func:`gather_batch`."""
    valid_B = rows_B >= 0
    inputs = CsrRows(data.columns, data.values, data.offsets, rows_B, data.dim, data.shift)
    labels = data.labels[jnp.where(valid_B, rows_B, 0)]
    return inputs, labels, valid_B.astype(jnp.float32)
