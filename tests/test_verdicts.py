"""Verdicts with uncertainty (jaxlab.verdicts), the claims schema, and every lesson script's
judge fed small synthetic sweeps."""

import dataclasses
import json

import numpy as np
import optax
import pytest
from helpers import load_script

from jaxlab import ConfigError, verdicts
from jaxlab.lesson import claim, claims_table
from jaxlab.optim import FAMILIES, OPTIMIZERS, optimizer_defaults, register_optimizer
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

# The optimizers jaxlab ships (other tests register more of their own).
BUILT_IN = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "rmsprop_keras2", "adam")
BUILT_IN += ("adamw", "nadam", "lion")

FIELDS = {
    "quantity": str,
    "direction": str,
    "threshold": float,
    "reason": str,
    "estimate": float,
    "interval": list,
    "seeds": int,
    "test": str,
    "verdict": str,
}


def check_schema(saved: dict) -> None:
    """One claim as saved in claims.json: every field of its judged reading and readings."""
    for test in [saved, *saved["readings"]]:
        for field, kind in FIELDS.items():
            assert isinstance(test[field], kind), (field, test)
        assert test["direction"] in verdicts.DIRECTIONS and test["reason"]
        assert test["verdict"] in verdicts.VERDICTS and len(test["interval"]) == 2
    assert saved["holds"] == (saved["verdict"] == verdicts.HOLDS)
    assert saved["evidence"] and saved["statement"] and saved["technique"]
    assert bool(saved["explanation"]) == (saved["verdict"] != verdicts.HOLDS)


def test_t_quantiles_match_the_t_distribution():
    assert verdicts.t_quantile(4) == 2.776 and verdicts.t_quantile(1) == 12.706
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 200):
        assert verdicts.t_quantile(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)


def test_a_clear_effect_holds_a_clear_null_does_not_and_a_tiny_sample_is_inconclusive():
    rng = np.random.default_rng(0)
    effect = verdicts.one_sample("q", 1.0 + 0.1 * rng.standard_normal(10), ">", 0.5, "r")
    null = verdicts.one_sample("q", 0.05 * rng.standard_normal(10), ">", 0.5, "r")
    tiny = verdicts.one_sample("q", [0.2, 1.4, 0.9], ">", 0.5, "r")
    assert (effect.verdict, null.verdict, tiny.verdict) == (
        verdicts.HOLDS,
        verdicts.FAILS,
        verdicts.INCONCLUSIVE,
    )
    assert effect.low > 0.5 and null.high < 0.5 and tiny.low < 0.5 < tiny.high
    assert effect.seeds_needed is None and tiny.seeds_needed > 3
    assert "seeds would settle it" in verdicts.explain(tiny.as_json())
    assert "wrong side" in verdicts.explain(null.as_json())
    # The same claim the other way round: the interval is mirrored, the verdicts are the same.
    mirrored = verdicts.paired("q", [0.0] * 3, [0.2, 1.4, 0.9], "<", -0.5, "r")
    assert mirrored.verdict == verdicts.INCONCLUSIVE
    assert mirrored.seeds_needed == tiny.seeds_needed


def test_seeds_needed_settles_the_question_at_the_same_spread():
    tiny = verdicts.one_sample("q", [0.2, 1.4, 0.9], ">", 0.5, "r")
    n = tiny.seeds_needed
    spread = np.std([0.2, 1.4, 0.9], ddof=1)
    # n values with the same mean and sample std
    z = np.linspace(-1, 1, n)
    values = tiny.estimate + spread * (z - z.mean()) / z.std(ddof=1)
    assert verdicts.one_sample("q", values, ">", 0.5, "r").verdict == verdicts.HOLDS
    fewer = values[: n - 1] - values[: n - 1].mean() + tiny.estimate
    fewer = tiny.estimate + spread * (fewer - tiny.estimate) / fewer.std(ddof=1)
    assert verdicts.one_sample("q", fewer, ">", 0.5, "r").verdict == verdicts.INCONCLUSIVE


def test_one_seed_no_seed_and_dropped_pairs():
    one = verdicts.one_sample("q", [3.0], ">", 0.5, "r")
    assert one.verdict == verdicts.INCONCLUSIVE and one.seeds == 1 and one.seeds_needed is None
    none = verdicts.paired("q", [np.nan, 1.0], [0.0, np.inf], ">", 0.5, "r")
    assert none.seeds == 0 and "Nothing to compare" in verdicts.explain(none.as_json())
    kept = verdicts.paired("q", [2.0, 1.0, 3.0, np.nan], [0.0, 0.0, 1.0, 0.0], ">", 0.5, "r")
    assert kept.seeds == 3 and kept.values == (2.0, 1.0, 2.0)


def test_ratio_bounds_and_deterministic_tests():
    ratio = verdicts.paired("q", [1.0, 1.1, 0.9], [2.0, 2.0, 2.0], "<", 0.8, "r", ratio=True)
    assert ratio.estimate == pytest.approx(0.5) and ratio.verdict == verdicts.HOLDS
    bounded = verdicts.one_sample("q", [0.9, 1.0, 0.4], ">", 0.5, "r", bounds=(-1, 1))
    assert bounded.high == 1.0
    assert verdicts.deterministic("q", 0.02, "<", 0.1, "r").verdict == verdicts.HOLDS
    assert verdicts.deterministic("q", 0.2, "<", 0.1, "r").verdict == verdicts.FAILS


def test_claims_json_schema_and_markdown():
    judged = verdicts.one_sample("q", [0.2, 1.4, 0.9], ">", 0.5, "because")
    other = verdicts.one_sample("q2", [1.0, 1.1, 1.2], ">", 0.5, "because")
    made = claim("t", "s", "e", judged, [other], "what the lesson means", why="From the curves.")
    saved = json.loads(json.dumps(made.as_json()))
    check_schema(saved)
    assert saved["explanation"].startswith("From the curves. The 95% interval")
    assert not made.holds and made.verdict == verdicts.INCONCLUSIVE
    assert claim("t", "s", "e", other, why="unused").explanation == ""
    table = claims_table([made])
    assert "| t | s | e | q = " in table and "*inconclusive*: From the curves." in table
    assert "other reading, q2: 1.1 [0.8516, 1.348], holds" in table
    assert "the lesson means: what the lesson means" in table


def test_decide_needs_a_known_direction():
    with pytest.raises(ValueError, match="direction"):
        verdicts.decide(">=", 0.0, 1.0, 2.0)


# Synthetic sweeps: each config's curves from a learning speed and an overfitting slope.


def synthetic(grid, seeds=4, epochs=6, speed=None, overfit=None, base=None):
    """A complete sweep whose val_loss falls at ``speed(config)`` and then climbs by
    ``overfit(config)`` per epoch, with a little per-seed noise."""
    base = dataclasses.replace(base or TrainConfig(), epochs=epochs)
    result = SweepResult.empty(base, grid, list(range(seeds)), "shared", 0)
    rng = np.random.default_rng(0)
    t = np.arange(1, epochs + 1)
    for index, config in enumerate(result.configs()):
        k = speed(config) if speed else 1.0
        o = overfit(config) if overfit else 0.02
        where = np.unravel_index(index, result.shape[:-1])
        for seed in range(seeds):
            noise = 0.004 * rng.standard_normal(epochs)
            loss = 0.69 * np.exp(-k * t) + 0.01 + noise
            val_loss = 0.28 + 0.4 * np.exp(-k * t) + o * t + noise
            curves = {
                "loss": loss,
                "accuracy": 1 - loss / 1.4,
                "val_loss": val_loss,
                "val_accuracy": 1 - val_loss / 2,
            }
            for metric, values in curves.items():
                result.histories[metric][(*where, seed)] = values
    result.meta |= {"complete": True}
    return result


def check_claims(claims):
    assert claims
    for made in claims:
        check_schema(json.loads(json.dumps(made.as_json())))
    return {made.statement: made for made in claims}


def test_learning_rate_judge_reads_the_stall_claim_at_two_budgets():
    module = load_script("lesson_learning_rate")
    result = synthetic(
        {"learning_rate": module.RATES}, epochs=8, speed=lambda c: c["learning_rate"] * 1e3
    )
    claims = check_claims(module.judge(result))
    stall = next(c for s, c in claims.items() if s.startswith("Too small a rate stalls"))
    assert stall.judged.reading.endswith("(the full budget)") and len(stall.readings) == 1
    assert stall.readings[0].verdict == verdicts.HOLDS  # far behind at the default's best epoch
    assert "수렴하지 못하거나" in stall.meaning


def test_overfitting_judge_reads_dropout_on_final_and_min_val_loss():
    module = load_script("lesson_overfitting")
    capacity = synthetic(
        {"hidden": module.SIZES}, epochs=6, overfit=lambda c: 0.01 * c["hidden"][0] ** 0.5
    )
    remedies = synthetic(
        {"l2": [0.0, 0.001], "dropout": [0.0, 0.5]},
        epochs=8,
        overfit=lambda c: 0.04 * (1 - c["dropout"]) * (1 - 500 * c["l2"]),
    )
    claims = check_claims(module.judge(capacity, remedies))
    dropout = claims["Dropout (0.5) is a clear improvement."]
    assert dropout.judged.reading == "final val_loss" and dropout.verdict == verdicts.HOLDS
    assert dropout.readings[0].reading == "min val_loss"
    assert "clear improvement over the reference network" in dropout.meaning


def test_capacity_initialization_and_activation_judges():
    capacity = load_script("lesson_capacity")
    result = synthetic(
        {"hidden": capacity.SHAPES}, overfit=lambda c: 0.005 * sum(c["hidden"]) ** 0.5
    )
    claims = check_claims(capacity.judge(result))
    assert claims["Deeper networks overfit harder."].verdict == verdicts.HOLDS
    assert claims["Wider networks overfit harder."].judged.test.startswith("one-sample t")

    initialization = load_script("lesson_initialization")
    result = synthetic(
        {"kernel_init": initialization.INITS},
        speed=lambda c: 2.0 if c["kernel_init"] in initialization.GOOD else 1.0,
    )
    rng = np.random.default_rng(1)

    def params_of(config):
        shape = (4, 5, 3)
        kernel = np.zeros(shape) if config["kernel_init"] == "zeros" else rng.normal(size=shape)
        return {"input": {"kernel": kernel}, "output": {"kernel": np.zeros((4, 3, 1))}}

    result.params_of = params_of
    claims = check_claims(initialization.judge(result))
    assert claims["All-zero weights cannot break the symmetry between hidden units."].holds
    assert claims["Glorot/He initializations converge fastest."].holds

    activations = load_script("lesson_activations")
    result = synthetic(
        {"activation": activations.NAMES},
        speed=lambda c: 0.3 if c["activation"] == "sigmoid" else 1.0,
    )
    gradients = {
        n: [[1e-4, 1e-3, 1e-1] if n == "sigmoid" else [0.3, 0.5, 1.0]] * 4
        for n in activations.NAMES
    }
    dead = {
        n: [0.0625, 0.03125, 0.0625, 0.09375] if "relu" in n else [0.0] * 4
        for n in activations.NAMES
    }
    claims = check_claims(activations.judge(result, gradients, dead))
    assert claims["Sigmoid trains slower."].holds
    assert claims["Some ReLU units die (never active on the training set)."].holds
    assert not claims["Leaky ReLU avoids dead units."].holds


def test_batch_size_and_scaling_judges():
    batch = load_script("lesson_batch_size")
    result = synthetic(
        {"batch_size": batch.BATCH_SIZES},
        speed=lambda c: 0.3 if c["batch_size"] == batch.FULL else 2.0,
    )
    memory = {
        "dense": {s: 40 * s for s in batch.BATCH_SIZES},
        "sparse": {s: 9 * s for s in batch.BATCH_SIZES},
    }
    claims = check_claims(batch.judge(result, memory, 25000))
    assert all(c.holds for c in claims.values())

    scaling = load_script("lesson_scaling")
    sweeps = {
        name: synthetic(
            {"optimizer": scaling.OPTIMIZERS},
            speed=lambda c, n=name: 2.0 if n == "standardized" else 1.0,
        )
        for name in scaling.INPUTS
    }
    ranges = {
        name: {"range_ratio": 100.0 if name == "counts" else 1.0, "std_ratio": 50.0, "largest": 1.0}
        for name in scaling.INPUTS
    }
    claims = check_claims(scaling.judge(sweeps, ranges))
    assert claims["Scaling the counts speeds up training (sgd)."].holds
    assert [r.reading for r in claims["Scaling the counts speeds up training (sgd)."].readings] == [
        "standardized",
        "min_max",
    ]


@pytest.fixture
def unclassified_optimizer():
    name = "user_test_unclassified"
    register_optimizer(name, lambda learning_rate=0.01: optax.sgd(learning_rate), override=True)
    yield name
    OPTIMIZERS.unregister(name)


def test_optimizers_are_classified_and_unclassified_ones_are_named(unclassified_optimizer):
    module = load_script("lesson_optimizers")
    assert set(BUILT_IN) <= set(FAMILIES)  # every optimizer jaxlab ships is classified
    assert FAMILIES["lion"] == "adaptive" and FAMILIES["momentum"] == "plain"
    with pytest.raises(ConfigError, match="family must be one of adaptive, plain"):
        register_optimizer("user_bad_family", lambda learning_rate=0.1: optax.sgd(0.1), family="x")
    names = ["sgd", "adam", "lion", unclassified_optimizer]
    assert module.classify(names) == {
        "adaptive": ["adam", "lion"],
        "plain": ["sgd"],
        "unclassified": [unclassified_optimizer],
    }

    def sweep(name):
        rate = optimizer_defaults(name)["learning_rate"]
        grid = {"learning_rate": [rate / 10, rate, rate * 10]}
        return synthetic(
            grid,
            base=TrainConfig(epochs=4, optimizer=name),
            speed=lambda c: 2.0 if name in ("adam", "lion") else 0.5,
        )

    claims = check_claims(module.judge({name: sweep(name) for name in names}))
    adaptive = claims["Adaptive methods converge faster at their default settings."]
    assert adaptive.holds and f"unclassified: {unclassified_optimizer}" in adaptive.evidence
    alone = check_claims(module.judge({unclassified_optimizer: sweep(unclassified_optimizer)}))
    assert (
        alone["Adaptive methods converge faster at their default settings."].verdict
        == verdicts.INCONCLUSIVE
    )
