"""The optimizer registry: every entry (user-registered ones included) trains, sweeps and keeps
dtypes; the Keras-3 entries follow Keras 3's update rules; the docs table matches the code."""

import functools
import importlib.util
import re
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.errors import ConfigError
from jaxlab.optim import OPTIMIZERS, make_optimizer, optimizer_defaults, register_optimizer

REPO = Path(__file__).resolve().parents[1]


def import_example() -> types.ModuleType:
    """examples/custom_optimizer.py, imported once by path as ``--import`` does it."""
    name = "custom_optimizer"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "examples/custom_optimizer.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


import_example()
NAMES = OPTIMIZERS.names()
BUILT_IN = [name for name in NAMES if OPTIMIZERS.get(name).__module__ == "jaxlab.optim"]

# A quadratic bowl, 0.5 * sum(c * w^2), with its minimum at 0.
CURVATURE = jnp.array([1.0, 2.0, 0.5])
START = jnp.array([1.0, -2.0, 0.5])


def loss(w: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum(CURVATURE * w**2)


grad_loss = jax.jit(jax.grad(loss))


def descend(optimizer: optax.GradientTransformation, state, params, steps: int):
    """``steps`` gradient steps on the quadratic; the final parameters."""
    for _ in range(steps):
        updates, state = optimizer.update(grad_loss(params), state, params)
        params = optax.apply_updates(params, updates)
    return params


@functools.partial(jax.jit, static_argnums=(0, 3))
def descend_compiled(optimizer: optax.GradientTransformation, state, params, steps: int):
    """``descend`` as one compiled ``lax.scan``, for long runs."""

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(grad_loss(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, state), None, length=steps)
    return params


def with_learning_rate(state, learning_rate):
    """The ``inject_hyperparams`` state with a new learning rate written into it."""
    return state._replace(hyperparams={**state.hyperparams, "learning_rate": learning_rate})


# --- every registered optimizer ---


def test_the_issue_optimizers_and_the_example_are_registered():
    expected = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_keras2"}
    expected |= {"adam", "adamw", "nadam", "lion", "signum"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
    optimizer = make_optimizer(name, learning_rate=0.1)
    final = descend_compiled(optimizer, optimizer.init(START), START, 300)
    assert loss(final) < 0.01 * loss(START)


@pytest.mark.parametrize("name", NAMES)
def test_learning_rate_in_the_state_drives_the_update(name):
    optimizer = make_optimizer(name, learning_rate=0.01)
    grads = grad_loss(START)
    state = optimizer.init(START)
    updates, _ = optimizer.update(grads, state, START)
    changed, _ = optimizer.update(grads, with_learning_rate(state, jnp.float32(0.1)), START)
    rebuilt = make_optimizer(name, learning_rate=0.1)
    expected, _ = rebuilt.update(grads, rebuilt.init(START), START)
    assert not np.allclose(changed, updates)
    np.testing.assert_allclose(changed, expected, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_learning_rates_equals_single_runs(name):
    learning_rates = [0.003, 0.01, 0.03]
    optimizer = make_optimizer(name)

    def sweep_member(learning_rate):
        state = with_learning_rate(optimizer.init(START), learning_rate)
        return descend(optimizer, state, START, 4)

    swept = jax.jit(jax.vmap(sweep_member))(jnp.array(learning_rates))
    for i, learning_rate in enumerate(learning_rates):
        single = make_optimizer(name, learning_rate=learning_rate)
        np.testing.assert_allclose(
            swept[i], descend(single, single.init(START), START, 4), rtol=1e-5
        )


@pytest.mark.parametrize("name", NAMES)
def test_keeps_parameter_dtypes(name):
    params = {"f32": START, "bf16": START.astype(jnp.bfloat16)}
    dtypes = jax.tree.map(lambda p: p.dtype, params)
    optimizer = make_optimizer(name)
    state = optimizer.init(params)
    state_dtypes = jax.tree.map(lambda leaf: leaf.dtype, state)
    for _ in range(2):
        grads = jax.tree.map(lambda p: (0.5 * p).astype(p.dtype), params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        assert jax.tree.map(lambda u: u.dtype, updates) == dtypes
        assert jax.tree.map(lambda p: p.dtype, params) == dtypes
        # A state that changed dtype would break lax.scan carries and recompile jitted steps.
        assert jax.tree.map(lambda leaf: leaf.dtype, state) == state_dtypes


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_parameters_get_float32_hyperparameters(name):
    """In bfloat16, beta_2=0.999 would round to 1.0 and Adam's bias correction divide by 0."""
    params = START.astype(jnp.bfloat16)
    optimizer = make_optimizer(name)
    state = optimizer.init(params)
    assert {h.dtype for h in state.hyperparams.values()} == {jnp.dtype(jnp.float32)}
    updates, _ = optimizer.update(params, state, params)
    assert updates.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(updates, np.float32)))
    assert np.any(np.asarray(updates, np.float32) != 0)


# --- Keras 3's update rules (keras/src/optimizers/*.py, update_step), in float64 NumPy ---


def keras_sgd(w, grads, learning_rate, momentum=0.0, nesterov=False):
    m = np.zeros_like(w)
    for g in grads:
        if momentum == 0:
            w = w - learning_rate * g
        else:
            m = momentum * m - learning_rate * g
            w = w + (momentum * m - learning_rate * g if nesterov else m)
    return w


def keras_adagrad(w, grads, learning_rate, initial_accumulator_value, epsilon):
    accumulator = np.full_like(w, initial_accumulator_value)
    for g in grads:
        accumulator = accumulator + g**2
        w = w - learning_rate * g / np.sqrt(accumulator + epsilon)
    return w


def keras_rmsprop(w, grads, learning_rate, rho, epsilon):
    v = np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g**2
        w = w - learning_rate * g / np.sqrt(v + epsilon)
    return w


def keras2_rmsprop(w, grads, learning_rate, rho, epsilon):
    """Keras 2.0.8: epsilon outside the square root."""
    v = np.zeros_like(w)
    for g in grads:
        v = rho * v + (1 - rho) * g**2
        w = w - learning_rate * g / (np.sqrt(v) + epsilon)
    return w


def keras_adamw(w, grads, learning_rate, beta_1, beta_2, epsilon, weight_decay=0.0):
    m = v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w - w * weight_decay * learning_rate
        alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g**2 - v) * (1 - beta_2)
        w = w - m * alpha / (np.sqrt(v) + epsilon)
    return w


def keras_nadam(w, grads, learning_rate, beta_1, beta_2, epsilon):
    m = v = np.zeros_like(w)
    u_product = 1.0
    for t, g in enumerate(grads, start=1):
        u_t = beta_1 * (1 - 0.5 * 0.96**t)
        u_next = beta_1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product = u_product * u_t
        m = m + (g - m) * (1 - beta_1)
        v = v + (g**2 - v) * (1 - beta_2)
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
        w = w - m_hat * learning_rate / (np.sqrt(v / (1 - beta_2**t)) + epsilon)
    return w


def keras_lion(w, grads, learning_rate, beta_1, beta_2):
    m = np.zeros_like(w)
    for g in grads:
        w = w - learning_rate * np.sign(m * beta_1 + g * (1 - beta_1))
        m = m * beta_2 + g * (1 - beta_2)
    return w


KERAS_RULES = {
    "sgd": keras_sgd,
    "momentum": keras_sgd,
    "nesterov": functools.partial(keras_sgd, nesterov=True),
    "adagrad": keras_adagrad,
    "rmsprop": keras_rmsprop,
    "rmsprop_keras2": keras2_rmsprop,
    "adam": keras_adamw,
    "adamw": keras_adamw,
    "nadam": keras_nadam,
    "lion": keras_lion,
}
# Non-default values that make every term count: small gradients against a large epsilon is
# where optax's and Keras's epsilon placements part.
LOUD = {"learning_rate": 0.1, "epsilon": 1e-3, "rho": 0.8, "beta_2": 0.99, "momentum": 0.7}


def test_every_built_in_optimizer_has_a_keras_rule():
    assert set(KERAS_RULES) == set(BUILT_IN)


@pytest.mark.parametrize("loud", [False, True], ids=["defaults", "loud"])
@pytest.mark.parametrize("name", list(KERAS_RULES))
def test_matches_keras_3_update_rule(name, loud):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=START.size).astype(np.float32)
    grads = [(1e-3 * rng.normal(size=START.size)).astype(np.float32) for _ in range(8)]
    hyperparameters = optimizer_defaults(name)
    if loud:
        hyperparameters |= {k: v for k, v in LOUD.items() if k in hyperparameters}

    expected = KERAS_RULES[name](w0.astype(np.float64), grads, **hyperparameters)
    optimizer = make_optimizer(name, **hyperparameters)
    params, state = jnp.asarray(w0), optimizer.init(jnp.asarray(w0))
    for g in grads:
        updates, state = optimizer.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params, expected, rtol=1e-6, atol=1e-7)


def test_optax_adam_is_not_keras_adam():
    """Why adam is jaxlab's own: optax.adam with Keras's epsilon fails the Keras comparison."""
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=START.size).astype(np.float32)
    grads = [(1e-3 * rng.normal(size=START.size)).astype(np.float32) for _ in range(8)]
    hyperparameters = optimizer_defaults("adam") | {"epsilon": 1e-3, "learning_rate": 0.1}
    expected = keras_adamw(w0.astype(np.float64), grads, **hyperparameters)
    optimizer = optax.adam(0.1, eps=1e-3)
    params, state = jnp.asarray(w0), optimizer.init(jnp.asarray(w0))
    for g in grads:
        updates, state = optimizer.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)
    assert not np.allclose(params - w0, expected - w0, rtol=1e-2)


# --- registration and errors ---


@pytest.fixture
def scratch_names():
    """Names a test registers; removed afterwards so the registry stays as it was."""
    names: list[str] = []
    yield names
    for name in names:
        if name in OPTIMIZERS:
            OPTIMIZERS.unregister(name)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown optimizer 'adamm'") as error:
        make_optimizer("adamm")
    for name in NAMES:
        assert name in str(error.value)


def test_registering_a_name_twice_needs_override(scratch_names):
    scratch_names.append("twice")
    register_optimizer("twice", lambda learning_rate=0.1: optax.sgd(learning_rate))
    with pytest.raises(ConfigError, match="already registered; pass override=True"):
        register_optimizer("twice", lambda learning_rate=0.2: optax.sgd(learning_rate))
    assert optimizer_defaults("twice") == {"learning_rate": 0.1}
    register_optimizer("twice", lambda learning_rate=0.2: optax.sgd(learning_rate), override=True)
    assert optimizer_defaults("twice") == {"learning_rate": 0.2}
    with pytest.raises(ConfigError, match="already registered"):
        register_optimizer("sgd", lambda learning_rate=0.1: optax.sgd(learning_rate))


def test_unregistering_forgets_what_was_kept_about_an_optimizer(scratch_names):
    from jaxlab import optim

    scratch_names.append("kept")
    register_optimizer(
        "kept", lambda learning_rate=0.1, beta=0.5: optax.sgd(learning_rate, momentum=beta),
        eval_params=lambda params, opt_state: params, ranges={"beta": "[0, 1)"}, family="plain",
    )  # fmt: skip
    assert all("kept" in kept for kept in (optim.EVAL_PARAMS, optim.RANGES, optim.FAMILIES))
    OPTIMIZERS.unregister("kept")
    assert not any("kept" in kept for kept in (optim.EVAL_PARAMS, optim.RANGES, optim.FAMILIES))


def test_a_factory_must_return_a_gradient_transformation(scratch_names):
    scratch_names.append("not_optax")
    with pytest.raises(ConfigError, match="returned tuple, not an optax.GradientTransformation"):
        register_optimizer("not_optax", lambda learning_rate=0.1: (learning_rate,))
    assert "not_optax" not in OPTIMIZERS


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda learning_rate: optax.sgd(learning_rate), "needs a default value"),
        (lambda lr=0.1: optax.sgd(lr), "must take learning_rate"),
        ("sgd", "must be callable"),
    ],
)
def test_unfit_factories_are_rejected(scratch_names, factory, message):
    scratch_names.append("unfit")
    with pytest.raises(ConfigError, match=message):
        register_optimizer("unfit", factory)


def test_decorator_registration_returns_the_factory(scratch_names):
    scratch_names.append("decorated")

    @register_optimizer("decorated")
    def decorated(learning_rate: float = 0.5) -> optax.GradientTransformation:
        return optax.sgd(learning_rate)

    assert OPTIMIZERS.get("decorated") is decorated
    assert make_optimizer("decorated").init(START).hyperparams["learning_rate"] == 0.5


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ConfigError, match="has no hyperparameter momentum; it takes"):
        make_optimizer("adam", momentum=0.9)
    with pytest.raises(ConfigError, match="learning_rate must be positive"):
        make_optimizer("sgd", learning_rate=0.0)


# --- docs/optimizers.md ---

DOC = (REPO / "docs/optimizers.md").read_text()


def doc_table() -> dict[str, dict[str, str]]:
    """The defaults table: optimizer name -> {column header: cell}."""
    lines = [line for line in DOC.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def parse_defaults(cell: str) -> dict[str, float]:
    """``"`learning_rate=0.01, momentum=0.9`"`` -> ``{"learning_rate": 0.01, "momentum": 0.9}``."""
    pairs = (item.split("=") for item in cell.strip("`").split(", "))
    return {key: float(value) for key, value in pairs}


def test_docs_table_lists_every_built_in_optimizer():
    assert list(doc_table()) == BUILT_IN


@pytest.mark.parametrize("name", BUILT_IN)
def test_docs_table_jaxlab_column_is_the_code(name):
    assert parse_defaults(doc_table()[name]["jaxlab"]) == optimizer_defaults(name)


@pytest.mark.parametrize("name", BUILT_IN)
def test_docs_table_keras_column_agrees_where_jaxlab_follows_keras(name):
    """Every jaxlab default appears with the same value in the Keras 3 column."""
    keras = doc_table()[name]["Keras 3"].replace("lr=", "learning_rate=")
    for key, value in optimizer_defaults(name).items():
        found = re.search(rf"\b{key}=([-+.\de]+)", keras)
        assert found, f"{name}: Keras column lacks {key}"
        assert float(found.group(1)) == value


def test_docs_adding_an_optimizer_example_runs(scratch_names):
    section = DOC.split("## Adding an optimizer", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    scratch_names.append("clipped_sgd")
    namespace: dict = {}
    exec(code, namespace)
    assert "clipped_sgd" in OPTIMIZERS
    assert isinstance(namespace["optimizer"], optax.GradientTransformation)
