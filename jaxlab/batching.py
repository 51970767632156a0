"""The dataset held on the device once, and batches taken from it inside compiled code.

Bag inputs (sparse word counts) are stored row-compressed (CSR): ``columns[offsets[i]:
offsets[i+1]]`` are row ``i``'s nonzero columns and ``values`` their values (:class:`DeviceData`).
Token and dense inputs are one ``[N, ...]`` array (:class:`ArrayData`). A batch is a list of row
numbers (``-1`` pads a short last batch); :func:`make_batch` turns it into the dict
``{"inputs", "labels", "weights"}`` the steps read, so a whole epoch runs in one ``lax.scan``
and every model of a sweep can share the same arrays. A gathered sparse batch has a static size;
:func:`gather_batch` refuses rows that do not fit (the training loop makes room first).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxlab.encoding import SparseFeatures, SparseMultiHot, check_finite, check_rows
from jaxlab.errors import ConfigError
from jaxlab.layers import CsrRows, SparseRows
from jaxlab.native import shuffle


@struct.dataclass
class DeviceData:
    """Bag inputs, row-compressed, and their labels."""

    columns: jax.Array  # nnz int32
    values: jax.Array  # nnz float32
    offsets: jax.Array  # n + 1 int32
    labels: jax.Array  # n
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32: every row is its entries minus this

    @property
    def num_rows(self) -> int:
        return self.labels.shape[0]


@struct.dataclass
class ArrayData:
    """Token (int32 ``[N, maxlen]``) or dense (float ``[N, D]``) inputs and their labels."""

    inputs: jax.Array
    labels: jax.Array

    @property
    def num_rows(self) -> int:
        return self.labels.shape[0]


def _labels(labels, count: int, dtype: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        raise ConfigError(
            f"got {count} inputs but labels of shape {labels.shape}; expected one label per input"
        )
    if not np.all(np.isfinite(labels.astype(np.float64))):
        raise ConfigError("labels must be finite numbers")
    return labels.astype(dtype)


INT32_MAX = np.iinfo(np.int32).max


def _check_dense(array, form: str) -> None:
    """Refuses a 2-D float array holding NaN or infinity (as float32, what models read), naming
    the first one's row and column. One summing pass (about 0.13 s for 25,000 x 10,000); only
    rows whose sums are not finite are looked at element by element."""
    if not jnp.issubdtype(array.dtype, jnp.floating):
        return
    if isinstance(array, jax.Array):
        if bool(jnp.isfinite(array.astype(jnp.float32)).all()):
            return
        array = np.asarray(array)
    with np.errstate(all="ignore"):
        if np.isfinite(np.sum(array, dtype=np.float32)):
            return
        for row in np.flatnonzero(~np.isfinite(np.sum(array, axis=1, dtype=np.float32))):
            bad = np.flatnonzero(~np.isfinite(array[row].astype(np.float32)))
            if bad.size:  # else only the sum overflowed
                raise ConfigError(
                    f"{form} inputs must be finite float32 numbers, got {array[row, bad[0]]} "
                    f"at row {row}, column {bad[0]}"
                )


def _check_tokens(array) -> None:
    """Refuses word indices outside [0, 2**31): an embedding would read a negative one from
    the end of its table, and int32 cannot hold a larger one."""
    if array.size == 0:
        return
    low, high = int(array.min()), int(array.max())
    if low >= 0 and high <= INT32_MAX:
        return
    array = np.asarray(array)
    row, column = np.argwhere((array < 0) | (array > INT32_MAX))[0]
    raise ConfigError(
        f"tokens inputs must be word indices 0 <= index < 2**31 (0 = padding), got "
        f"{array[row, column]} at row {row}, column {column}"
    )


def to_device_data(x, labels, form: str = "bag", label_dtype: str = "float32"):
    """``(x, labels)`` as device data for a model reading ``form`` inputs.

    ``"bag"``: sparse multi-hot rows, :class:`SparseFeatures` (e.g. scaled word counts) or a
    dense 2-D array (made sparse); ``"tokens"``: a 2-D integer array (0 = padding);
    ``"dense"``: a 2-D float array. numpy and JAX arrays are accepted.
    """
    if form != "bag":
        array = np.asarray(x) if not isinstance(x, jax.Array) else x
        if array.ndim != 2:
            raise ConfigError(f"{form} inputs must be a 2-D array, got shape {array.shape}")
        integer = jnp.issubdtype(array.dtype, jnp.integer)
        if form == "tokens" and not integer:
            raise ConfigError(f"tokens inputs must be integers, got {array.dtype}")
        dtype = jnp.int32 if form == "tokens" else jnp.float32
        if form == "tokens":
            _check_tokens(array)
        _check_dense(array, form)
        return ArrayData(
            jnp.asarray(array, dtype), jnp.asarray(_labels(labels, len(array), label_dtype))
        )
    shift = None
    if isinstance(x, SparseMultiHot | SparseFeatures):
        # Checked when made, and again here: arrays changed in place since would reach the
        # compiled kernel (which trusts them) or XLA (which clamps out-of-range reads).
        values, shift = getattr(x, "values", None), getattr(x, "shift", None)
        check_rows(x.indices, x.offsets, x.dim, values, shift, type(x).__name__)
        columns, offsets, dim = x.indices, x.offsets, x.dim
        values = np.ones(len(columns), np.float32) if values is None else values
    elif isinstance(x, np.ndarray | jax.Array) and x.ndim == 2:
        x = np.asarray(x)
        rows, columns = np.nonzero(x)
        values = x[rows, columns]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(x)))])
        if values.dtype.kind == "f":
            check_finite("bag inputs", values, offsets)
        values = values.astype(np.float32)
        dim = x.shape[1]
    else:
        raise ConfigError(
            "bag inputs must be SparseMultiHot, SparseFeatures or a 2-D array, "
            f"got {type(x).__name__}"
        )
    if offsets[-1] > INT32_MAX or dim > INT32_MAX:
        raise ConfigError(
            f"bag inputs of {offsets[-1]} nonzeros and {dim} columns do not fit the int32 "
            f"indices the device data uses (at most {INT32_MAX})"
        )
    return DeviceData(
        jnp.asarray(columns, jnp.int32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(offsets, jnp.int32),
        jnp.asarray(_labels(labels, len(offsets) - 1, label_dtype)),
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
    data: DeviceData, rows_B: jax.Array, max_nonzeros: int, method: str = "sparse"
) -> tuple[SparseRows, jax.Array, jax.Array]:
    """The rows ``rows_B`` (``-1`` = padding) as SparseRows with ``max_nonzeros`` entries, which
    must be at least :func:`most_nonzeros` of the batch (the caller checks: entries past it
    would be dropped).

    Returns ``(inputs, labels_B, weights_B)``; padding rows have weight 0. Called outside a
    trace, rows that do not fit are a :class:`ConfigError` (inside one, the caller checks).
    """
    concrete = not any(isinstance(x, jax.core.Tracer) for x in (rows_B, data.offsets))
    needed = int(most_nonzeros(data, jnp.asarray(rows_B)[None])) if concrete else 0
    if needed > max_nonzeros:
        raise ConfigError(
            f"these rows have {needed} nonzeros but the batch has room for {max_nonzeros}; "
            "pass a larger max_nonzeros (batching.most_nonzeros tells how many)"
        )
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
        method=method,
    )
    return inputs, data.labels[safe_B], valid_B.astype(jnp.float32)


def make_batch(data: DeviceData | ArrayData, rows_B: jax.Array, layer: str, room: int) -> dict:
    """The rows ``rows_B`` (``-1`` = padding, weight 0) as ``{"inputs", "labels", "weights"}``.

    Bag inputs take the form the first layer ``layer`` reads: :class:`CsrRows` for ``"ffi"``,
    :class:`SparseRows` with ``room`` entries for ``"sparse"`` and ``"dense"``.
    """
    valid_B = rows_B >= 0
    safe_B = jnp.where(valid_B, rows_B, 0)
    if isinstance(data, ArrayData):
        inputs = data.inputs[safe_B]
    elif layer == "ffi":
        inputs = CsrRows(data.columns, data.values, data.offsets, rows_B, data.dim, data.shift)
    else:
        inputs = gather_batch(data, rows_B, room, layer)[0]
    return {"inputs": inputs, "labels": data.labels[safe_B], "weights": valid_B.astype(jnp.float32)}
