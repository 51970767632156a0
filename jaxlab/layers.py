"""The first layer for bag-of-words inputs, and the batch forms it reads.

A "bag" input is a batch of reviews as word counts (multi-hot or scaled), held sparse. It reaches
a model as one of:

- :class:`CsrRows`: row numbers into the whole dataset stored row-compressed, read in place by
  the compiled CPU kernel (``jaxlab.native``); nothing is gathered;
- :class:`SparseRows`: the batch's (row, column, value) entries, gathered to a static size; read
  by a gather of kernel rows and a segment sum (``method="sparse"``), or made dense and
  multiplied (``method="dense"``, what accelerators are built for);
- a dense ``[B, V]`` array.

:class:`BagDense` reads all of them with the same parameters (``kernel`` V x H, ``bias`` H), so
a model uses it as its first layer and never asks which form it got. Which form a run uses is
``TrainConfig.input_layer`` (``"auto"``: :func:`choose_input_layer`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from jaxlab.errors import ConfigError
from jaxlab.initializers import zeros_bias

INPUT_LAYERS = ("auto", "ffi", "sparse", "dense")
# Measured by experiments/benchmark.py on a 2-core CPU (docs/benchmark, ms per model-epoch of the
# lesson's model): the compiled "ffi" first layer beats the others at every model count, 76 vs
# 475 (sparse) and 1509 (dense) at 1 model, 61 vs 460 and 420 at 8, 45 vs 596 and 315 at 64, 39
# vs 317 (dense) at 256. Without a C++ compiler, an earlier run found "sparse" faster up to 8
# models at once (246 vs 557 ms at 1, 229 vs 298 ms at 8), a tie at 32, and "dense" ahead from
# 64 (173 vs 253 ms). On accelerators "auto" picks dense, where matrix products are what the
# hardware is built for.
SPARSE_MAX_MODELS_ON_CPU = 32
PRODUCT = "product"  # the perturbation at x @ kernel (flax's Module.perturb), for jaxlab.native


def choose_input_layer(
    requested: str, models_per_device: int, backend: str, ffi_available: bool = False
) -> str:
    """Resolves ``"auto"`` to ``"ffi"``, ``"sparse"`` or ``"dense"``; other values are kept
    (``"ffi"`` off CPU is a :class:`ConfigError`)."""
    if requested not in INPUT_LAYERS:
        raise ConfigError(f"unknown input_layer {requested!r}; choose one of {INPUT_LAYERS}")
    if requested == "ffi" and backend != "cpu":
        raise ConfigError(f"input_layer 'ffi' is a CPU kernel; this run's backend is {backend}")
    if requested != "auto":
        return requested
    if backend == "cpu" and ffi_available:
        return "ffi"
    if backend == "cpu" and models_per_device <= SPARSE_MAX_MODELS_ON_CPU:
        return "sparse"
    return "dense"


@struct.dataclass
class SparseRows:
    """A batch of ``num_rows`` sparse rows: ``x[row_ids[n], columns[n]] += values[n]``, then
    every row minus ``shift`` when there is one (standardized inputs stay sparse this way).

    Entries with ``row_ids == num_rows`` are padding and contribute nothing. ``method`` says how
    :class:`BagDense` multiplies it: ``"sparse"`` (gather and sum) or ``"dense"``.
    """

    columns: jax.Array  # N int32
    row_ids: jax.Array  # N int32, in [0, num_rows]
    values: jax.Array  # N float32
    num_rows: int = struct.field(pytree_node=False)
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32
    method: str = struct.field(pytree_node=False, default="sparse")

    def to_dense(self) -> jax.Array:
        dense = jnp.zeros((self.num_rows, self.dim), self.values.dtype)
        dense = dense.at[self.row_ids, self.columns].add(self.values, mode="drop")
        return dense if self.shift is None else dense - self.shift


@struct.dataclass
class CsrRows:
    """A batch that is rows ``rows`` (-1: padding, an empty row) of a dataset stored
    row-compressed: row ``r``'s entries are ``columns[offsets[r]:offsets[r + 1]]`` (and
    ``values``), then minus ``shift`` if there is one. Read in place by the compiled kernel."""

    columns: jax.Array  # nnz int32, the whole dataset's
    values: jax.Array  # nnz float32
    offsets: jax.Array  # n + 1 int32
    rows: jax.Array  # B int32
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32

    @property
    def num_rows(self) -> int:
        return self.rows.shape[0]


def shifted(x: SparseRows | CsrRows, kernel: jax.Array) -> jax.Array | float:
    """What the shift takes off every row's first-layer output: ``shift @ kernel`` (or 0)."""
    return 0.0 if x.shift is None else x.shift @ kernel


class BagDense(nn.Module):
    """``Dense`` for bag inputs in any form (:class:`CsrRows`, :class:`SparseRows`, a dense
    ``[B, V]`` array): ``x @ kernel + bias``. Use it, named anything, as a model's first layer;
    the fused first-layer update (``TrainConfig.fused_update``) finds it wherever it sits."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.glorot_uniform()
    bias_init: nn.initializers.Initializer = zeros_bias

    @nn.compact
    def __call__(self, x: CsrRows | SparseRows | jax.Array) -> jax.Array:
        dim = x.dim if isinstance(x, CsrRows | SparseRows) else x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (dim, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        if isinstance(x, CsrRows):
            from jaxlab.native import bag  # the compiled kernel, built on first use

            # The loss's gradient at x @ kernel is the "perturbations" collection's when one is
            # passed: jaxlab.native.fused updates the kernel from it.
            product = self.perturb(PRODUCT, bag.csr_matmul(kernel, x))
            return product - shifted(x, kernel) + bias
        if isinstance(x, SparseRows) and x.method == "sparse":
            rows_NxH = kernel[x.columns] * x.values[:, None]
            summed_BxH = jax.ops.segment_sum(rows_NxH, x.row_ids, num_segments=x.num_rows)
            return summed_BxH - shifted(x, kernel) + bias
        if isinstance(x, SparseRows):
            x = x.to_dense()
        return x @ kernel + bias
