"""The worked examples in examples/: models and losses added from user code, trained by run_sweep.

Every test registers under names of its own (and unregisters them after), so the tests run in
any order in one process and never meet another test's compiled programs. The data is tiny and
synthetic; no test needs IMDB.
"""

import dataclasses
import importlib.util
import itertools
import subprocess
import sys
import uuid
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import linen as nn
from helpers import synthetic_reviews

import jaxlab
from jaxlab.losses import binary_crossentropy
from jaxlab.text import pad_sequences
from jaxlab.train import METRICS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = ("bag_of_embeddings", "conv_tokens", "label_smoothing", "bag_model", "tabular")
SEEDS = [0, 1, 2]
NUM_WORDS, MAXLEN = 40, 12


def load_example(name: str):
    """examples/<name>.py as a module (examples/ is not a package)."""
    module_name = f"jaxlab_example_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def unique(prefix: str) -> str:
    return f"test_{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registered():
    """Collects ``(registry, name)`` pairs a test adds; unregisters them when it ends."""
    added: list = []
    yield added
    for registry, name in reversed(added):
        if name in registry:
            registry.unregister(name)


def synthetic_tokens(n: int, seed: int):
    """Pre-padded int32 ``[n, MAXLEN]`` "reviews" (0 = padding) labelled by which half of the
    vocabulary dominates, like helpers.synthetic_reviews."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, NUM_WORDS, size=rng.integers(1, MAXLEN + 4)) for _ in range(n)]
    labels = np.array([np.mean(s < NUM_WORDS // 2) > 0.5 for s in sequences], np.float32)
    return pad_sequences(sequences, MAXLEN), labels


def assert_finite(result: jaxlab.SweepResult, shape: tuple[int, ...]) -> None:
    assert result.shape == shape
    for metric in METRICS:
        assert np.all(np.isfinite(result.histories[metric])), metric
    assert result.diverged_count() == 0


def assert_sweep_equals_fit(result, config, train, validation, learning_rates) -> None:
    """Model (lr, seed) of a per_model sweep run with keep_params is ``fit(lr, seed)``: the
    same histories to 1e-5 and the same final parameters."""
    for (i, rate), (j, seed) in itertools.product(enumerate(learning_rates), enumerate(SEEDS)):
        one = dataclasses.replace(config, learning_rate=rate)
        history, state = jaxlab.fit(one, train, validation, seed=seed, verbose=False)
        for metric in METRICS:
            np.testing.assert_allclose(
                result.histories[metric][i, j], history[metric], rtol=1e-5, err_msg=metric
            )
        params = result.params_of({"learning_rate": rate})
        np.testing.assert_allclose(
            np.concatenate([np.ravel(leaf[j]) for leaf in jax.tree.leaves(params)]),
            np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(state.params)]),
            rtol=1e-5,
            atol=1e-6,
        )


# --- each example through run_sweep ---------------------------------------------------------


def test_bag_of_embeddings_with_a_registered_loss_equals_fit(registered):
    example, smoothing = load_example("bag_of_embeddings"), load_example("label_smoothing")
    model, loss = example.register(unique("boe")), smoothing.register(unique("smoothed"))
    registered += [(jaxlab.MODELS, model), (jaxlab.LOSSES, loss)]
    train, validation = synthetic_tokens(64, seed=0), synthetic_tokens(24, seed=1)
    config = example.make_config(
        model=model, num_words=NUM_WORDS, dim=8, loss=loss, epochs=2, batch_size=16
    )
    rates = [1e-2, 3e-3]
    result = example.sweep(
        train, validation, config=config, learning_rates=rates, verbose=False, keep_params=True
    )
    assert_finite(result, (2, 3))
    assert_sweep_equals_fit(result, config, train, validation, rates)
    # The mean is over real tokens: more padding in front changes no trained logit.
    params = jax.tree.map(lambda leaf: leaf[0], result.params_of({"learning_rate": rates[0]}))
    logits = jax.jit(lambda tokens: config.make_model().apply({"params": params}, tokens))
    tokens = train[0][:8]
    np.testing.assert_allclose(
        logits(np.pad(tokens, ((0, 0), (5, 0)))), logits(tokens), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(jaxlab.ConfigError, match="num_words"):
        example.sweep(train, validation, config=example.make_config(model=model, num_words=10))


def test_conv_tokens_sweep(registered):
    example = load_example("conv_tokens")
    model = example.register(unique("conv"))
    registered.append((jaxlab.MODELS, model))
    train, validation = synthetic_tokens(64, seed=0), synthetic_tokens(24, seed=1)
    config = example.make_config(
        model=model, num_words=NUM_WORDS, dim=8, features=8, kernel=3, epochs=2, batch_size=16
    )
    assert config.scan_epoch is False
    result = example.sweep(train, validation, config=config, verbose=False, keep_params=True)
    assert_finite(result, (2, 3))
    # Padding is neither convolved nor pooled: more of it in front changes no trained logit.
    rate = example.LEARNING_RATES[0]
    params = jax.tree.map(lambda leaf: leaf[0], result.params_of({"learning_rate": rate}))
    logits = jax.jit(lambda params, tokens: config.make_model().apply({"params": params}, tokens))
    tokens = np.pad(train[0][:8], ((0, 0), (5, 0)))
    np.testing.assert_allclose(
        logits(params, tokens), logits(params, train[0][:8]), rtol=1e-5, atol=1e-6
    )
    # Weights that make every real token's filter output negative (relu: 0) and an all-padding
    # window's positive (the bias): pooled features, and so the logits, are 0 only if padding
    # is left out of the max.
    ones = jax.tree.map(np.ones_like, params)
    crafted = {
        "embed": {"embedding": -ones["embed"]["embedding"]},
        "conv": {"kernel": ones["conv"]["kernel"], "bias": 0.5 * ones["conv"]["bias"]},
        "output": {"kernel": ones["output"]["kernel"], "bias": 0 * ones["output"]["bias"]},
    }
    np.testing.assert_array_equal(logits(crafted, tokens), np.zeros(8, np.float32))


def test_label_smoothing_loss_and_sweep(registered):
    example = load_example("label_smoothing")
    loss = example.register(unique("smoothed"))
    registered.append((jaxlab.LOSSES, loss))
    logits, labels = np.array([0.0, 3.0, -2.0], np.float32), np.array([1.0, 1.0, 0.0], np.float32)
    targets = labels * 0.9 + 0.05
    expected = -(targets * np.log(1 / (1 + np.exp(-logits))))
    expected -= (1 - targets) * np.log(1 - 1 / (1 + np.exp(-logits)))
    np.testing.assert_allclose(example.smoothed_bce(logits, labels), expected, rtol=1e-6)
    train, validation = synthetic_reviews(64, 50, seed=0), synthetic_reviews(24, 50, seed=1)
    config = example.make_config(model_args={"hidden": (8,)}, epochs=2, batch_size=16)
    # The example compares both losses; one is enough here (each is a compiled group).
    result = example.sweep(train, validation, config=config, losses=[loss], verbose=False)
    assert_finite(result, (1, 3))


def test_bag_model_with_a_registered_loss_equals_fit(registered):
    example = load_example("bag_model")
    model, loss = example.register(unique("wide_deep"), unique("hinge"))
    registered += [(jaxlab.MODELS, model), (jaxlab.LOSSES, loss)]
    train, validation = synthetic_reviews(64, 50, seed=0), synthetic_reviews(24, 50, seed=1)
    config = example.make_config(model=model, loss=loss, hidden=8, epochs=2, batch_size=16)
    rates = [1e-2, 1e-3]
    result = example.sweep(
        train, validation, config=config, learning_rates=rates, verbose=False, keep_params=True
    )
    assert result.meta["data_order"] == "per_model"
    assert_finite(result, (2, 3))
    assert_sweep_equals_fit(result, config, train, validation, rates)
    assert set(result.params_of({"learning_rate": rates[0]})) == {"wide", "deep", "head"}


def test_tabular_sweep(registered):
    example = load_example("tabular")
    model = example.register(unique("tabular"))
    registered.append((jaxlab.MODELS, model))
    train, validation = example.make_dataset(rows=160, features=8)
    assert train[0].shape == (120, 8) and validation[0].shape == (40, 8)
    config = example.make_config(model=model, hidden=(16,), epochs=2, batch_size=32)
    result = example.sweep(train, validation, config=config, verbose=False, keep_params=True)
    assert_finite(result, (2, 3))
    # A swept dropout rate arrives traced: 0 changes nothing, 0.5 drops units.
    rate = example.LEARNING_RATES[0]
    params = jax.tree.map(lambda leaf: leaf[0], result.params_of({"learning_rate": rate}))
    x = train[0][:8]

    @jax.jit
    def with_dropout(rate):
        module = example.tabular_mlp((16,), rate)
        key = jax.random.key(1)
        return module.apply({"params": params}, x, train=True, rngs={"dropout": key})

    plain = jax.jit(lambda: example.tabular_mlp((16,)).apply({"params": params}, x))()
    np.testing.assert_allclose(with_dropout(0.0), plain, rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_dropout(0.5), plain)


# --- registering losses: what a run uses ----------------------------------------------------


def _first_epoch_loss(model: str, loss: str) -> float:
    """The first epoch's training loss of one full-batch step: the loss at the initial weights."""
    train, validation = load_example("tabular").make_dataset(rows=64, features=6)
    config = load_example("tabular").make_config(
        model=model, loss=loss, hidden=(4,), epochs=1, batch_size=64
    )
    return jaxlab.fit(config, train, validation, seed=0, verbose=False).history["loss"][0]


@pytest.fixture(scope="module")
def loss_a():
    """A model and a loss "A" (binary cross-entropy) of this module, and A's first-epoch loss;
    both tests below start from it (one compiled program less)."""
    model, loss = load_example("tabular").register(unique("tabular")), unique("loss_a")
    jaxlab.register_loss(loss, binary_crossentropy)
    yield model, loss, _first_epoch_loss(model, loss)
    jaxlab.LOSSES.unregister(loss)
    jaxlab.MODELS.unregister(model)


def doubled(logits, labels):
    return 2 * binary_crossentropy(logits, labels)


def test_a_new_loss_never_runs_the_old_program(loss_a, registered):
    model, _, before = loss_a
    loss_b = unique("loss_b")
    jaxlab.register_loss(loss_b, doubled)
    registered.append((jaxlab.LOSSES, loss_b))
    assert _first_epoch_loss(model, loss_b) == pytest.approx(2 * before, rel=1e-6)


def test_a_loss_registered_again_is_the_one_that_runs(loss_a):
    model, loss, before = loss_a
    jaxlab.register_loss(loss, doubled, override=True)
    try:
        assert _first_epoch_loss(model, loss) == pytest.approx(2 * before, rel=1e-6)
    finally:
        jaxlab.register_loss(loss, binary_crossentropy, override=True)


class ZeroLogits(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        return 0.0 * nn.Dense(1)(x)[:, 0]


def test_a_model_registered_again_is_the_one_that_runs(loss_a):
    model, loss, _ = loss_a
    original = jaxlab.MODELS.get(model)
    jaxlab.register_model(model, lambda hidden=(4,): ZeroLogits(), inputs="dense", override=True)
    try:  # logits 0: the loss is log 2 at every example
        assert _first_epoch_loss(model, loss) == pytest.approx(np.log(2), rel=1e-6)
    finally:
        jaxlab.MODELS.register(model, original, override=True)


# --- the scripts ------------------------------------------------------------------------------


def test_every_example_runs_as_a_script():
    """``python examples/<name>.py --help`` exits 0 (the five start at once: imports are slow)."""
    runs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    for name, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, f"{name}: {err}"
        assert "--quick" in out, name
