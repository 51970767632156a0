"""Hardening, items 3 and 4: divergence is flagged (a NaN loss, or a model stuck at the clipped
loss at chance accuracy) in sweeps, ``fit`` and the baseline script; infinite learning rates
and L2 factors and seeds jax.random.key cannot tell apart are refused; sizes whose histories or
models cannot fit in memory are refused before anything is allocated."""

import dataclasses
import glob
import math
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from helpers import synthetic_reviews

from jaxlab import ConfigError, engine, sparse_multi_hot, sweep_results
from jaxlab import memory as memory_module
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import METRICS, SweepResult
from jaxlab.train import TrainConfig, fit


def balanced_reviews(n: int, dim: int = 200, seed: int = 0):
    """Random reviews, half of them positive: three words from the lower half of the
    vocabulary make a review negative, from the upper half positive."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rows = [
        np.r_[
            rng.integers(1, dim, rng.integers(3, 12)), rng.integers(1, dim // 2, 3) + dim // 2 * y
        ]
        for y in labels
    ]
    return sparse_multi_hot([row.tolist() for row in rows], dim), labels.astype(np.float32)


SMALL = TrainConfig(model_args={"hidden": (8,)}, epochs=4, batch_size=50)
HEALTHY, STUCK, NAN = 1e-3, 10.0, 1e30  # rmsprop on balanced_reviews: learns, sticks, NaN


@pytest.fixture(scope="module")
def data():
    return balanced_reviews(400), balanced_reviews(100, seed=1)


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if anything gets as far as allocating histories or building models."""

    def refuse(*args, **kwargs):
        raise AssertionError("went on to allocate histories or initialize models")

    for name in ("compiled_init", "compiled_epoch", "compiled_room", "compiled_evaluate"):
        monkeypatch.setattr(engine, name, refuse)
    monkeypatch.setattr(SweepResult, "empty", classmethod(refuse))


# --- 3. divergence --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": math.inf}, "learning_rate must be positive and finite"),
        ({"learning_rate": math.nan}, "learning_rate must be positive and finite"),
        ({"learning_rate": 1e39}, "learning_rate must be positive and finite"),  # inf in float32
        ({"learning_rate": "0.1"}, "learning_rate must be positive and finite"),
        ({"l2": math.inf}, "l2 must be >= 0 and finite"),
        ({"l2": math.nan}, "l2 must be >= 0 and finite"),
        ({"l2": 1e39}, "l2 must be >= 0 and finite"),
    ],
)
def test_infinite_learning_rates_and_l2_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message) as error:
        TrainConfig(**changes)
    assert len(str(error.value).splitlines()) == 1


def test_an_infinite_grid_value_is_refused_before_training(no_training):
    train = synthetic_reviews(20)
    for grid in ({"learning_rate": [1e-3, math.inf]}, {"l2": [0.0, math.inf]}):
        with pytest.raises(ConfigError, match="must be .* finite"):
            run_sweep(SMALL, grid, [0], train, train, verbose=False)


# Measured on IMDB (25,000 reviews, the lesson's network, 2 seeds): [loss, accuracy] by epoch.
RUNS = {
    "rmsprop at 10, stuck at the clipped loss": (
        [7.92, 8.059, 8.059, 8.059],
        [0.499, 0.5] + [0.5] * 2,
    ),
    "stuck below chance": ([7.826, 9.026, 9.026, 9.026], [0.458, 0.44, 0.44, 0.44]),
    "sgd at 1e-4, slow": ([0.6934, 0.6932, 0.6931, 0.6929], [0.5, 0.51, 0.515, 0.52]),
    "zero initialization": ([0.6931] * 4, [0.4984] * 4),
    "normal(1) initialization": ([7.08, 6.6, 6.01, 5.8], [0.506, 0.53, 0.555, 0.57]),
    "rmsprop at 0.1, settling": ([1.276, 0.738, 0.694, 0.621], [0.51, 0.503, 0.5, 0.625]),
}


@pytest.mark.parametrize("name", RUNS)
def test_only_models_stuck_above_the_uninformed_loss_at_chance_diverge(name):
    loss, accuracy = RUNS[name]
    history = {"loss": loss, "accuracy": accuracy, "val_loss": loss}
    flagged = [
        e for e in range(len(loss)) if sweep_results.diverges_at(history, e, "binary_crossentropy")
    ]
    assert flagged[:1] == ([2] if "stuck" in name else [])
    # Without an uninformed loss to compare with, only a non-finite loss diverges.
    assert not any(
        sweep_results.diverges_at(history, e, "softmax_cross_entropy") for e in range(len(loss))
    )
    history["val_loss"] = [*loss[:1], math.nan, *loss[2:]]
    assert sweep_results.diverges_at(history, 1, "softmax_cross_entropy")


def test_a_model_stuck_on_the_majority_label_diverges_at_that_chance():
    """90% positive labels: saturated on "positive", a model scores 0.9 with a loss near
    0.1 * 16.1; judged against 0.5 it would pass for a learner."""
    history = {"loss": [1.61, 1.612, 1.611, 1.611], "accuracy": [0.9] * 4}
    history["val_loss"] = history["loss"]
    flagged = [
        e
        for e in range(4)
        if sweep_results.diverges_at(history, e, "binary_crossentropy", chance=0.9)
    ]
    assert flagged[:1] == [2]
    assert not any(sweep_results.diverges_at(history, e, "binary_crossentropy") for e in range(4))
    # A slow learner on the same labels, near ln 2 at first, is not stuck.
    slow = {"loss": [0.69, 0.689, 0.688, 0.687], "accuracy": [0.9] * 4}
    slow["val_loss"] = slow["loss"]
    assert not any(
        sweep_results.diverges_at(slow, e, "binary_crossentropy", chance=0.9) for e in range(4)
    )


def test_a_sweep_judges_chance_by_its_training_labels():
    inputs, labels = synthetic_reviews(40)
    labels = np.r_[np.ones(36), np.zeros(4)].astype(np.float32)  # 90% positive
    assert sweep_results.majority_rate(labels) == 0.9
    assert sweep_results.majority_rate(1 - labels) == 0.9
    result = SweepResult.empty(SMALL, {}, [0], "shared", 0)
    result.meta["majority_rate"] = 0.9
    stuck = {"loss": [1.61, 1.612, 1.611], "accuracy": [0.9] * 3}
    for epoch in range(3):
        metrics = {m: np.asarray([stuck.get(m, stuck["loss"])[epoch]]) for m in METRICS}
        result.record({}, {}, epoch, metrics)
    assert result.diverged_epoch.item() == 2
    trained = run_sweep(SMALL, {}, [0], (inputs, labels), (inputs, labels), verbose=False)
    assert trained.meta["majority_rate"] == 0.9


def test_no_model_of_the_saved_lesson_runs_is_newly_diverged():
    """The lesson's verdicts rest on which models diverged: the runs in docs/lesson-report
    (every script, all optimizers at 1/10, 1 and 10 times their default rate, learning rates
    1e-4 to 1e-1) have the same diverged models under the rule as when they were made."""
    folders = sorted(
        Path(p).parent for p in glob.glob(str(REPO / "docs/**/histories.npz"), recursive=True)
    )
    assert len(folders) >= 15
    for folder in folders:
        result = SweepResult.load(folder)
        for index in np.ndindex(*result.shape):
            history = {metric: result.histories[metric][index] for metric in METRICS}
            epochs = range(len(history["loss"]))
            chance = result.meta.get("majority_rate", 0.5)
            epochs = [
                e
                for e in epochs
                if sweep_results.diverges_at(history, e, "binary_crossentropy", chance)
            ]
            assert (epochs[0] if epochs else -1) == result.diverged_epoch[index], (folder, index)


def test_a_sweep_flags_nan_and_stuck_models_and_leaves_them_out(data):
    rates = [HEALTHY, STUCK, NAN]
    result = run_sweep(SMALL, {"learning_rate": rates}, [0, 1], *data, verbose=False)
    diverged = result.diverged_epoch
    assert (diverged[0] == -1).all()
    assert (diverged[1] >= 0).all() and (diverged[2] >= 0).all()
    # Stuck: finite, far above ln 2, at or below chance accuracy, flagged at the third epoch.
    loss, accuracy = result.histories["loss"], result.histories["accuracy"]
    stuck = np.isfinite(loss[1:]).all(axis=-1)
    assert stuck[0].all() and (diverged[1:][stuck] == 2).all()
    assert (loss[1:][stuck][:, 1:] > 4).all() and (accuracy[1:][stuck][:, 1:] <= 0.55).all()
    assert result.diverged_count() == 4
    rows = {row["learning_rate"]: row for row in result.summary()}
    assert [rows[rate]["diverged"] for rate in rates] == [0, 2, 2]
    assert "min_val_loss_mean" in rows[HEALTHY] and "min_val_loss_mean" not in rows[STUCK]


def test_fit_marks_a_diverged_history_and_warns(data):
    config = dataclasses.replace(SMALL, learning_rate=STUCK)
    with pytest.warns(
        RuntimeWarning,
        match=r"diverged at epoch 3 \(training loss \d+\.\d+ and accuracy 0\.\d+, no better",
    ):
        history = fit(config, *data, seed=1, verbose=False).history
    assert history["diverged_epoch"] == 2
    assert len(history["loss"]) == SMALL.epochs  # the run went on; the history says why not

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy model: no warning, no mark
        healthy = fit(dataclasses.replace(SMALL, epochs=3), *data, verbose=False)
    assert "diverged_epoch" not in healthy.history


@pytest.fixture
def run_baseline(baseline, imdb_dir, imdb_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLAB_CACHE_DIR", str(imdb_cache))

    def run(*args):
        parsed = baseline.build_parser().parse_args(
            [*args, "--quiet", "--data-dir", str(imdb_dir), "--out", str(tmp_path)]
        )
        return baseline.main(parsed)

    return run


@pytest.mark.imdb
@pytest.mark.parametrize("option", ["--learning-rate", "--l2"])
def test_baseline_refuses_an_infinite_rate_or_l2(run_baseline, option):
    with pytest.raises(ConfigError, match=f"{option[2:].replace('-', '_')} must be .* finite"):
        run_baseline(option, "inf", "--train-size", "300", "--epochs", "1")


@pytest.mark.imdb
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--learning-rate", "1e30", "--train-size", "300"],
            r"diverged at epoch 1 \(\w*loss nan\)",
        ),
        (["--learning-rate", "10", "--train-size", "2000"], r"diverged at epoch 3 \(training loss"),
    ],
    ids=["nan", "stuck"],
)
def test_baseline_marks_diverged_seeds_and_exits_nonzero(run_baseline, capsys, args, message):
    with pytest.warns(RuntimeWarning), pytest.raises(SystemExit) as stop:
        run_baseline(*args, "--epochs", "3")
    assert re.match(
        rf"imdb_baseline.py: seed 0 {message}.*; try a smaller --learning-rate$",
        str(stop.value.code),
    )
    table = capsys.readouterr().out.split("| seed |")[1]
    row = next(line for line in table.splitlines() if line.startswith("| 0 |"))
    assert re.search(message, row) and "| - | - | - |" in row
    numbers = re.sub(r"\(.*?\)", "", row)
    assert "nan" not in numbers


# --- 4. memory and sizes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "seeds"), [(10**9, [0]), (10**4, list(range(10**5)))], ids=["fit", "sweep"]
)
def test_histories_too_large_for_memory_are_refused_before_allocating(
    no_training, monkeypatch, epochs, seeds
):
    monkeypatch.setattr(memory_module, "available_memory", lambda device: 16 * 2**30)
    config = TrainConfig(model_args={"hidden": (4,)}, epochs=epochs)
    train = synthetic_reviews(20)
    with pytest.raises(ConfigError, match="GiB") as error:
        if len(seeds) == 1:
            fit(config, train, train, verbose=False)
        else:
            run_sweep(config, {}, seeds, train, train, verbose=False)
    message = str(error.value)
    needed = float(re.search(r"need about ([\d.]+) GiB", message).group(1))
    assert needed * 2**30 >= len(METRICS) * len(seeds) * epochs * 4  # the histories alone
    assert "only 16.0 GiB is available" in message and len(message.splitlines()) == 1


def test_absurd_epochs_are_refused_on_any_machine(no_training):
    train = synthetic_reviews(20)
    with pytest.raises(ConfigError, match=r"need about \d+\.\d GiB of host memory"):
        fit(TrainConfig(epochs=10**13), train, train, verbose=False)


def test_the_memory_checks_can_be_switched_off_as_before(monkeypatch):
    calls = []
    monkeypatch.setattr(memory_module, "check_sweep", lambda *a: calls.append(a))
    train = synthetic_reviews(20)
    run_sweep(TrainConfig(model_args={"hidden": (4,)}, epochs=1), {}, [0], train, train,
              check_memory=False, verbose=False)  # fmt: skip
    assert calls == []


@pytest.mark.parametrize("what", ["hidden", "vocabulary"])
def test_a_huge_width_or_vocabulary_is_refused_before_any_model_is_built(monkeypatch, what):
    def refuse(*args, **kwargs):
        raise AssertionError("went on to initialize or train a model")

    monkeypatch.setattr(memory_module, "available_memory", lambda device: 16 * 2**30)

    for name in ("compiled_init", "compiled_epoch", "compiled_evaluate"):
        monkeypatch.setattr(engine, name, refuse)
    if what == "hidden":
        config, dim = TrainConfig(model_args={"hidden": (10**8,)}, epochs=1), 1000
    else:
        config, dim = TrainConfig(epochs=1), 10**8
    train = synthetic_reviews(20, dim)
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB per device") as error:
        fit(config, train, train, verbose=False)
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.imdb
@pytest.mark.parametrize("args", [["--num-words", "100000000"], ["--hidden", "100000000"]])
def test_baseline_refuses_a_huge_model_before_training(run_baseline, monkeypatch, args):
    def refuse(*args, **kwargs):
        raise AssertionError("went on to initialize or train a model")

    monkeypatch.setattr(memory_module, "available_memory", lambda device: 16 * 2**30)

    monkeypatch.setattr(engine, "compiled_init", refuse)
    with pytest.raises(ConfigError, match=r"needs about [\d.]+ GiB"):
        run_baseline(*args, "--train-size", "300", "--epochs", "1")


@pytest.mark.parametrize("seed", [2**32, -1, 2**63, 99999999999999999999999])
def test_seeds_jax_cannot_tell_apart_are_refused(no_training, seed):
    train = synthetic_reviews(20)
    with pytest.raises(ConfigError, match=rf"seed {seed} is out of range: .* 0 <= seed < 2\*\*32"):
        run_sweep(SMALL, {}, [0, seed], train, train, verbose=False)
    with pytest.raises(ConfigError, match="out of range"):
        fit(SMALL, train, train, seed=seed, verbose=False)
    with pytest.raises(ConfigError, match="data_seed: seed .* out of range"):
        fit(SMALL, train, train, data_seed=seed, verbose=False)


def test_the_largest_seed_is_its_own():
    train = synthetic_reviews(40)
    config = TrainConfig(model_args={"hidden": (4,)}, epochs=1)
    result = run_sweep(config, {}, [0, 2**32 - 1], train, train, verbose=False)
    assert result.histories["loss"][0, 0] != result.histories["loss"][1, 0]


@pytest.mark.imdb
def test_a_run_refused_before_training_leaves_no_run_folder(imdb_dir, imdb_cache, tmp_path):
    """Was: an empty run folder (now: the error, one line, and nothing under --out)."""
    from helpers import assert_one_line_error

    done = subprocess.run(
        [sys.executable, str(REPO / "experiments/imdb_baseline.py"), "--hidden", "100000000",
         "--train-size", "300", "--epochs", "1", "--quiet", "--data-dir", str(imdb_dir),
         "--out", str(tmp_path / "out")],
        env=os.environ | {"JAXLAB_CACHE_DIR": str(imdb_cache)}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert_one_line_error(done, "needs about")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
