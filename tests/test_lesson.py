"""The lesson-suite scripts in quick mode, and the pieces their verdicts rest on."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import REPO
from test_experiments import run_script

from jaxlab.lesson import Claim, claims_table

SCRIPTS = {
    "lesson_learning_rate.py": [],
    "lesson_initialization.py": [],
    "lesson_overfitting.py": [],
    "lesson_optimizers.py": ["--optimizers", "sgd,adam"],
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
    spearman = load_script("lesson_learning_rate.py").spearman
    assert spearman(np.arange(5), np.arange(5) ** 2) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    assert spearman(np.arange(4), np.ones(4)) == 0.0


def test_unit_spread_is_zero_only_for_copied_units():
    unit_spread = load_script("lesson_initialization.py").unit_spread
    same = {"input": {"kernel": np.ones((2, 5, 3))}, "output": {"kernel": np.zeros((2, 3, 1))}}
    assert unit_spread(same) == 0.0
    same["input"]["kernel"][1, 0, 2] = 0.5
    assert unit_spread(same) == pytest.approx(0.5)


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
