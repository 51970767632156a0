import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import native
from jaxlab.native import shuffle

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="no C++ compiler (g++ or $CXX) to build the compiled sort",
)


@pytest.mark.parametrize("n", [1, 7, 1000, 25000, 70000])
def test_permutation_is_jax_random_permutation_bit_for_bit(n):
    assert native.available()
    for seed in range(4):
        key = jax.random.key(seed)
        ours = jax.jit(shuffle.permutation, static_argnums=1)(key, n)
        np.testing.assert_array_equal(ours, jax.random.permutation(key, n))


def test_permutation_vmaps_over_keys():
    keys = jax.random.split(jax.random.key(3), 5)
    ours = jax.jit(jax.vmap(lambda k: shuffle.permutation(k, 3000)))(keys)
    expected = jnp.stack([jax.random.permutation(k, 3000) for k in keys])
    np.testing.assert_array_equal(ours, expected)


def test_stable_argsort_keeps_equal_keys_in_order():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 5, size=(3, 200)).astype(np.uint32)  # many ties
    keys[0, :3] = np.uint32(2**32 - 1)  # the top bits count too
    order = np.asarray(shuffle.stable_argsort(jnp.asarray(keys)))
    np.testing.assert_array_equal(order, np.argsort(keys, axis=-1, kind="stable"))
