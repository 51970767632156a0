"""The lesson's classifier as a Flax linen module: pure ``init``/``apply``.

Inputs are either dense ``x_BxV`` arrays or :class:`SparseRows`, the multi-hot batch as
(row, column, value) triplets. For sparse inputs the first layer can gather the kernel rows of
each review's words and sum them ("sparse") or build the dense batch and multiply ("dense");
both give the same numbers and use the same parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

from jaxlab import ffi_layer
from jaxlab.activations import ACTIVATIONS
from jaxlab.errors import ConfigError
from jaxlab.initializers import INITIALIZERS, zeros_bias

INPUT_LAYERS = ("auto", "sparse", "dense", "ffi")
# Measured by experiments/benchmark.py on a 2-core CPU (docs/benchmark, ms per model-epoch of the
# lesson's model): the compiled "ffi" first layer beats the others at every model count, 76 vs
# 475 (sparse) and 1509 (dense) at 1 model, 61 vs 460 and 420 at 8, 45 vs 596 and 315 at 64, 39
# vs 317 (dense) at 256. Without a C++ compiler, an earlier run found "sparse" faster up to 8
# models at once (246 vs 557 ms at 1, 229 vs 298 ms at 8), a tie at 32, and "dense" ahead from
# 64 (173 vs 253 ms). On accelerators "auto" picks dense, where matrix products are what the
# hardware is built for (not yet measured here).
SPARSE_MAX_MODELS_ON_CPU = 32


def choose_input_layer(
    requested: str, models_per_device: int, backend: str, ffi_available: bool = False
) -> str:
    """Resolves ``"auto"`` to ``"ffi"``, ``"sparse"`` or ``"dense"``; other values are kept."""
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

    Entries with ``row_ids == num_rows`` are padding and contribute nothing.
    """

    columns: jax.Array  # N int32
    row_ids: jax.Array  # N int32, in [0, num_rows]
    values: jax.Array  # N float32
    num_rows: int = struct.field(pytree_node=False)
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32

    def to_dense(self) -> jax.Array:
        dense = jnp.zeros((self.num_rows, self.dim), self.values.dtype)
        dense = dense.at[self.row_ids, self.columns].add(self.values, mode="drop")
        return dense if self.shift is None else dense - self.shift


@struct.dataclass
class CsrRows:
    """A batch that is rows ``rows`` (-1: padding, an empty row) of a dataset stored
    row-compressed: row ``r``'s entries are ``columns[offsets[r]:offsets[r + 1]]`` (and
    ``values``), then minus ``shift`` if there is one. The "ffi" first layer reads them in
    place, so nothing is gathered; the other layers need :class:`SparseRows`."""

    columns: jax.Array  # nnz int32, the whole dataset's
    values: jax.Array  # nnz float32
    offsets: jax.Array  # n + 1 int32
    rows: jax.Array  # B int32
    dim: int = struct.field(pytree_node=False)
    shift: jax.Array | None = None  # dim float32

    @property
    def num_rows(self) -> int:
        return self.rows.shape[0]


class SparseDense(nn.Module):
    """``Dense`` for :class:`SparseRows`: a gather of kernel rows and a segment sum."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.glorot_uniform()

    @nn.compact
    def __call__(self, x: SparseRows) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.dim, self.features))
        bias = self.param("bias", zeros_bias, (self.features,))
        rows_NxH = kernel[x.columns] * x.values[:, None]
        summed_BxH = jax.ops.segment_sum(rows_NxH, x.row_ids, num_segments=x.num_rows)
        return summed_BxH - shifted(x, kernel) + bias


def shifted(x: SparseRows, kernel: jax.Array) -> jax.Array:
    """What the shift takes off every row's first-layer output: ``shift @ kernel`` (or 0)."""
    return 0.0 if x.shift is None else x.shift @ kernel


def layer_names(depth: int) -> list[str]:
    """The lesson's names: ``input``, ``hidden`` (then ``hidden_2``, ...), ``output``."""
    hidden = ["hidden"] + [f"hidden_{i}" for i in range(2, depth)]
    return ["input", *hidden[: depth - 2], "output"]


class MLP(nn.Module):
    """Dense layers with a shared activation and one logit out (sigmoid is in the loss).

    ``dropout_rate`` and ``activation_index`` are arguments of ``__call__`` rather than fields
    so that a sweep can give each model its own; dropout follows every hidden layer, as in
    Chollet's example. With a tuple of activation names, ``activation_index`` picks one.
    """

    hidden: Sequence[int] = (16, 16)
    activation: str | tuple[str, ...] = "relu"
    kernel_init: str = "glorot_uniform"
    input_layer: str = "sparse"

    @nn.compact
    def __call__(
        self,
        x: jax.Array | SparseRows,
        *,
        dropout_rate: float | jax.Array = 0.0,
        activation_index: int | jax.Array = 0,
        train: bool = False,
    ) -> jax.Array:
        activation = select_activation(self.activation, activation_index)
        init = INITIALIZERS.get(self.kernel_init)
        names = layer_names(len(self.hidden) + 1)
        for index, (features, name) in enumerate(zip(self.hidden, names, strict=False)):
            sparse = self.input_layer in ("sparse", "auto")
            if index == 0 and isinstance(x, SparseRows) and sparse:
                x = SparseDense(features, kernel_init=init, name=name)(x)
            elif index == 0 and isinstance(x, SparseRows | CsrRows) and self.input_layer == "ffi":
                x = ffi_layer.FfiDense(features, kernel_init=init, name=name)(x)
            elif isinstance(x, CsrRows):
                raise ConfigError(
                    f"CsrRows batches are read by the 'ffi' first layer only, not by "
                    f"input_layer={self.input_layer!r}; pass SparseRows instead"
                )
            else:
                if isinstance(x, SparseRows):
                    x = x.to_dense()
                x = nn.Dense(features, kernel_init=init, bias_init=zeros_bias, name=name)(x)
            x = activation(x)
            if train:
                x = dropout(x, dropout_rate, self.make_rng("dropout"))
        return nn.Dense(1, kernel_init=init, bias_init=zeros_bias, name=names[-1])(x)[:, 0]


def select_activation(names: str | tuple[str, ...], index: int | jax.Array):
    """The activation ``names`` (one name), or ``names[index]`` chosen at run time."""
    if isinstance(names, str):
        return ACTIVATIONS.get(names)
    functions = [ACTIVATIONS.get(name) for name in names]
    return lambda x: jax.lax.switch(index, functions, x)


def dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout whose rate may be a traced value (rate 0 returns x unchanged)."""
    keep = jax.random.uniform(key, x.shape) >= rate
    return jnp.where(keep, x / (1.0 - rate), 0.0)


@dataclass(frozen=True)
class ModelConfig:
    """What defines the network's shape and initialization."""

    hidden: tuple[int, ...] = (16, 16)
    activation: str | tuple[str, ...] = "relu"  # a tuple: chosen per model by index
    kernel_init: str = "glorot_uniform"
    input_layer: str = "auto"  # resolved per backend and model count by for_models
    num_words: int = 10000

    def __post_init__(self) -> None:
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive integers, got {self.hidden}")
        for name in (self.activation,) if isinstance(self.activation, str) else self.activation:
            ACTIVATIONS.get(name)
        INITIALIZERS.get(self.kernel_init)
        if self.input_layer not in INPUT_LAYERS:
            raise ConfigError(
                f"unknown input_layer {self.input_layer!r}; choose one of {INPUT_LAYERS}"
            )
        if self.input_layer == "ffi":
            ffi_layer.require()  # builds the kernel on first use; says why if it cannot

    def for_models(self, models_per_device: int) -> ModelConfig:
        """This config with ``input_layer="auto"`` resolved for this many models per device."""
        backend = jax.default_backend()
        ffi = self.input_layer == "auto" and backend == "cpu" and ffi_layer.available()
        layer = choose_input_layer(self.input_layer, models_per_device, backend, ffi)
        return dataclasses.replace(self, input_layer=layer)

    def module(self) -> MLP:
        return MLP(tuple(self.hidden), self.activation, self.kernel_init, self.input_layer)


def init_params(config: ModelConfig, key: jax.Array):
    """Parameters of the model from an explicit PRNG key."""
    dummy = jnp.zeros((1, config.num_words), jnp.float32)
    return config.module().init(key, dummy)["params"]


def summary(params, name: str = "sequential") -> str:
    """A table like Keras's ``model.summary()``: layer, output shape, parameter count."""
    rows = []
    for layer, weights in params.items():
        count = sum(int(np.prod(w.shape)) for w in jax.tree_util.tree_leaves(weights))
        width = weights["kernel"].shape[-1]
        rows.append((f"{layer} (Dense)", f"(None, {width})", f"{count:,}"))
    total = sum(int(np.prod(w.shape)) for w in jax.tree_util.tree_leaves(params))
    header = ("Layer (type)", "Output Shape", "Param #")
    widths = [max(len(r[i]) for r in [header, *rows]) + 4 for i in range(3)]
    rule = "-" * sum(widths)

    def line(cells):
        return cells[0].ljust(widths[0]) + cells[1].ljust(widths[1]) + cells[2].rjust(widths[2])

    lines = [f'Model: "{name}"', rule, line(header), "=" * sum(widths)]
    lines += [line(row) for row in rows]
    lines += [
        "=" * sum(widths),
        f"Total params: {total:,}",
        f"Trainable params: {total:,}",
        "Non-trainable params: 0",
        rule,
    ]
    return "\n".join(lines)
