"""The compiled first layer (jaxlab.native: a C++ kernel through the XLA FFI) gives the other
first layers' numbers, alone, vmapped over models, and through fit and run_sweep."""

import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import synthetic_reviews

from jaxlab.batching import gather_batch, make_batch, to_device_data
from jaxlab.models import mlp
from jaxlab.native import bag
from jaxlab.sweep import run_sweep
from jaxlab.train import METRICS, TrainConfig, fit

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="no C++ compiler (g++ or $CXX) to build the ffi first layer",
)


def assert_histories_equal(actual, expected, tol=1e-5):
    for metric in METRICS:
        np.testing.assert_allclose(actual[metric], expected[metric], rtol=tol, atol=tol)


def counts_dataset():
    """64 rows of 300 columns with counts as values (not only 1.0) and some empty rows."""
    rng = np.random.default_rng(0)
    counts = np.zeros((64, 300), np.float32)
    for row in counts[:60]:
        words = rng.integers(0, 300, size=rng.integers(1, 40))
        np.add.at(row, words, rng.uniform(0.5, 3.0, size=len(words)).astype(np.float32))
    return to_device_data(counts, np.zeros(64))


def loss_and_grads(params, inputs, weights):
    def loss(params):
        logits = mlp().apply({"params": params}, inputs)
        return jnp.sum(weights * jnp.tanh(logits)), logits

    return jax.value_and_grad(loss, has_aux=True)(params)


def csr_rows(data, rows):
    return make_batch(data, rows, "ffi", 0)["inputs"]


@needs_compiler
def test_rows_read_in_place_give_the_gathered_batch_numbers():
    """CsrRows (the dataset and row numbers, -1 padding) through the kernel equal the gathered
    SparseRows through the sparse layer: outputs and gradients, with a shift too."""
    data = counts_dataset()
    rows = jnp.asarray(np.r_[np.random.default_rng(1).permutation(64)[:44], [-1] * 4], jnp.int32)
    gathered, _, _ = gather_batch(data, rows, max_nonzeros=48 * 40)
    in_place = csr_rows(data, rows)
    weights = (rows >= 0).astype(jnp.float32)
    params = mlp().init(jax.random.key(0), in_place)["params"]
    for shift in (None, jnp.linspace(-1.0, 1.0, 300)):
        (value, logits), grads = loss_and_grads(
            params, dataclasses.replace(in_place, shift=shift), weights
        )
        expected = loss_and_grads(params, dataclasses.replace(gathered, shift=shift), weights)
        np.testing.assert_allclose(logits, expected[0][1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(value, expected[0][0], rtol=1e-5, atol=1e-5)
        for g, g_o in zip(jax.tree.leaves(grads), jax.tree.leaves(expected[1]), strict=True):
            np.testing.assert_allclose(g, g_o, rtol=1e-5, atol=1e-5)


MODELS = 5  # >= the kernel's kByColumnModels


@needs_compiler
@pytest.mark.parametrize("forward_by_column", [False, True])
def test_rows_read_in_place_vmapped_equal_a_loop(monkeypatch, forward_by_column):
    """Many kernels (stored either way) with shared rows, per-model rows, a shared kernel with
    per-model rows, and per-model datasets, each against a per-model loop of the reference.
    Five models: enough for shared rows to take the kernel's column-by-column backward pass;
    the forward pass takes it too when told to (its threshold is in bytes of kernels)."""
    if forward_by_column:
        monkeypatch.setattr(bag, "BY_COLUMN_BYTES", 0)
    data = counts_dataset()
    rng = np.random.default_rng(2)
    kernels = jax.random.normal(jax.random.key(1), (MODELS, 300, 16))
    targets = jax.random.normal(jax.random.key(2), (MODELS, 24, 16))
    shared_rows = jnp.asarray(np.r_[rng.permutation(64)[:22], [-1, -1]], jnp.int32)
    own_rows = jnp.stack([jnp.roll(shared_rows, 5 * m) for m in range(MODELS)])

    def loss(kernel, rows, target, values=data.values):
        batch = csr_rows(dataclasses.replace(data, values=values), rows)
        return jnp.sum(jnp.tanh(bag.csr_matmul(kernel, batch)) * target)

    def reference(kernel, rows, target, values=data.values):
        batch = gather_batch(dataclasses.replace(data, values=values), rows, 24 * 40)[0]
        out = jax.ops.segment_sum(
            kernel[batch.columns] * batch.values[:, None], batch.row_ids, num_segments=24
        )
        return jnp.sum(jnp.tanh(out) * target)

    def check(kernel_axis, rows_axis, kernels_, rows, values_axis=None, values=data.values):
        in_axes = (kernel_axis, rows_axis, 0, values_axis)
        out_axes = (0, 0 if kernel_axis is None else kernel_axis)
        run = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=in_axes, out_axes=out_axes))
        value, dkernel = run(kernels_, rows, targets, values)
        ref_axes = (None if kernel_axis is None else 0, *in_axes[1:])
        ref_kernels = kernels_ if kernel_axis is None else jnp.moveaxis(kernels_, kernel_axis, 0)
        expected = jax.vmap(jax.value_and_grad(reference), in_axes=ref_axes)(
            ref_kernels, rows, targets, values
        )
        np.testing.assert_allclose(value, expected[0], rtol=1e-5, atol=1e-5)
        if kernel_axis is not None:
            dkernel = jnp.moveaxis(dkernel, kernel_axis, 0)
        np.testing.assert_allclose(dkernel, expected[1], rtol=1e-5, atol=1e-5)

    for axis in (0, 1):  # (M, V, H) and (V, M, H)
        stored = jnp.moveaxis(kernels, 0, axis)
        check(axis, None, stored, shared_rows)
        check(axis, 0, stored, own_rows)
    check(None, 0, kernels[0], own_rows)
    values = jnp.stack([data.values * (m % 3 + 1) for m in range(MODELS)])
    check(0, 0, kernels, own_rows, values_axis=0, values=values)


TINY = TrainConfig(model_args={"hidden": (8, 8)}, epochs=2, batch_size=32, eval_batch_size=40)


def with_layer(config: TrainConfig, layer: str) -> TrainConfig:
    return dataclasses.replace(config, input_layer=layer)


@needs_compiler
def test_fit_history_equals_the_sparse_layer():
    train, validation = synthetic_reviews(150, 50), synthetic_reviews(60, 50, seed=1)
    config = dataclasses.replace(
        with_layer(TINY, "ffi"), l2=1e-3, model_args={"hidden": (8, 8), "dropout": 0.25}
    )
    expected = fit(with_layer(config, "sparse"), train, validation, seed=3, verbose=False).history
    actual = fit(config, train, validation, seed=3, verbose=False).history
    assert_histories_equal(actual, expected)


@needs_compiler
@pytest.mark.parametrize("data_order", ["shared", "per_model"])
def test_vmapped_sweep_equals_the_sparse_layer(data_order):
    train, validation = synthetic_reviews(150, 50), synthetic_reviews(60, 50, seed=1)
    grid = {"learning_rate": [1e-3, 3e-3]}
    runs = {
        layer: run_sweep(
            with_layer(TINY, layer),
            grid,
            [0, 1, 2],
            train,
            validation,
            data_order=data_order,
            keep_params=True,
            verbose=False,
        )
        for layer in ("sparse", "ffi")
    }
    assert_histories_equal(runs["ffi"].histories, runs["sparse"].histories)
    config = {"learning_rate": 3e-3}
    params = runs["ffi"].params_of(config)
    assert params["input"]["kernel"].shape == (3, 50, 8)
    for a, b in zip(
        jax.tree.leaves(params), jax.tree.leaves(runs["sparse"].params_of(config)), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_without_a_compiler_asking_for_ffi_is_a_one_line_config_error(tmp_path):
    # A fresh process whose compiler does not exist and whose build cache is empty.
    code = (
        "import numpy as np\n"
        "from jaxlab import TrainConfig, fit, sparse_multi_hot\n"
        "data = sparse_multi_hot([[1, 2], [3]] * 4, 5), np.array([0, 1] * 4)\n"
        "def run(layer):\n"
        "    return fit(TrainConfig(input_layer=layer, epochs=1), data, data, verbose=False)\n"
        "try:\n    run('ffi')\n"
        "except Exception as e:\n    print(type(e).__name__, '|', e)\n"
        "run('sparse')\nprint('sparse ok')\n"
    )
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "JAXLAB_CACHE_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("ConfigError | the ffi first layer needs a C++ compiler"), done
    assert lines[1] == "sparse ok"
