import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab import MODELS, BagDense, ConfigError, TrainConfig, register_model, sparse_multi_hot
from jaxlab.batching import gather_batch, to_device_data
from jaxlab.layers import SPARSE_MAX_MODELS_ON_CPU, choose_input_layer
from jaxlab.models import Choice, layer_names, mlp, summary


def lesson_params(seed: int = 0, **model_args):
    model = mlp(**model_args)
    return model.init(jax.random.key(seed), jnp.zeros((1, 10000)))["params"]


def test_lesson_model_summary_counts():
    params = lesson_params()
    table = summary(params)
    for line in ("input (Dense)", "160,016", "hidden (Dense)", "272", "output (Dense)", "17"):
        assert line in table
    assert "Total params: 160,305" in table
    assert list(params) == ["input", "hidden", "output"]


def test_summary_works_for_nested_layers_without_a_kernel():
    class Nested(nn.Module):
        @nn.compact
        def __call__(self, x, *, train=False):
            x = nn.LayerNorm(name="norm")(x)
            block = nn.Dense(4, name="inner")
            return nn.Dense(1, name="head")(nn.relu(block(x)))[:, 0]

    params = Nested().init(jax.random.key(0), jnp.zeros((1, 6)))["params"]
    table = summary(params)
    assert "norm (Layer)" in table and "inner (Dense)" in table
    assert "Total params: 45" in table  # 12 (norm) + 28 (inner) + 5 (head)


def test_layer_names_for_deeper_networks():
    assert layer_names(2) == ["input", "output"]
    assert layer_names(4) == ["input", "hidden", "hidden_2", "output"]


def test_default_kernel_init_is_glorot_uniform_with_zero_bias():
    params = lesson_params(1)
    kernel = np.asarray(params["input"]["kernel"])
    limit = np.sqrt(6 / (10000 + 16))
    assert np.abs(kernel).max() <= limit
    # Uniform(-l, l) has std l / sqrt(3); lecun_normal (Flax's default) would give 0.01 here.
    assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    for layer in params.values():
        np.testing.assert_array_equal(layer["bias"], 0.0)
    lecun = lesson_params(1, kernel_init="lecun_normal")
    assert np.asarray(lecun["input"]["kernel"]).std() == pytest.approx(0.01, rel=0.05)


def test_a_choice_picks_the_same_initializer_and_activation_as_its_name():
    x = jax.random.normal(jax.random.key(2), (5, 30))
    named = mlp(hidden=(8,), activation="tanh", kernel_init="he_normal")
    options = ("relu", "tanh"), ("glorot_uniform", "he_normal")
    chosen = mlp(
        hidden=(8,),
        activation=Choice(jnp.int32(1), options[0]),
        kernel_init=Choice(jnp.int32(1), options[1]),
    )
    params = named.init(jax.random.key(3), x)["params"]
    for a, b in zip(
        jax.tree.leaves(params),
        jax.tree.leaves(chosen.init(jax.random.key(3), x)["params"]),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(
        named.apply({"params": params}, x), chosen.apply({"params": params}, x), rtol=1e-6
    )


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_bag_dense_reads_every_form_with_the_same_numbers(method):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 300, size=rng.integers(1, 40)).tolist() for _ in range(64)]
    x = sparse_multi_hot(sequences, 300)
    data = to_device_data(x, np.zeros(64))
    rows = jnp.asarray(np.r_[rng.permutation(64)[:60], [-1] * 4], jnp.int32)
    inputs, _, weights = gather_batch(data, rows, 64 * 40, method)
    dense = jnp.asarray(np.where((rows >= 0)[:, None], x.to_dense()[np.maximum(rows, 0)], 0))
    layer = BagDense(16)
    params = layer.init(jax.random.key(0), dense)

    def loss(params, batch):
        return jnp.sum(weights[:, None] * jnp.tanh(layer.apply(params, batch)))

    value_a, grads_a = jax.value_and_grad(loss)(params, inputs)
    value_b, grads_b = jax.value_and_grad(loss)(params, dense)
    np.testing.assert_allclose(value_a, value_b, rtol=1e-5)
    for g_a, g_b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_allclose(g_a, g_b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden": (16, 0)}, "hidden widths"),
        ({"activation": "swishy"}, "unknown activation 'swishy'; known: relu"),
        ({"kernel_init": "nope"}, "unknown initializer 'nope'; known: glorot_uniform"),
        ({"dropout": 1.0}, "dropout"),
        ({"depth": 3}, "model 'mlp' has no hyperparameter depth"),
    ],
)
def test_bad_model_hyperparameters_are_a_clear_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(model_args=kwargs)


def test_unknown_model_and_bad_registrations_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown model 'resnet'; known: mlp"):
        TrainConfig(model="resnet")
    with pytest.raises(ConfigError, match="inputs must be one of"):
        register_model("bad_form", lambda: mlp(), inputs="images")
    with pytest.raises(ConfigError, match="needs a default"):
        register_model("no_default", lambda width: mlp(), inputs="bag")
    with pytest.raises(ConfigError, match="already registered"):
        register_model("mlp", mlp)
    assert "bad_form" not in MODELS and "no_default" not in MODELS


def test_auto_input_layer_follows_the_measured_rule():
    assert choose_input_layer("auto", 1, "cpu") == "sparse"
    assert choose_input_layer("auto", SPARSE_MAX_MODELS_ON_CPU, "cpu") == "sparse"
    assert choose_input_layer("auto", SPARSE_MAX_MODELS_ON_CPU + 1, "cpu") == "dense"
    assert choose_input_layer("auto", 1, "gpu") == "dense"
    assert choose_input_layer("sparse", 1000, "gpu") == "sparse"
    assert choose_input_layer("auto", 1000, "cpu", ffi_available=True) == "ffi"
    assert choose_input_layer("auto", 1, "gpu", ffi_available=True) == "dense"
    with pytest.raises(ConfigError, match="'ffi' is a CPU kernel"):
        choose_input_layer("ffi", 1, "gpu")
    with pytest.raises(ConfigError, match="unknown input_layer 'csr'"):
        TrainConfig(input_layer="csr")
