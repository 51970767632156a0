"""The sparse first layer as a compiled C++ kernel called through the XLA FFI (CPU only).

``x @ kernel`` for a :class:`~jaxlab.layers.CsrRows` batch (:func:`csr_matmul`), read in place
from the row-compressed dataset: the kernel walks each batch row's entries straight from the
dataset, adding ``value * kernel[column]`` into the row (forward) or ``value * grad[row]`` into
the kernel's row (backward), so no batch is gathered, no room for nonzeros is planned and no row
of the kernel is materialized per entry. :func:`csr_update` fuses the first layer's optimizer
step into its backward pass.

Written for one model, each vmaps over many so that one call serves all of them. The kernel
takes the models' kernels as they are stacked, models first ``(M, V, H)``, and sums each model's
rows while that model's kernel (640 KB for the lesson's network) sits in cache; the models are
spread over the CPU's threads.

The kernel is ``csrc/embag.cc``, built by :mod:`jaxlab.native` on first use; :func:`require`
raises :class:`ConfigError` if it cannot be built.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from jaxlab import native

CSR_FORWARD, CSR_BACKWARD = "jaxlab_csr_forward", "jaxlab_csr_backward"
CSR_UPDATE = "jaxlab_csr_update"
WHAT = "the ffi first layer"
PRODUCT = "product"  # the perturbation at x @ kernel (flax's Module.perturb)
# Many models reading the same rows: the forward pass walks the batch column by column once
# their kernels together reach this size (csrc/embag.cc says what was measured).
BY_COLUMN_BYTES = 32 << 20


def available() -> bool:
    """Whether the kernel is built and registered (building it if it can be). What
    ``input_layer="auto"`` asks: when it cannot be used, a warning (once per process) says why
    a slower first layer is taken."""
    reason = native.reason()
    if reason is not None:
        _warn_fallback(reason)
    return reason is None


@functools.cache
def _warn_fallback(reason: str) -> None:
    warnings.warn(
        f"input_layer 'auto' takes the slower 'sparse' or 'dense' first layer: {WHAT} {reason}",
        RuntimeWarning,
        stacklevel=3,
    )


def require() -> None:
    """Builds the kernel if needed; raises :class:`ConfigError` saying why it cannot be used."""
    native.require(WHAT)


# The layer reading its batch in place from the CSR dataset (layers.CsrRows), models first: the
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
    """``x @ kernel`` for a :class:`~jaxlab.layers.CsrRows` batch (without its shift), read in
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
    compiled optimizer ``rule`` (see :mod:`jaxlab.native.fused`), from ``grad`` (B, H), the loss's
    gradient at the layer's output ``x @ kernel`` for the :class:`~jaxlab.layers.CsrRows` batch
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
