"""The lesson-suite scripts in quick mode, and the pieces their verdicts rest on."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import REPO
from helpers import load_script
from test_experiments import run_script

from jaxlab import ConfigError, results, verdicts
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


def test_claims_table_marks_claims_that_do_not_hold():
    holds = verdicts.deterministic("q", 1.0, ">", 0.5, "r")
    fails = verdicts.deterministic("q", 0.0, ">", 0.5, "r")
    table = claims_table(
        [Claim("t", "a", "e1", holds), Claim("t", "b", "e2", fails, explanation="x")]
    )
    assert "| t | a | e1 | q = 1; claim > 0.5 (r); deterministic" in table and "| holds |" in table
    assert "| t | b | e2 | q = 0; claim > 0.5" in table and "| **does not hold**: x |" in table


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


@pytest.fixture(scope="module")
def quick_runs(request, imdb, imdb_dir, imdb_cache, tmp_path_factory):
    """The selected scripts' quick runs, two at a time in the background from the first test
    that asks (a run spends most of its time compiling, on one core); ``imdb`` has filled the
    shared cache first. Script name -> (output folder, future of the finished process)."""
    test = "test_lesson_script_quick_mode_writes_claims"
    chosen = {
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", None) == test
    }
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {}
    for script in (s for s in SCRIPTS if s in chosen):
        out = tmp_path_factory.mktemp(script.removesuffix(".py"))
        args = ("--quick", "--quiet", "--data-dir", str(imdb_dir), "--out", str(out))
        env = {"JAXLAB_CACHE_DIR": str(imdb_cache)}
        runs[script] = out, pool.submit(run_script, script, *SCRIPTS[script], *args, env_extra=env)
    yield runs
    pool.shutdown(cancel_futures=True)


@pytest.mark.imdb
@pytest.mark.parametrize("script", SCRIPTS)
def test_lesson_script_quick_mode_writes_claims(script, quick_runs):
    out, future = quick_runs[script]
    result = future.result()
    assert result.returncode == 0, result.stderr
    (run_dir,) = out.iterdir()
    claims = json.loads((run_dir / "claims.json").read_text())
    assert claims and all(isinstance(c["holds"], bool) and c["evidence"] for c in claims)
    for c in claims:  # the judged reading's test, and the other readings'
        for test in [c, *c["readings"]]:
            assert test["verdict"] in verdicts.VERDICTS and test["direction"] in ("<", ">")
            assert test["quantity"] and test["reason"] and test["test"]
            assert isinstance(test["threshold"], float) and isinstance(test["seeds"], int)
            assert len(test["interval"]) == 2 and isinstance(test["estimate"], float)
        assert c["holds"] == (c["verdict"] == "holds")
    assert "quick mode" in (run_dir / "claims.md").read_text()
    assert json.loads((run_dir / "run.json").read_text())["quick"] is True
    assert list(run_dir.glob("bands-*.png")) and (run_dir / "summary.md").exists()
    for name in ("histories.csv", "histories.npz", "summary.json"):
        assert list(run_dir.glob(f"*/{name}"))


def test_report_rejects_unknown_scripts(tmp_path):
    from helpers import assert_one_line_error

    result = run_script("lesson_report.py", "--only", "lesson_magic", "--out", str(tmp_path))
    assert_one_line_error(result, "unknown lesson script(s) lesson_magic; known: lesson_batch_size")


@pytest.mark.imdb
def test_report_collects_the_scripts_verdicts_and_resumes(imdb_dir, imdb_cache, tmp_path):
    args = ("--only", "lesson_initialization", "--quick", "--quiet", "--out", str(tmp_path))
    env = {"JAXLAB_CACHE_DIR": str(imdb_cache), "TFDS_DATA_DIR": str(imdb_dir)}
    result = run_script("lesson_report.py", *args, env_extra=env)
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.glob("lesson_initialization-*")
    claims = json.loads((run_dir / "claims.json").read_text())
    report = (tmp_path / "report.md").read_text()
    for claim in claims:
        verdict = verdicts.mark(claim["verdict"])
        assert f"| {claim['technique']} | {claim['statement']} | {verdict} |" in report
    assert f"{sum(c['holds'] for c in claims)} of {len(claims)} claims hold" in report
    assert f"]({run_dir.name}/bands-initializers.png)" in report
    assert "## lesson_capacity\n\nNot run yet" in report
    assert "not evidence" in report
    info = json.loads((tmp_path / "run.json").read_text())  # the report names its commit
    assert info["environment"]["commit"] == results.source_commit()
    assert info["scripts"]["lesson_initialization"] == run_dir.name
    again = run_script("lesson_report.py", *args, env_extra=env)
    assert "finished run found, not run again" in again.stdout
    assert len(list(tmp_path.glob("lesson_initialization-*"))) == 1


@pytest.mark.imdb
def test_overfitting_refuses_a_capacity_run_it_cannot_use(imdb_dir, imdb_cache, tmp_path):
    from helpers import assert_one_line_error

    common = ("--quick", "--data-dir", str(imdb_dir), "--out", str(tmp_path))
    env = {"JAXLAB_CACHE_DIR": str(imdb_cache)}
    missing = run_script(
        "lesson_overfitting.py", "--capacity-from", str(tmp_path / "none"), *common, env_extra=env
    )
    assert_one_line_error(missing, "--capacity-from: no saved sweep in")


@pytest.mark.imdb
def test_an_interrupted_lesson_script_resumes_at_its_group_and_epoch(
    quick_runs, imdb_dir, imdb_cache, tmp_path
):
    """lesson_batch_size (4 compiled groups), stopped by SIGTERM during its first epoch, stops
    after it with a checkpoint; resumed, it continues at group 1, epoch 2 and ends with the
    histories of its uninterrupted quick run."""
    script, args = "lesson_batch_size.py", ["--quick", "--quiet", "--data-dir", str(imdb_dir)]
    env = {**os.environ, "MPLBACKEND": "Agg", "JAXLAB_CACHE_DIR": str(imdb_cache)}
    if script in quick_runs:
        reference, future = quick_runs[script]
        assert future.result().returncode == 0
    else:
        reference = tmp_path / "reference"
        assert run_script(script, *args, "--out", str(reference), env_extra=env).returncode == 0
    out = tmp_path / "interrupted"
    command = [sys.executable, str(REPO / "experiments" / script), *args, "--out", str(out)]
    process = subprocess.Popen(
        [*command, "--checkpoint-every", "1"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob("*/batch_size/checkpoints")) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    (folder,) = out.iterdir()
    assert "interrupted by SIGTERM" in stderr and f"--resume {folder}" in stderr
    assert results.run_status(folder) == "interrupted"
    (step,) = [p for p in (folder / "batch_size" / "checkpoints").iterdir() if p.name.isdigit()]
    meta = json.loads((step / "meta" / "metadata").read_text())
    assert (meta["group"], meta["epoch"]) == (0, 1)
    resumed = run_script(script, "--resume", str(folder), env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    assert results.run_status(folder) == "complete"
    before = np.load(next(reference.glob("*/batch_size/histories.npz")))
    with before as a, np.load(folder / "batch_size" / "histories.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


def test_capacity_from_refuses_an_incomplete_sweep(tmp_path):
    from jaxlab.sweep_results import SweepResult
    from jaxlab.train import TrainConfig

    reused_capacity = load_script("lesson_overfitting.py").reused_capacity
    sizes = load_script("lesson_overfitting.py").SIZES
    result = SweepResult.empty(TrainConfig(epochs=2), {"hidden": sizes}, [0], "shared", 0)
    result.meta |= {"groups": 3, "groups_done": 1, "complete": False}
    result.save(tmp_path / "run" / "capacity")
    results.write_run_info(tmp_path / "run", experiment="lesson_capacity", status="interrupted")
    with pytest.raises(ConfigError, match="is incomplete \\(its run is interrupted\\)"):
        reused_capacity(str(tmp_path / "run" / "capacity"))
    result.meta["complete"] = True
    result.save(tmp_path / "run" / "capacity")
    assert reused_capacity(str(tmp_path / "run" / "capacity")).values("hidden") == sizes
