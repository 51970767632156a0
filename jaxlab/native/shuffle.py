"""``jax.random.permutation``, the same permutation, with its sorts done by a compiled kernel on
CPU.

The permutation sorts the rows by fresh random 32-bit keys a few times (a stable sort each
time). XLA's CPU sort takes about 11 ms for the 25,000 training reviews, so reshuffling cost
about 18 ms an epoch, and as much again per model with per-model data orders; the radix sort
in ``csrc/shuffle.cc`` takes a fraction of a millisecond. Elsewhere, without a C++ compiler, or
when the library cannot be built or fails its checks (:mod:`jaxlab.native` never loads one that
does), this is ``jax.random.permutation`` itself: the same permutation, slower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import native

ARGSORT = "jaxlab_stable_argsort"


def rounds(n: int) -> int:
    """How many sorts ``jax.random.permutation`` does for ``n`` rows."""
    return int(np.ceil(3 * np.log(max(1, n)) / np.log(np.iinfo(np.uint32).max)))


def stable_argsort(keys: jax.Array) -> jax.Array:
    """The stable ascending order of uint32 ``keys`` along the last axis (the compiled kernel;
    vmaps by sorting each row)."""
    out = jax.ShapeDtypeStruct(keys.shape, jnp.int32)
    return jax.ffi.ffi_call(ARGSORT, out, vmap_method="expand_dims")(keys)


def _compiled() -> bool:
    return jax.default_backend() == "cpu" and native.available()


def permutation(key: jax.Array, n: int) -> jax.Array:
    """``jax.random.permutation(key, n)`` (int32), bit for bit."""
    if not _compiled():
        return jax.random.permutation(key, n).astype(jnp.int32)
    rows = jnp.arange(n, dtype=jnp.int32)
    for _ in range(rounds(n)):
        key, subkey = jax.random.split(key)
        rows = rows[stable_argsort(jax.random.bits(subkey, (n,), jnp.uint32))]
    return rows
