"""The lesson-suite scripts in quick mode, and the pieces their verdicts rest on."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO
from test_experiments import run_script

from jaxlab.lesson import Claim, claims_table, spearman

SCRIPTS = {
    "lesson_learning_rate.py": [],
    "lesson_initialization.py": [],
    "lesson_overfitting.py": [],
    "lesson_optimizers.py": ["--optimizers", "sgd,adam"],
    "lesson_scaling.py": [],
    "lesson_batch_size.py": [],
    "lesson_capacity.py": [],
    "lesson_activations.py": [],
}


def load_script(name):
    spec = importlib.util.spec_from_file_location(name[:-3], REPO / "experiments" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_claims_table_marks_claims_that_do_not_hold():
    table = claims_table([Claim("t", "a", "e1", True), Claim("t", "b", "e2", False)])
    assert "| t | a | e1 | yes |" in table and "| t | b | e2 | **no** |" in table


def test_spearman_sees_monotone_and_reversed_orders():
    assert spearman(np.arange(5), np.arange(5) ** 2) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert spearman(np.arange(4), np.ones(4)) == 0.0


def test_unit_spread_is_zero_only_for_copied_units():
    unit_spread = load_script("lesson_initialization.py").unit_spread
    same = {"input": {"kernel": np.ones((2, 5, 3))}, "output": {"kernel": np.zeros((2, 3, 1))}}
    assert unit_spread(same) == 0.0
    same["input"]["kernel"][1, 0, 2] = 0.5
    assert unit_spread(same) == pytest.approx(0.5)


def test_steadier_needs_one_better_measure_and_none_worse():
    steadier = load_script("lesson_scaling.py").steadier
    measures = ({"a": 0, "b": 0}, {"a": 1.0, "b": 2.0}, {"a": 0.1, "b": 0.1})
    assert steadier(measures, "a", "b") and not steadier(measures, "b", "a")
    assert not steadier(({"a": 0, "b": 0},), "a", "b")


def test_epochs_to_reach_is_infinite_if_a_seed_never_gets_there():
    epochs_to_reach = load_script("lesson_batch_size.py").epochs_to_reach
    val_loss = np.array([[0.7, 0.5, 0.4], [0.6, 0.6, 0.45]])
    assert epochs_to_reach(val_loss, 0.5) == pytest.approx(2.5)
    assert epochs_to_reach(val_loss, 0.42) == float("inf")


def test_capacity_parameter_count_matches_the_lesson_model():
    assert load_script("lesson_capacity.py").parameter_count((16, 16)) == 160305


def test_never_active_counts_units_without_a_positive_input():
    never_active = load_script("lesson_activations.py").never_active
    params = {
        "input": {"kernel": np.array([[1.0, -1.0], [1.0, -1.0]]), "bias": np.zeros(2)},
        "output": {"kernel": np.ones((2, 1)), "bias": np.zeros(1)},
    }
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert never_active(params, [x], "relu") == 0.5
    params["input"]["bias"] = np.array([0.0, 5.0])
    assert never_active(params, [x], "relu") == 0.0


@pytest.mark.imdb
@pytest.mark.parametrize("script", SCRIPTS)
def test_lesson_script_quick_mode_writes_claims(script, imdb_dir, imdb_cache, tmp_path):
    result = run_script(
        script,
        *SCRIPTS[script],
        *("--quick", "--quiet", "--data-dir", str(imdb_dir), "--out", str(tmp_path)),
        env_extra={"JAXLAB_CACHE_DIR": str(imdb_cache)},
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()
    claims = json.loads((run_dir / "claims.json").read_text())
    assert claims and all(isinstance(c["holds"], bool) and c["evidence"] for c in claims)
    assert "quick mode" in (run_dir / "claims.md").read_text()
    assert json.loads((run_dir / "run.json").read_text())["quick"] is True
    assert list(run_dir.glob("bands-*.png")) and (run_dir / "summary.md").exists()
    for name in ("histories.csv", "histories.npz", "summary.json"):
        assert list(run_dir.glob(f"*/{name}"))
