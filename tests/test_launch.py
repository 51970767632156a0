"""Many processes: 2 local processes x 2 CPU devices equal 1 process x 4 devices (the lesson's
sweep on IMDB; and through a SIGTERM, a checkpoint and a resume), as does 1 process x 4 devices
killed and resumed, and a failing process stops the launcher at once."""

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint import assert_same_outputs, start_and_stop_after_checkpoints

from jaxlab import results

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTED = REPO / "tests" / "scripts" / "checkpointed_sweep.py"


@pytest.mark.imdb
def test_two_processes_run_the_lesson_sweep_as_one_process_of_four_devices(
    imdb_dir, imdb_cache, tmp_path
):
    """imdb_overfitting.py on 2,000 reviews, 3 epochs, 2 initializers x 3 seeds."""
    script = [str(REPO / "experiments" / "imdb_overfitting.py"), "--limit", "2000", "--epochs",
              "3", "--seeds", "3", "--inits", "glorot_uniform,he_normal", "--quiet",
              "--data-dir", str(imdb_dir)]  # fmt: skip
    env = os.environ | {"JAXLAB_CACHE_DIR": str(imdb_cache)}
    one = subprocess.run(
        [sys.executable, *script, "--out", str(tmp_path / "one")],
        env=env | {"JAX_NUM_CPU_DEVICES": "4"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    launch = [sys.executable, "-m", "jaxlab.launch", "--processes", "2", "--devices-per-process",
              "2", "--"]  # fmt: skip
    two = subprocess.run(
        [*launch, *script, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    assert len(list((tmp_path / "two").iterdir())) == 1  # one results folder, by process 0
    (a,), (b,) = (glob.glob(str(tmp_path / run / "*" / "histories.npz")) for run in ("one", "two"))
    with np.load(a) as one_run, np.load(b) as two_runs:
        assert one_run.files == two_runs.files and "history_val_loss" in one_run.files
        for name in one_run.files:
            assert one_run[name].shape == two_runs[name].shape
            if one_run[name].dtype.kind == "f":
                assert np.isfinite(one_run[name]).all()
                np.testing.assert_allclose(two_runs[name], one_run[name], rtol=0, atol=1e-6)
            else:
                np.testing.assert_array_equal(two_runs[name], one_run[name])


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The checkpointed sweep never interrupted, in one process of 4 CPU devices."""
    out = tmp_path_factory.mktemp("four_devices")
    env = os.environ | {"JAXLAB_CACHE_DIR": str(out / "cache"), "JAX_NUM_CPU_DEVICES": "4"}
    done = subprocess.run(
        [sys.executable, str(CHECKPOINTED), "--out", str(out / "run")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return next((out / "run").iterdir())


def test_two_processes_checkpoint_stop_on_sigterm_and_resume_exactly(four_devices, tmp_path):
    """The launcher passes SIGTERM on; both processes stop after the same epoch's checkpoint
    (written by both, Orbax's way) and exit 0; resumed as 2 processes, the sweep equals one
    process of 4 devices that was never interrupted, bit for bit."""
    env = os.environ | {"JAXLAB_CACHE_DIR": str(tmp_path / "cache")}
    two = tmp_path / "two"
    launch = [sys.executable, "-m", "jaxlab.launch", "--processes", "2", "--devices-per-process",
              "2", "--", str(CHECKPOINTED)]  # fmt: skip
    code, stdout, stderr, folder = start_and_stop_after_checkpoints(
        [*launch, "--out", str(two), "--checkpoint-every", "1", "--pause", "0.25"],
        two, env, signal.SIGTERM,
    )  # fmt: skip
    assert code == 0, stdout + stderr
    assert len(list(two.iterdir())) == 1  # one results folder, written by process 0
    for process in (0, 1):
        assert f"[{process}] checkpointed_sweep.py: interrupted by SIGTERM" in stdout
    assert results.run_status(folder) == "interrupted"
    resumed = subprocess.run(
        [*launch, "--resume", str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results.run_status(folder) == "complete"
    assert_same_outputs(four_devices, folder)


def test_one_process_of_four_devices_resumes_exactly(four_devices, tmp_path):
    """Models sharded over 4 devices of one process are checkpointed shard by shard into host
    buffers reused between saves; killed and resumed, the sweep equals the uninterrupted one."""
    env = os.environ | {"JAXLAB_CACHE_DIR": str(tmp_path / "cache"), "JAX_NUM_CPU_DEVICES": "4"}
    command = [sys.executable, str(CHECKPOINTED), "--out", str(tmp_path / "run"),
               "--checkpoint-every", "1", "--pause", "0.25"]  # fmt: skip
    code, _, stderr, folder = start_and_stop_after_checkpoints(
        command, tmp_path / "run", env, signal.SIGKILL
    )
    assert code == -signal.SIGKILL, stderr
    resumed = subprocess.run(
        [sys.executable, str(CHECKPOINTED), "--resume", str(folder)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_same_outputs(four_devices, folder)


def test_a_failing_process_stops_the_launcher_at_once(tmp_path):
    start = time.monotonic()
    launched = subprocess.run(
        [sys.executable, "-m", "jaxlab.launch", "--processes", "2", "--",
         str(REPO / "tests" / "scripts" / "one_process_fails.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert launched.returncode == 2, launched.stdout + launched.stderr
    assert "[1] one_process_fails.py: error: process 1 fails now" in launched.stdout
    assert "process 1 exited with status 2" in launched.stderr
    assert elapsed < 60  # never hangs on the peer left waiting


def test_launcher_needs_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "jaxlab.launch", "--processes", "2"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "give the script to run" in done.stderr
