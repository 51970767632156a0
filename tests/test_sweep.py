"""Sweeps: every vmapped model is the single-model ``fit`` it stands for, on one device or many.

Compilation dominates the cost, so the synthetic sweeps share one configuration (and so their
compiled programs) and are module fixtures that several tests read.
"""

import csv
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import synthetic_reviews

from jaxlab import ConfigError, engine, sparse_multi_hot
from jaxlab import memory as memory_module
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import SweepResult
from jaxlab.train import METRICS, TrainConfig, fit

TESTS = Path(__file__).resolve().parent
DIM = 50
TINY = TrainConfig(model_args={"hidden": (8, 8)}, epochs=3, batch_size=32)
SEEDS = [0, 1, 2, 3, 4]
# Healthy; at the edge (weights overflow to NaN on some seeds; on others every ReLU dies and
# the model sits saturated on the majority label); divergent on every seed.
HEALTHY, EDGE, DIVERGENT = 1e-2, 1e15, 1e20
LEARNING_RATES = [HEALTHY, EDGE, DIVERGENT]


def tiny_data():
    return synthetic_reviews(70, DIM, seed=0), synthetic_reviews(30, DIM, seed=1)


def tiny_sweep(grid, seeds=SEEDS, **kwargs):
    """The synthetic sweep of this module (also run by the multi-device subprocess)."""
    train, validation = tiny_data()
    kwargs = {"data_order": "per_model", "verbose": False, **kwargs}
    return run_sweep(TINY, grid, seeds, train, validation, **kwargs)


def assert_histories_equal(actual, expected, rtol=1e-5):
    for metric in METRICS:
        np.testing.assert_allclose(
            np.asarray(actual[metric], np.float64),
            np.asarray(expected[metric], np.float64),
            rtol=rtol,
            atol=0,
            err_msg=metric,
        )


@pytest.fixture(scope="module")
def lr_sweep():
    return tiny_sweep({"learning_rate": LEARNING_RATES})


@pytest.fixture(scope="module")
def shape_sweep():
    # The (8, 8) group is lr_sweep's program again; only the (4,) group compiles anew.
    return tiny_sweep({"hidden": [(4,), (8, 8)], "learning_rate": LEARNING_RATES})


# --- many devices -----------------------------------------------------------------------------

DEVICE_RUN = """
import json, sys
sys.path.insert(0, {tests!r})
import jax
assert jax.device_count() == {devices}, jax.devices()
from test_sweep import METRICS, HEALTHY, tiny_sweep
result = tiny_sweep({{"learning_rate": [HEALTHY]}})
print(json.dumps({{m: result.histories[m].tolist() for m in METRICS}}))
"""


def start_device_run(devices: int) -> subprocess.Popen:
    """This module's healthy sweep in a fresh process with ``devices`` host devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    code = DEVICE_RUN.format(tests=str(TESTS), devices=devices)
    # Its output is a few kilobytes: the pipes cannot fill up before it is read.
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish_device_run(process: subprocess.Popen) -> dict[str, np.ndarray]:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr.decode()[-3000:]
    histories = json.loads(stdout.decode().strip().splitlines()[-1])
    return {metric: np.asarray(values, np.float64) for metric, values in histories.items()}


@pytest.fixture(scope="module", autouse=True)
def four_device_run(request):
    """Started with the module so that it runs while the other tests compile."""
    test = "test_models_sharded_over_four_devices_train_as_on_one"
    if not any(getattr(item, "originalname", None) == test for item in request.session.items):
        yield None
        return
    process = start_device_run(4)
    yield process
    if process.poll() is None:  # the test did not get to it
        process.kill()
        process.communicate()


# --- the defining equivalence, on the real IMDB -----------------------------------------------

IMDB_BASE = TrainConfig(epochs=3, batch_size=512)
IMDB_GRID = {"kernel_init": ["glorot_uniform", "he_normal"], "learning_rate": [1e-3, 3e-3]}
IMDB_SEEDS = [0, 1]
DATA_SEED = 7


@pytest.fixture(scope="module")
def imdb_subset(imdb):
    (train_seqs, train_labels), (test_seqs, test_labels) = imdb
    rows = np.arange(4000)
    train = sparse_multi_hot(train_seqs.take(rows), 10000), train_labels[rows].astype(np.float32)
    test = sparse_multi_hot(test_seqs.take(rows), 10000), test_labels[rows].astype(np.float32)
    return train, test


@pytest.mark.imdb
@pytest.mark.parametrize("data_order", ["shared", "per_model"])
def test_each_swept_model_is_the_fit_with_its_keys_and_hyperparameters(imdb_subset, data_order):
    train, test = imdb_subset
    result = run_sweep(
        IMDB_BASE,
        IMDB_GRID,
        IMDB_SEEDS,
        train,
        test,
        data_order=data_order,
        data_seed=DATA_SEED,
        verbose=False,
    )
    assert result.names == ["kernel_init", "learning_rate", "seed"]
    assert result.diverged_count() == 0
    # Two models that differ in initializer, learning rate and seed.
    for kernel_init, learning_rate, seed in [("glorot_uniform", 1e-3, 1), ("he_normal", 3e-3, 0)]:
        model_args = {"kernel_init": kernel_init}
        config = dataclasses.replace(IMDB_BASE, model_args=model_args, learning_rate=learning_rate)
        data_seed = DATA_SEED if data_order == "shared" else None
        expected = fit(config, train, test, seed=seed, data_seed=data_seed, verbose=False).history
        index = (
            result.values("kernel_init").index(kernel_init),
            result.values("learning_rate").index(learning_rate),
            result.values("seed").index(seed),
        )
        swept = {metric: result.histories[metric][index] for metric in METRICS}
        assert_histories_equal(swept, expected)


# --- divergence -------------------------------------------------------------------------------


def test_divergent_models_are_flagged_and_left_out_of_the_summary(lr_sweep):
    result = lr_sweep
    assert result.shape == (len(LEARNING_RATES), len(SEEDS))
    assert len(result.seconds) == TINY.epochs  # the sweep ran to the end
    # diverged_epoch is the first epoch whose loss or val_loss is not finite, or the third for
    # a model stuck from its first epoch: loss far above ln 2, accuracy the majority rate.
    loss, accuracy = result.histories["loss"], result.histories["accuracy"]
    bad = ~(np.isfinite(loss) & np.isfinite(result.histories["val_loss"]))
    chance = result.meta["majority_rate"]
    stuck = ~bad.any(axis=-1) & (loss[..., 1:] > 2 * np.log(2)).all(axis=-1)
    stuck &= (accuracy[..., 1:] <= chance + 0.05).all(axis=-1)
    expected = np.where(bad.any(axis=-1), bad.argmax(axis=-1), np.where(stuck, 2, -1))
    np.testing.assert_array_equal(result.diverged_epoch, expected)
    diverged = result.diverged_epoch >= 0
    assert not diverged[0].any() and np.isfinite(loss[0]).all()
    assert diverged[1].all() and diverged[2].all()
    assert 0 < stuck[1].sum() < len(SEEDS), "the edge rate: NaN on some seeds, stuck on others"
    assert result.diverged_count() == diverged.sum()

    rows = {row["learning_rate"]: row for row in result.summary()}
    assert [rows[lr]["seeds"] for lr in LEARNING_RATES] == [len(SEEDS)] * 3
    assert [rows[lr]["diverged"] for lr in LEARNING_RATES] == diverged.sum(axis=1).tolist()
    assert not any(key.endswith("_mean") for key in rows[DIVERGENT])
    assert not any(key.endswith("_mean") for key in rows[EDGE])
    for position, lr in enumerate(LEARNING_RATES[:1]):
        ok = ~diverged[position]
        final_val_loss = result.histories["val_loss"][position, ok, -1]
        peak_val_accuracy = result.histories["val_accuracy"][position, ok].max(axis=-1)
        values = [value for key, value in rows[lr].items() if key.endswith(("_mean", "_std"))]
        assert values and np.isfinite(values).all()
        np.testing.assert_allclose(rows[lr]["final_val_loss_mean"], final_val_loss.mean(), 1e-6)
        np.testing.assert_allclose(rows[lr]["final_val_loss_max"], final_val_loss.max(), 1e-6)
        np.testing.assert_allclose(
            rows[lr]["peak_val_accuracy_mean"], peak_val_accuracy.mean(), 1e-6
        )


# --- memory -----------------------------------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a sweep gets as far as initializing or training a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the sweep went on to initialize or train its models")

    for name in ("compiled_init", "compiled_epoch", "compiled_room", "compiled_evaluate"):
        monkeypatch.setattr(engine, name, refuse)


BIG = TrainConfig(model_args={"hidden": (512, 512)}, epochs=1)
BIG_PARAMS = 10000 * 512 + 512 + 512 * 512 + 512 + 512 + 1


@pytest.mark.parametrize("limited", [True, False], ids=["1GiB", "this_machine"])
def test_a_sweep_too_large_for_memory_is_refused_before_compiling(
    no_training, monkeypatch, limited
):
    seeds = range(2000) if limited else range(100_000)  # 43 GB or 2.2 TB of parameters alone
    if limited:
        monkeypatch.setattr(memory_module, "available_memory", lambda device: 2**30)
    train, validation = synthetic_reviews(20, 10000), synthetic_reviews(10, 10000, seed=1)
    with pytest.raises(ConfigError, match="GiB") as error:
        run_sweep(BIG, {}, seeds, train, validation, verbose=False)
    message = str(error.value)
    assert f"{len(seeds)} models" in message
    needed = float(re.search(r"needs about ([\d.]+) GiB", message).group(1))
    assert needed * 2**30 >= len(seeds) * BIG_PARAMS * 4  # at least the parameters


# --- shape-changing axes ----------------------------------------------------------------------


def test_shape_changing_axes_run_as_compiled_groups(shape_sweep, lr_sweep):
    result = shape_sweep
    assert result.names == ["hidden", "learning_rate", "seed"]
    assert result.shape == (2, len(LEARNING_RATES), len(SEEDS))
    for values in result.histories.values():
        assert values.shape == (*result.shape, TINY.epochs)
    assert [(t["hidden"], t["epoch"], t["models"]) for t in result.timings] == [
        (hidden, epoch, len(LEARNING_RATES) * len(SEEDS))
        for hidden in [(4,), (8, 8)]
        for epoch in range(1, TINY.epochs + 1)
    ]
    assert not (result.diverged_epoch[:, 0] >= 0).any()
    # The (8, 8) group is the base model: the same histories as the sweep without the axis.
    np.testing.assert_array_equal(result.diverged_epoch[1], lr_sweep.diverged_epoch)
    for metric in METRICS:
        np.testing.assert_allclose(result.histories[metric][1], lr_sweep.histories[metric], 1e-5)
    # A model of the (4,) group is the fit of its config.
    config = dataclasses.replace(TINY, model_args={"hidden": (4,)}, learning_rate=HEALTHY)
    train, validation = tiny_data()
    expected = fit(config, train, validation, seed=3, verbose=False).history
    assert_histories_equal(
        {metric: result.histories[metric][0, 0, 3] for metric in METRICS}, expected
    )


# --- results ----------------------------------------------------------------------------------


def test_saved_results_have_every_file_and_load_back(lr_sweep, tmp_path):
    result = lr_sweep
    result.save(tmp_path)
    for name in ("histories.npz", "histories.csv", "summary.csv", "summary.json"):
        assert (tmp_path / name).is_file(), name

    with open(tmp_path / "histories.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["learning_rate", "seed", "epoch", *METRICS, "diverged"]
    assert len(rows) - 1 == len(LEARNING_RATES) * len(SEEDS) * TINY.epochs
    keys = {(float(row[0]), int(row[1]), int(row[2])) for row in rows[1:]}
    assert len(keys) == len(rows) - 1  # one row per model and epoch
    row = next(r for r in rows[1:] if (float(r[0]), int(r[1]), int(r[2])) == (HEALTHY, 3, 2))
    np.testing.assert_allclose(float(row[5]), result.histories["val_loss"][0, 3, 1], 1e-5)
    for row in rows[1:]:
        index = (LEARNING_RATES.index(float(row[0])), SEEDS.index(int(row[1])))
        assert int(row[-1]) == int(result.diverged_epoch[index] >= 0)

    with open(tmp_path / "summary.csv", newline="") as f:
        summary_rows = list(csv.DictReader(f))
    assert [float(row["learning_rate"]) for row in summary_rows] == LEARNING_RATES
    assert [int(row["diverged"]) for row in summary_rows] == [
        row["diverged"] for row in result.summary()
    ]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["meta"]["data_order"] == "per_model"
    assert saved["summary"] == json.loads(json.dumps(result.summary()))

    loaded = SweepResult.load(tmp_path)
    assert loaded.axes == result.axes
    np.testing.assert_array_equal(loaded.diverged_epoch, result.diverged_epoch)
    for metric in METRICS:
        np.testing.assert_array_equal(loaded.histories[metric], result.histories[metric])
    assert loaded.summary() == result.summary()


def test_results_with_tuple_axis_values_load_back(shape_sweep, tmp_path):
    shape_sweep.save(tmp_path)
    loaded = SweepResult.load(tmp_path)
    assert loaded.axes == shape_sweep.axes
    config = {"hidden": (4,), "learning_rate": HEALTHY}
    np.testing.assert_array_equal(loaded.select(config)["loss"], shape_sweep.select(config)["loss"])


def test_curves_are_per_config_seed_by_epoch_arrays(lr_sweep):
    curves = lr_sweep.curves()
    labels = [f"learning_rate={lr}" for lr in LEARNING_RATES]
    assert list(curves) == labels
    for position, label in enumerate(labels):
        assert set(curves[label]) == set(METRICS)
        diverged = lr_sweep.diverged_epoch[position] >= 0
        for metric, values in curves[label].items():
            assert values.shape == (len(SEEDS), TINY.epochs)
            assert np.isnan(values[diverged]).all()
            np.testing.assert_array_equal(
                values[~diverged], lr_sweep.histories[metric][position][~diverged]
            )


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "seeds", "options", "message"),
    [
        ({"momentum": [0.9]}, SEEDS, {}, r"unknown grid axis 'momentum'.*sweepable: .*rho"),
        ({"epochs": [1, 2]}, SEEDS, {}, r"unknown grid axis 'epochs'.*learning_rate"),
        ({"learning_rate": []}, SEEDS, {}, r"'learning_rate' needs a non-empty list"),
        ({"learning_rate": 0.1}, SEEDS, {}, r"'learning_rate' needs a non-empty list"),
        ({}, [0, 1, 0], {}, r"without repeats"),
        ({}, [], {}, r"non-empty"),
        ({"seed": [0, 1]}, SEEDS, {}, r"seeds are given separately"),
        ({}, SEEDS, {"data_order": "random"}, r"data_order must be one of"),
        ({"learning_rate": [1e-3, -1.0]}, SEEDS, {}, r"learning_rate must be positive"),
        ({"kernel_init": ["glorot_uniform", "nope"]}, SEEDS, {}, r"unknown initializer 'nope'"),
        ({"activation": ["relu", "nope"]}, SEEDS, {}, r"unknown activation 'nope'"),
        ({"dropout": [0.5, 1.0]}, SEEDS, {}, r"dropout must be in \[0, 1\)"),
        ({"l2": [-1e-3]}, SEEDS, {}, r"l2 must be >= 0"),
        ({"hidden": [(4,), (0,)]}, SEEDS, {}, r"hidden widths must be positive"),
        ({"batch_size": [32, 0]}, SEEDS, {}, r"batch_size must be a positive integer"),
        ({"optimizer": ["sgd", "nope"]}, SEEDS, {}, r"unknown optimizer 'nope'"),
        (
            {"optimizer": ["rmsprop", "sgd"], "rho": [0.9]},
            SEEDS,
            {},
            r"'rho' for model 'mlp' and optimizer 'sgd'",
        ),
        ({"learning_rate": [None, 1e-3]}, SEEDS, {}, r"'learning_rate' has None"),
        ({"learning_rate": [1e-3, 0.001]}, SEEDS, {}, r"'learning_rate' repeats a value"),
        ({"kernel_init": ["he_normal", "he_normal"]}, SEEDS, {}, r"repeats a value"),
        ({"learning_rate": [1e-3]}, [0.5, 1], {}, r"seeds must be integers"),
    ],
    ids=[
        "unknown-axis",
        "unsweepable-field",
        "empty-values",
        "not-a-list",
        "repeated-seeds",
        "no-seeds",
        "seed-axis",
        "data-order",
        "learning-rate",
        "kernel-init",
        "activation",
        "dropout",
        "l2",
        "hidden",
        "batch-size",
        "optimizer",
        "axis-of-another-optimizer",
        "none-value",
        "repeated-value",
        "repeated-name",
        "float-seeds",
    ],
)
def test_bad_input_is_a_config_error_before_any_training(
    no_training, grid, seeds, options, message
):
    train, validation = tiny_data()
    with pytest.raises(ConfigError, match=message):
        run_sweep(TINY, grid, seeds, train, validation, verbose=False, **options)


def test_numpy_grid_values_are_accepted_and_activation_is_vmapped():
    """An activation axis runs in one program; each model equals the fit with its activation."""
    train, validation = tiny_data()
    grid = {"activation": ["relu", "tanh"], "dropout": np.array([0.0, 0.5])}
    result = run_sweep(TINY, grid, [0, 1], train, validation, verbose=False)
    assert result.values("dropout") == [0.0, 0.5] and len(result.timings) == TINY.epochs
    config = dataclasses.replace(
        TINY, model_args=dict(TINY.model_args) | {"activation": "tanh", "dropout": 0.5}
    )
    expected = fit(config, train, validation, seed=1, data_seed=0, verbose=False).history
    chosen = result.select({"activation": "tanh", "dropout": 0.5})
    assert_histories_equal({m: chosen[m][1] for m in METRICS}, expected)


# Last, so that its subprocess (started with the module) has run alongside the other tests.
def test_models_sharded_over_four_devices_train_as_on_one(four_device_run, request):
    # 5 models on 4 devices: the models axis is padded to 8, two per device.
    if jax.default_backend() == "cpu" and jax.device_count() == 1:
        one = request.getfixturevalue("lr_sweep")
        reference = {metric: one.histories[metric][:1] for metric in METRICS}
    else:
        reference = finish_device_run(start_device_run(1))
    sharded = finish_device_run(four_device_run)
    assert sharded["loss"].shape == (1, len(SEEDS), TINY.epochs)
    assert np.isfinite(sharded["loss"]).all()
    assert_histories_equal(sharded, reference)
