"""Every registry entry through every public entry point: each optimizer, model and loss
(built-in and user-registered) trains through ``fit`` and ``run_sweep``, and each optimizer
through ``imdb_baseline.py``; a swept model equals ``fit`` with its seed and values."""

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import synthetic_reviews

from jaxlab import (
    LOSSES,
    MODELS,
    OPTIMIZERS,
    BagDense,
    TrainConfig,
    fit,
    register_loss,
    register_model,
    register_optimizer,
    run_sweep,
)
from jaxlab.losses import binary_crossentropy

DIM = 30


# User-registered entries, one of each kind, as a user's module would add them.
@register_optimizer("user_sign_sgd", override=True)
def user_sign_sgd(learning_rate: float = 0.01, total_steps: int = 1):
    schedule = optax.linear_schedule(learning_rate, learning_rate / 10, total_steps)
    return optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(schedule))


@register_loss("user_scaled_bce", override=True)
def user_scaled_bce(logits, labels):
    return 0.5 * binary_crossentropy(logits, labels)


class UserBag(nn.Module):
    width: int = 4

    @nn.compact
    def __call__(self, x, *, train=False):
        x = nn.tanh(BagDense(self.width, name="words")(x))
        return nn.Dense(1, name="head")(nn.LayerNorm(name="norm")(x))[:, 0]


class UserTokens(nn.Module):
    @nn.compact
    def __call__(self, tokens, *, train=False):
        mask = (tokens > 0)[..., None]
        embedded = nn.Embed(DIM, 4, name="embed")(tokens) * mask
        pooled = embedded.sum(1) / jnp.maximum(mask.sum(1), 1)
        return nn.Dense(1, name="head")(pooled)[:, 0]


class UserDense(nn.Module):
    classes: int = 1

    @nn.compact
    def __call__(self, x, *, train=False):
        logits = nn.Dense(self.classes, name="out")(nn.relu(nn.Dense(8, name="hid")(x)))
        return logits[:, 0] if self.classes == 1 else logits


register_model("user_bag", lambda width=4: UserBag(width), inputs="bag", override=True)
register_model("user_tokens", lambda: UserTokens(), inputs="tokens", override=True)
register_model("user_dense", lambda classes=1: UserDense(classes), inputs="dense", override=True)


def data_for(form: str, n: int, seed: int):
    x, y = synthetic_reviews(n, DIM, seed=seed, max_len=8)
    if form == "bag":
        return x, y
    if form == "dense":
        return x.to_dense(), y
    tokens = np.zeros((n, 8), np.int32)
    for row in range(n):
        words = x.indices[x.offsets[row] : x.offsets[row + 1]]
        tokens[row, : len(words)] = words
    return tokens, y


def splits(form: str):
    return data_for(form, 40, 0), data_for(form, 20, 1)


def sweep_and_fit(config, rates, seeds, train, val):
    """A sweep over learning rates with per-model data orders, checked against ``fit`` of its
    last model (rate and seed); returns the sweep."""
    result = run_sweep(
        config, {"learning_rate": rates}, seeds, train, val, data_order="per_model", verbose=False
    )
    assert np.isfinite(result.histories["loss"]).all()
    assert np.isfinite(result.histories["val_loss"]).all()
    single = dataclasses.replace(config, learning_rate=rates[-1])
    history = fit(single, train, val, seed=seeds[-1], verbose=False).history
    for metric in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(
            result.histories[metric][-1, -1], history[metric], rtol=1e-5, atol=1e-6
        )
    return result


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains_through_fit_and_run_sweep(name):
    config = TrainConfig(optimizer=name, model_args={"hidden": (4,)}, epochs=2, batch_size=16)
    rate = config.hyperparameters()["learning_rate"]
    sweep_and_fit(config, [rate, rate / 3], [0, 1], *splits("bag"))


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_trains_through_fit_and_run_sweep(name):
    spec = MODELS.get(name)
    config = TrainConfig(model=name, epochs=2, batch_size=16)
    if name == "mlp":
        config = TrainConfig(model_args={"hidden": (4,)}, epochs=2, batch_size=16)
    result = sweep_and_fit(config, [3e-3, 1e-2], [0, 1, 2], *splits(spec.inputs))
    loss = result.histories["loss"]
    assert (loss[..., -1] < loss[..., 0]).all()


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains_through_fit_and_run_sweep(name):
    integer = LOSSES.get(name).label_dtype == "int32"
    model_args = {"classes": 2} if integer else {}
    config = TrainConfig(
        model="user_dense", model_args=model_args, loss=name, epochs=2, batch_size=16
    )
    result = sweep_and_fit(config, [3e-3, 1e-2], [0, 1], *splits("dense"))
    accuracy, loss = result.histories["val_accuracy"], result.histories["loss"]
    assert ((accuracy >= 0) & (accuracy <= 1)).all()
    assert loss[..., -1].mean() < loss[..., 0].mean()


def test_a_schedule_gets_the_run_total_steps_and_the_user_loss_scales():
    train, val = splits("bag")
    config = TrainConfig(model_args={"hidden": (4,)}, epochs=2, batch_size=16)
    half = fit(
        TrainConfig(model_args={"hidden": (4,)}, epochs=2, batch_size=16, loss="user_scaled_bce"),
        train,
        val,
        verbose=False,
    ).history
    full = fit(config, train, val, verbose=False).history
    assert half["val_loss"][0] != pytest.approx(full["val_loss"][0], rel=1e-3)
    assert half["loss"][0] == pytest.approx(full["loss"][0] / 2, rel=1e-2)


@pytest.mark.imdb
@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_runs_in_the_baseline_script(
    name, baseline, imdb_dir, imdb_cache, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("JAXLAB_CACHE_DIR", str(imdb_cache))
    args = baseline.build_parser().parse_args(
        ["--optimizer", name, "--epochs", "1", "--train-size", "300", "--hidden", "4", "--quiet"]
        + ["--data-dir", str(imdb_dir), "--out", str(tmp_path)]
    )
    baseline.main(args)
    table = capsys.readouterr().out.split("| seed |")[1]
    assert "| 0 |" in table and "nan" not in table


def test_validation_uses_the_optimizers_eval_params():
    """A schedule-free optimizer is judged at its evaluation point: with eval_params naming
    optax's, validation differs from the training point's; a zeroing eval_params gives the
    untrained logit 0 (loss log 2) whatever was learned."""
    train, val = splits("bag")
    zeroed = "user_eval_zero"

    @register_optimizer(zeroed, eval_params=lambda params, state: optax.tree.zeros_like(params))
    def zero_at_eval(learning_rate: float = 1e-2):
        return optax.sgd(learning_rate)

    @register_optimizer("user_schedule_free", override=True)
    def plain(learning_rate: float = 1e-2):
        return optax.contrib.schedule_free_adamw(learning_rate)

    @register_optimizer(
        "user_schedule_free_eval",
        override=True,
        eval_params=lambda params, state: optax.contrib.schedule_free_eval_params(state, params),
    )
    def judged(learning_rate: float = 1e-2):
        return optax.contrib.schedule_free_adamw(learning_rate)

    try:
        base = {"model_args": {"hidden": (4,)}, "epochs": 2, "batch_size": 16}
        history = fit(TrainConfig(optimizer=zeroed, **base), train, val, verbose=False).history
        np.testing.assert_allclose(history["val_loss"], np.log(2), rtol=1e-6)
        assert history["loss"][-1] != pytest.approx(np.log(2), rel=1e-3)
        at_y, at_x = (
            fit(TrainConfig(optimizer=name, **base), train, val, verbose=False).history
            for name in ("user_schedule_free", "user_schedule_free_eval")
        )
        assert at_y["loss"] == at_x["loss"]  # the same training
        assert at_y["val_loss"] != at_x["val_loss"]  # judged at another point
    finally:
        for name in (zeroed, "user_schedule_free", "user_schedule_free_eval"):
            OPTIMIZERS.unregister(name)


def test_an_optimizer_registered_again_is_the_one_that_runs():
    train, val = splits("bag")
    name = "user_overridden_sgd"
    register_optimizer(name, lambda learning_rate=0.1: optax.sgd(learning_rate), override=True)
    try:
        config = TrainConfig(optimizer=name, model_args={"hidden": (4,)}, epochs=2, batch_size=16)
        moving = fit(config, train, val, verbose=False).history["val_loss"]
        assert moving[0] != moving[1]
        register_optimizer(name, lambda learning_rate=0.1: optax.sgd(0.0), override=True)
        frozen = fit(config, train, val, verbose=False).history["val_loss"]
        assert frozen[0] == frozen[1]  # the new factory's (no steps), not the compiled old one
    finally:
        OPTIMIZERS.unregister(name)
