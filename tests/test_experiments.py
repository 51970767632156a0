"""The experiment scripts, run as a user would run them."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from helpers import assert_one_line_error


def run_script(name, *args, env_extra=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(REPO / "experiments" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--optimizer", "adamz"], "unknown optimizer 'adamz'; known:"),
        (["--learning-rate", "-1"], "learning_rate must be positive"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--import", "no_such_module_xyz"], "cannot import 'no_such_module_xyz'"),
    ],
)
def test_baseline_bad_input_is_one_line_not_a_traceback(args, message, tmp_path):
    assert_one_line_error(run_script("imdb_baseline.py", *args, "--out", str(tmp_path)), message)


def test_baseline_help_works():
    result = run_script("imdb_baseline.py", "--help")
    assert result.returncode == 0 and "--learning-rate" in result.stdout


@pytest.mark.imdb
def test_baseline_one_epoch_on_real_imdb(imdb_dir, imdb_cache, tmp_path):
    result = run_script(
        "imdb_baseline.py",
        *("--epochs", "1", "--quiet", "--data-dir", str(imdb_dir), "--out", str(tmp_path)),
        # every program is kept, however fast this machine compiles it
        env_extra={
            "JAXLAB_CACHE_DIR": str(imdb_cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "index_word[1] = 'the'  index_word[25] = 'have'" in result.stdout
    assert "Total params: 160,305" in result.stdout
    (run_dir,) = tmp_path.iterdir()
    history = json.loads((run_dir / "history-seed0.json").read_text())
    assert len(history["val_accuracy"]) == 1 and history["val_accuracy"][0] > 0.8
    info = json.loads((run_dir / "run.json").read_text())
    assert info["seeds"] == [0] and info["config"]["batch_size"] == 512
    assert info["environment"]["versions"]["jax"]
    assert (run_dir / "curves-seed0.png").stat().st_size > 10_000
    assert "| 0 |" in (run_dir / "summary.md").read_text()
    assert any((imdb_cache / "xla").iterdir())  # compiled programs kept for the next run
