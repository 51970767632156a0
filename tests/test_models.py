import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import ConfigError, sparse_multi_hot
from jaxlab.batching import gather_batch, to_device_data
from jaxlab.models import ModelConfig, init_params, layer_names, summary


def test_lesson_model_summary_counts():
    params = init_params(ModelConfig(), jax.random.key(0))
    table = summary(params)
    for line in ("input (Dense)", "160,016", "hidden (Dense)", "272", "output (Dense)", "17"):
        assert line in table
    assert "Total params: 160,305" in table
    assert list(params) == ["input", "hidden", "output"]


def test_layer_names_for_deeper_networks():
    assert layer_names(2) == ["input", "output"]
    assert layer_names(4) == ["input", "hidden", "hidden_2", "output"]


def test_default_kernel_init_is_glorot_uniform_with_zero_bias():
    params = init_params(ModelConfig(), jax.random.key(1))
    kernel = np.asarray(params["input"]["kernel"])
    limit = np.sqrt(6 / (10000 + 16))
    assert np.abs(kernel).max() <= limit
    # Uniform(-l, l) has std l / sqrt(3); lecun_normal (Flax's default) would give 0.01 here.
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    for layer in params.values():
        np.testing.assert_array_equal(layer["bias"], 0.0)
    lecun = init_params(ModelConfig(kernel_init="lecun_normal"), jax.random.key(1))
    assert np.asarray(lecun["input"]["kernel"]).std() == pytest.approx(0.01, rel=0.05)


def test_sparse_and_dense_first_layers_agree_in_outputs_and_gradients():
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 300, size=rng.integers(1, 40)).tolist() for _ in range(64)]
    data = to_device_data(sparse_multi_hot(sequences, 300), np.zeros(64))
    rows = jnp.asarray(np.r_[rng.permutation(64)[:60], [-1] * 4], jnp.int32)
    inputs, _, weights = gather_batch(data, rows, max_nonzeros=64 * 40)
    sparse, dense = (ModelConfig(num_words=300, input_layer=kind) for kind in ("sparse", "dense"))
    params = init_params(sparse, jax.random.key(0))

    def loss(params, config):
        logits = config.module().apply({"params": params}, inputs)
        return jnp.sum(weights * jnp.tanh(logits)), logits

    (value_s, logits_s), grads_s = jax.value_and_grad(loss, has_aux=True)(params, sparse)
    (value_d, logits_d), grads_d = jax.value_and_grad(loss, has_aux=True)(params, dense)
    np.testing.assert_allclose(logits_s, logits_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value_s, value_d, rtol=1e-5)
    for g_s, g_d in zip(jax.tree.leaves(grads_s), jax.tree.leaves(grads_d), strict=True):
        np.testing.assert_allclose(g_s, g_d, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden": (16, 0)}, "hidden widths"),
        ({"activation": "swishy"}, "unknown activation 'swishy'; known: relu"),
        ({"kernel_init": "nope"}, "unknown initializer 'nope'; known: glorot_uniform"),
        ({"input_layer": "csr"}, "input_layer"),
    ],
)
def test_bad_model_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


def test_auto_input_layer_follows_the_measured_rule():
    from jaxlab.models import SPARSE_MAX_MODELS_ON_CPU, choose_input_layer

    assert choose_input_layer("auto", 1, "cpu") == "sparse"
    assert choose_input_layer("auto", SPARSE_MAX_MODELS_ON_CPU, "cpu") == "sparse"
    assert choose_input_layer("auto", SPARSE_MAX_MODELS_ON_CPU + 1, "cpu") == "dense"
    assert choose_input_layer("auto", 1, "gpu") == "dense"
    assert choose_input_layer("sparse", 1000, "gpu") == "sparse"
    assert choose_input_layer("auto", 1000, "cpu", ffi_available=True) == "ffi"
    assert choose_input_layer("auto", 1, "gpu", ffi_available=True) == "dense"
    assert ModelConfig().input_layer == "auto"  # the default, resolved per run
    assert ModelConfig().for_models(1).input_layer in ("ffi", "sparse", "dense")
