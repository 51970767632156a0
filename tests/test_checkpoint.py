"""Checkpoints and resume: a resumed sweep equals an uninterrupted one bit for bit, after a crash,
SIGKILL or SIGTERM; a run folder records whether its run is complete."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import synthetic_reviews

from jaxlab import ConfigError, results
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import METRICS, SweepResult, summary_table
from jaxlab.train import TrainConfig, fit

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "scripts" / "checkpointed_sweep.py"
BASE = TrainConfig(model_args={"hidden": (8, 8)}, epochs=4, batch_size=32)
GRID = {"kernel_init": ["glorot_uniform", "he_normal"], "hidden": [(8, 8), (4,)]}
SEEDS = [0, 1, 2]


class Crash(Exception):
    pass


def data():
    return synthetic_reviews(70, 50, seed=0), synthetic_reviews(30, 50, seed=1)


def sweep(**options):
    options = {"data_order": "per_model", "verbose": False, "keep_params": True} | options
    return run_sweep(BASE, GRID, SEEDS, *data(), **options)


def crash_after(epochs: int):
    calls = []

    def on_epoch_end(result):
        calls.append(1)
        if len(calls) == epochs:
            raise Crash

    return on_epoch_end


def assert_same(a: SweepResult, b: SweepResult) -> None:
    for metric in METRICS:
        np.testing.assert_array_equal(a.histories[metric], b.histories[metric])
    np.testing.assert_array_equal(a.diverged_epoch, b.diverged_epoch)
    assert len(a.final_params) == len(b.final_params)
    for (fixed_a, _, params_a), (fixed_b, _, params_b) in zip(
        a.final_params, b.final_params, strict=True
    ):
        assert fixed_a == fixed_b
        jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


@pytest.fixture(scope="module")
def uninterrupted():
    return sweep()


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A sweep that crashed in its second group (epoch 6 of 8), checkpointed every epoch."""
    folder = tmp_path_factory.mktemp("crashed") / "checkpoints"
    with pytest.raises(Crash):
        sweep(checkpoint_dir=folder, checkpoint_every=1, on_epoch_end=crash_after(6))
    return folder


def test_resume_after_a_crash_equals_the_uninterrupted_sweep(uninterrupted, crashed):
    resumed = sweep(checkpoint_dir=crashed, resume=True)
    assert_same(uninterrupted, resumed)
    assert resumed.meta["complete"]
    # What "auto" became, per compiled group, is recorded (and saved in summary.json).
    assert list(uninterrupted.meta["input_layers"]) == ["hidden=8-8", "hidden=4"]
    assert set(uninterrupted.meta["input_layers"].values()) <= {"ffi", "sparse", "dense"}
    # Resuming a finished sweep trains nothing and returns the same result.
    again = sweep(checkpoint_dir=crashed, resume=True, on_epoch_end=crash_after(1))
    assert_same(uninterrupted, again)


def test_checkpoints_keep_the_last_two(crashed):
    steps = sorted(int(p.name) for p in crashed.iterdir() if p.name.isdigit())
    assert len(steps) == 2


def test_a_checkpoint_is_never_resumed_into_another_sweep(crashed, tmp_path):
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(BASE, GRID, [0, 1], *data(), checkpoint_dir=crashed, resume=True, verbose=False)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        sweep(checkpoint_dir=crashed)
    with pytest.raises(ConfigError, match="need a checkpoint_dir"):
        sweep(resume=True)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        sweep(checkpoint_dir=tmp_path / "new", checkpoint_every=0)


def test_fit_resumes_bit_identically(tmp_path):
    config = TrainConfig(model_args={"hidden": (8,), "dropout": 0.3}, epochs=4, batch_size=16)
    train, validation = data()
    whole = fit(config, train, validation, seed=3, verbose=False)

    def crash(epoch, history, state):
        if epoch == 1:
            raise Crash

    folder = tmp_path / "fit"
    with pytest.raises(Crash):
        fit(config, train, validation, seed=3, verbose=False, on_epoch_end=crash,
            checkpoint_dir=folder, checkpoint_every=1)  # fmt: skip
    resumed = fit(config, train, validation, seed=3, verbose=False, checkpoint_dir=folder,
                  resume=True)  # fmt: skip
    for name in METRICS:
        assert resumed.history[name] == whole.history[name]
    jax.tree.map(np.testing.assert_array_equal, resumed.state, whole.state)


def test_groups_not_run_are_not_diverged():
    """The result of a sweep stopped in its first group: its summary says how far it got, and
    the configs it never reached are "not run", not diverged."""
    seen = []

    def stop_after_two(result):
        seen.append(result)
        if len(seen) == 2:
            raise Crash

    with pytest.raises(Crash):
        sweep(on_epoch_end=stop_after_two)
    partial = seen[-1]
    assert partial.progress() == {"groups_done": 0, "groups": 2, "complete": False}
    rows = {(row["kernel_init"], row["hidden"]): row for row in partial.summary()}
    for init in GRID["kernel_init"]:
        assert rows[init, (8, 8)]["seeds_run"] == 3 and rows[init, (8, 8)]["diverged"] == 0
        assert rows[init, (4,)]["seeds_run"] == 0 and rows[init, (4,)]["diverged"] == 0
    table = summary_table(partial)
    assert "not run" in table and "diverged" not in table
    assert "incomplete: 0 of 2 compiled groups done" in table


# Scripts: SIGKILL and SIGTERM, then --resume.


def script_env(cache: Path) -> dict[str, str]:
    return os.environ | {"JAXLAB_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}


def run_script(*args, env, timeout=240):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def start_and_stop_after_checkpoints(command, out: Path, env, sig: int, checkpoints: int = 2):
    """Starts ``command`` (a run checkpointing every epoch, pausing after each, into ``out``)
    and sends it ``sig`` once ``checkpoints`` checkpoints are written; returns its exit status,
    output and run folder."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            done = [p for p in out.glob("*/checkpoints/*") if p.name.isdigit()]
            if len(done) >= checkpoints or process.poll() is not None:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    (folder,) = out.iterdir()
    return process.returncode, stdout, stderr, folder


def outputs(folder: Path):
    with np.load(folder / "histories.npz") as npz:
        histories = {name: npz[name] for name in npz.files}
    with np.load(folder / "params.npz") as npz:
        params = {name: npz[name] for name in npz.files}
    return histories, params


def assert_same_outputs(a: Path, b: Path) -> None:
    (histories_a, params_a), (histories_b, params_b) = outputs(a), outputs(b)
    assert histories_a.keys() == histories_b.keys() and params_a.keys() == params_b.keys()
    for name in histories_a:
        np.testing.assert_array_equal(histories_a[name], histories_b[name])
    for name in params_a:
        np.testing.assert_array_equal(params_a[name], params_b[name])


@pytest.fixture(scope="module")
def script_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, script_cache):
    out = tmp_path_factory.mktemp("reference")
    done = run_script("--out", str(out), env=script_env(script_cache))
    assert done.returncode == 0, done.stderr
    (folder,) = out.iterdir()
    assert results.run_status(folder) == "complete"
    return folder


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_script_resumes_bit_identically(sig, reference, script_cache, tmp_path):
    env = script_env(script_cache)
    command = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--checkpoint-every", "1",
               "--pause", "0.25"]  # fmt: skip
    code, _, stderr, folder = start_and_stop_after_checkpoints(command, tmp_path, env, sig)
    if sig == signal.SIGTERM:
        assert code == 0, stderr
        assert "interrupted by SIGTERM" in stderr and f"--resume {folder}" in stderr
        assert "Traceback" not in stderr
        assert results.run_status(folder) == "interrupted"
    else:
        assert code == -signal.SIGKILL
        assert results.run_status(folder) == "running"
    info = json.loads((folder / "run.json").read_text())
    assert info["argv"][-2:] == ["--pause", "0.25"]
    assert (folder / "checkpoints").is_dir()
    resumed = run_script("--resume", str(folder), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert results.run_status(folder) == "complete"
    assert not (folder / "checkpoints").exists()  # a finished run drops its checkpoints
    assert_same_outputs(reference, folder)


def test_resume_refuses_a_complete_run_and_other_arguments(reference, script_cache):
    env = script_env(script_cache)
    done = run_script("--resume", str(reference), env=env)
    assert done.returncode == 2 and "already complete" in done.stderr, done.stderr
    info = json.loads((reference / "run.json").read_text())
    (reference / "run.json").write_text(json.dumps(info | {"status": "interrupted"}))
    try:
        done = run_script("--resume", str(reference), "--epochs", "9", env=env)
        assert done.returncode == 2 and "drop --epochs" in done.stderr, done.stderr
    finally:
        (reference / "run.json").write_text(json.dumps(info))
