"""The sparse first layer as a compiled C++ kernel called through the XLA FFI (CPU only).

``x @ kernel`` for a :class:`~jaxlab.models.SparseRows` batch, like
:class:`~jaxlab.models.SparseDense`, but as one pass over the batch's entries that adds
``value * kernel[column]`` into its row (forward) or ``value * grad[row]`` into the kernel's row
(backward), instead of materializing a row of the kernel per entry.

Training reads batches in place instead (:func:`csr_matmul` on a
:class:`~jaxlab.models.CsrRows`): the kernel walks each batch row's entries straight from the
row-compressed dataset, so no batch is gathered and no room for nonzeros is planned.

Written for one model, both vmap over many so that one call serves all of them. The CSR kernel
takes the models' kernels as they are stacked, models first ``(M, V, H)``, and sums each
model's rows while that model's kernel (640 KB for the lesson's network) sits in cache; the
models are spread over the CPU's threads. The older path for gathered batches puts the models'
kernels side by side, ``(V, M * H)`` (a copy of the stacked kernels).

The kernel is ``csrc/embag.cc``, built by :mod:`jaxlab.native` on first use; :func:`require`
raises :class:`ConfigError` if it cannot be built.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.custom_batching import custom_vmap

from jaxlab import native
from jaxlab.initializers import zeros_bias

FORWARD, BACKWARD = "jaxlab_embag_forward", "jaxlab_embag_backward"
CSR_FORWARD, CSR_BACKWARD = "jaxlab_csr_forward", "jaxlab_csr_backward"
CSR_UPDATE = "jaxlab_csr_update"
WHAT = "the ffi first layer"
PRODUCT = "product"  # the perturbation at x @ kernel (flax's Module.perturb)
# Many models reading the same rows: the forward pass walks the batch column by column once
# their kernels together reach this size (csrc/embag.cc says what was measured).
BY_COLUMN_BYTES = 32 << 20


def available() -> bool:
    """Whether the kernel is built and registered (building it if it can be)."""
    return native.available()


def require() -> None:
    """Builds the kernel if needed; raises :class:`ConfigError` saying why it cannot be used."""
    native.require(WHAT)


def _forward(kernel, columns, row_ids, values, num_rows: int):
    """The raw call: kernel (V, ...) -> (num_rows, ...)."""
    out = jax.ShapeDtypeStruct((num_rows, *kernel.shape[1:]), jnp.float32)
    return jax.ffi.ffi_call(FORWARD, out)(kernel, columns, row_ids, values)


def _backward(grad, columns, row_ids, values, vocab: int):
    """The raw call: grad (B, ...) -> (vocab, ...)."""
    out = jax.ShapeDtypeStruct((vocab, *grad.shape[1:]), jnp.float32)
    return jax.ffi.ffi_call(BACKWARD, out)(grad, columns, row_ids, values)


def _side_by_side(x):
    """(M, R, ...) -> (R, M * ...): the models' rows next to each other."""
    return jnp.moveaxis(x, 0, 1).reshape(x.shape[1], -1)


def _apart(y, models: int, features: tuple[int, ...]):
    """(R, M * prod(features)) -> (M, R, *features)."""
    return jnp.moveaxis(y.reshape(y.shape[0], models, *features), 1, 0)


def _per_model_entries(models, batched, columns, row_ids, values, vocab, num_rows):
    """Each model's own entries as one batch of ``models * num_rows`` rows; with ``vocab``, the
    columns index ``models * vocab`` kernel rows (the models' kernels one after another)."""
    columns, row_ids, values = (
        x if b else jnp.broadcast_to(x, (models, *x.shape))
        for x, b in zip((columns, row_ids, values), batched, strict=True)
    )
    model = jnp.arange(models, dtype=jnp.int32)[:, None]
    rows = jnp.where(row_ids < num_rows, row_ids + model * num_rows, models * num_rows)
    return (columns + model * vocab if vocab else columns), rows, values


@functools.cache
def _layer(num_rows: int, vocab: int):
    """``x @ kernel`` for batches of ``num_rows`` rows and kernels of ``vocab`` rows."""

    @custom_vmap
    def forward(kernel, columns, row_ids, values):
        return _forward(kernel, columns, row_ids, values, num_rows)

    @forward.def_vmap
    def _(models, batched, kernel, columns, row_ids, values):
        if not any(batched[1:]):  # shared data (always, within one sweep step): one wide call
            out = forward(_side_by_side(kernel), columns, row_ids, values)
            return _apart(out, models, kernel.shape[2:]), True
        own_kernels = batched[0]
        columns, row_ids, values = _per_model_entries(
            models, batched[1:], columns, row_ids, values, vocab if own_kernels else 0, num_rows
        )
        stacked = kernel.reshape(models * vocab, *kernel.shape[2:]) if own_kernels else kernel
        flat = _layer(models * num_rows, stacked.shape[0])
        out = flat(stacked, columns.ravel(), row_ids.ravel(), values.ravel())
        return out.reshape(models, num_rows, *out.shape[1:]), True

    @custom_vmap
    def backward(grad, columns, row_ids, values):
        return _backward(grad, columns, row_ids, values, vocab)

    @backward.def_vmap
    def _(models, batched, grad, columns, row_ids, values):
        if not batched[0]:
            grad = jnp.broadcast_to(grad, (models, *grad.shape))
        if not any(batched[1:]):
            out = backward(_side_by_side(grad), columns, row_ids, values)
            return _apart(out, models, grad.shape[2:]), True
        columns, row_ids, values = _per_model_entries(
            models, batched[1:], columns, row_ids, values, vocab, num_rows
        )
        flat = _layer(models * num_rows, models * vocab)
        stacked = grad.reshape(models * num_rows, *grad.shape[2:])
        out = flat.backward(stacked, columns.ravel(), row_ids.ravel(), values.ravel())
        return out.reshape(models, vocab, *out.shape[1:]), True

    @jax.custom_vjp
    def layer(kernel, columns, row_ids, values):
        return forward(kernel, columns, row_ids, values)

    def layer_forward(kernel, columns, row_ids, values):
        return forward(kernel, columns, row_ids, values), (columns, row_ids, values)

    def layer_backward(residuals, grad):
        return backward(grad, *residuals), None, None, None

    layer.defvjp(layer_forward, layer_backward)
    layer.backward = backward
    return layer


def sparse_matmul(kernel: jax.Array, columns, row_ids, values, num_rows: int) -> jax.Array:
    """``x @ kernel`` for ``x[row_ids[n], columns[n]] += values[n]`` with ``num_rows`` rows;
    entries with ``row_ids == num_rows`` are padding. Differentiable in ``kernel``."""
    require()
    columns = jnp.asarray(columns, jnp.int32)
    row_ids = jnp.asarray(row_ids, jnp.int32)
    values = jnp.asarray(values, jnp.float32)
    return _layer(int(num_rows), int(kernel.shape[0]))(kernel, columns, row_ids, values)


# The layer reading its batch in place from the CSR dataset (models.CsrRows), models first: the
# kernel is (K, V, H) and ``rows`` (G, B), K and G each 1 or N, and the result (N, B, H). Under
# vmap a new models axis folds into N, so one call serves every model whatever the nesting.


def _fold(x, batched: bool, size: int, count: int, models: int, shareable: bool):
    """A (K, ...) operand, vmapped (``size``, K, ...) if ``batched``, as (K', ...) for
    ``size * models`` models: kept if ``shareable`` and shared (K = 1, unbatched), else one per
    model."""
    if not batched:
        if count == 1 and shareable:
            return x
        x = jnp.broadcast_to(x, (size, *x.shape))
    if count != models:  # shared within each batch entry, yet needed per model
        x = jnp.broadcast_to(x, (size, models, *x.shape[2:]))
    return x.reshape(-1, *x.shape[2:])


def _mapped(fn, batched, args):
    """``fn`` applied model by model (``lax.map``) over the batched arguments: the fallback for
    a dataset that differs between models."""
    mapped = tuple(a for a, b in zip(args, batched, strict=True) if b)

    def one(xs):
        it = iter(xs)
        return fn(*(next(it) if b else a for a, b in zip(args, batched, strict=True)))

    return jax.lax.map(one, mapped)


@custom_vmap
def _csr_forward(kernel, columns, values, offsets, rows):
    models = max(kernel.shape[0], rows.shape[0])
    out = jax.ShapeDtypeStruct((models, rows.shape[1], kernel.shape[2]), jnp.float32)
    threshold = np.int64(BY_COLUMN_BYTES)
    return jax.ffi.ffi_call(CSR_FORWARD, out)(
        kernel, columns, values, offsets, rows, by_column_bytes=threshold
    )


def _fold_models(fn, leading: int = 1, shareable: tuple[int, ...] = (0,)):
    """The vmap rule of a CSR call ``fn(*per_model, columns, values, offsets, rows)`` whose
    ``leading`` first operands (kernels, gradients, optimizer slots) and ``rows`` have a models
    axis first: the new axis is folded into it, so one call serves every model; a dataset that
    differs per model is mapped instead. Operands numbered in ``shareable`` (and ``rows``) stay
    single when shared by every model."""
    data = range(leading, leading + 3)
    rows = leading + 3

    def rule(size, batched, *args):
        if any(batched[i] for i in data):
            out = _mapped(fn, batched, args)
            return out, jax.tree.map(lambda _: True, out)
        per_model = [*range(leading), rows]
        counts = {i: args[i].shape[1 if batched[i] else 0] for i in per_model}
        models = max(counts.values())
        args = list(args)
        for i in per_model:
            share = i in shareable or i == rows
            args[i] = _fold(args[i], batched[i], size, counts[i], models, share)
        out = fn(*args)
        out = jax.tree.map(lambda o: o.reshape(size, models, *o.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return rule


_csr_forward.def_vmap(_fold_models(_csr_forward))


@functools.cache
def _csr_backward(vocab: int):
    """``x^T @ grad`` for CSR batches and kernels of ``vocab`` rows: (N, B, H) -> (N, V, H)."""

    @custom_vmap
    def backward(grad, columns, values, offsets, rows):
        out = jax.ShapeDtypeStruct((grad.shape[0], vocab, grad.shape[2]), jnp.float32)
        return jax.ffi.ffi_call(CSR_BACKWARD, out)(grad, columns, values, offsets, rows)

    backward.def_vmap(_fold_models(backward, shareable=()))
    return backward


@functools.cache
def _csr_layer(vocab: int):
    """One model's ``x @ kernel`` for a CSR batch, differentiable in the (V, H) kernel."""
    backward = _csr_backward(vocab)

    @jax.custom_vjp
    def layer(kernel, columns, values, offsets, rows):
        return _csr_forward(kernel[None], columns, values, offsets, rows[None])[0]

    def layer_forward(kernel, columns, values, offsets, rows):
        return layer(kernel, columns, values, offsets, rows), (columns, values, offsets, rows)

    def layer_backward(residuals, grad):
        columns, values, offsets, rows = residuals
        dkernel = backward(grad[None], columns, values, offsets, rows[None])[0]
        return dkernel, None, None, None, None

    layer.defvjp(layer_forward, layer_backward)
    return layer


def csr_matmul(kernel: jax.Array, x) -> jax.Array:
    """``x @ kernel`` for a :class:`~jaxlab.models.CsrRows` batch (without its shift), read in
    place from the dataset. Differentiable in ``kernel``."""
    require()
    return _csr_layer(int(kernel.shape[0]))(
        kernel,
        jnp.asarray(x.columns, jnp.int32),
        jnp.asarray(x.values, jnp.float32),
        jnp.asarray(x.offsets, jnp.int32),
        jnp.asarray(x.rows, jnp.int32),
    )


@functools.cache
def _csr_update(rule: int):
    """The C++ optimizer ``rule``'s step of the kernels (N, V, H) and their slots (N, V, H),
    from the gradients at the layer's output (N, B, H) and hyperparameters (N, 4)."""

    @custom_vmap
    def update(kernel, slot, grad, hyper, columns, values, offsets, rows):
        if not (kernel.shape == slot.shape and kernel.shape[0] == grad.shape[0] == hyper.shape[0]):
            raise ValueError(
                f"csr update: kernel {kernel.shape}, slot {slot.shape}, gradient {grad.shape} "
                f"and hyperparameters {hyper.shape} need the same models axis"
            )
        shapes = (jax.ShapeDtypeStruct(kernel.shape, jnp.float32),) * 2
        call = jax.ffi.ffi_call(CSR_UPDATE, shapes, input_output_aliases={0: 0, 1: 1})
        return tuple(call(kernel, slot, grad, hyper, columns, values, offsets, rows, rule=rule))

    update.def_vmap(_fold_models(update, leading=4, shareable=()))
    return update


def csr_update(rule: int, kernel, slot, grad, hyper, x) -> tuple[jax.Array, jax.Array]:
    """One model's first-layer kernel (V, H) and optimizer slot (V, H) after one step of the
    compiled optimizer ``rule`` (see :mod:`jaxlab.fused`), from ``grad`` (B, H), the loss's
    gradient at the layer's output ``x @ kernel`` for the :class:`~jaxlab.models.CsrRows` batch
    ``x``, and ``hyper`` (learning rate, decay, epsilon, L2 strength). Vmaps over models."""
    require()
    kernel, slot = _csr_update(int(rule))(
        kernel[None],
        slot[None],
        grad[None],
        jnp.asarray(hyper, jnp.float32)[None],
        jnp.asarray(x.columns, jnp.int32),
        jnp.asarray(x.values, jnp.float32),
        jnp.asarray(x.offsets, jnp.int32),
        jnp.asarray(x.rows, jnp.int32)[None],
    )
    return kernel[0], slot[0]


class FfiDense(nn.Module):
    """``Dense`` for :class:`~jaxlab.models.SparseRows` or :class:`~jaxlab.models.CsrRows`
    through the kernel; same parameters as :class:`~jaxlab.models.SparseDense` (``kernel``
    V x H, ``bias`` H)."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.glorot_uniform()

    @nn.compact
    def __call__(self, x) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.dim, self.features))
        bias = self.param("bias", zeros_bias, (self.features,))
        if hasattr(x, "offsets"):  # CsrRows: read in place
            # The loss's gradient at x @ kernel is the "perturbations" collection's, when one
            # is passed (jaxlab.fused updates the kernel from it).
            out = self.perturb(PRODUCT, csr_matmul(kernel, x))
        else:
            out = sparse_matmul(kernel, x.columns, x.row_ids, x.values, x.num_rows)
        if x.shift is not None:  # standardized inputs: every row minus shift
            out = out - x.shift @ kernel
        return out + bias
