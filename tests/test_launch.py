"""Many processes: 2 local processes x 2 CPU devices equal 1 process x 4 devices, and a failing
process stops the launcher at once."""

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
SWEEP = [
    str(REPO / "experiments" / "imdb_overfitting.py"),
    *("--limit", "2000", "--epochs", "3", "--seeds", "3"),
    *("--inits", "glorot_uniform,he_normal", "--quiet"),
]


def histories(out: Path) -> dict[str, np.ndarray]:
    (folder,) = out.iterdir()
    with np.load(folder / "histories.npz") as npz:
        return {name: npz[name] for name in npz.files}


@pytest.mark.imdb
def test_two_processes_equal_one_process_of_four_devices(imdb_dir, tmp_path):
    env = os.environ | {"TFDS_DATA_DIR": str(imdb_dir), "JAXLAB_CACHE_DIR": str(tmp_path / "c")}
    one, two = tmp_path / "one", tmp_path / "two"
    done = subprocess.run(
        [sys.executable, *SWEEP, "--out", str(one)],
        env=env | {"JAX_NUM_CPU_DEVICES": "4"}, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    launched = subprocess.run(
        [sys.executable, "-m", "jaxlab.launch", "--processes", "2", "--devices-per-process",
         "2", "--", *SWEEP, "--out", str(two)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert len(list(two.iterdir())) == 1  # one results folder, written by process 0
    a, b = histories(one), histories(two)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6)
    # Both processes ran the sweep; only process 0 printed the summary.
    lines = launched.stdout.splitlines()
    assert any(line.startswith("[0] | glorot_uniform") for line in lines)
    assert not any(line.startswith("[1] |") for line in lines)
    assert "[Gloo]" not in launched.stdout


def test_two_processes_checkpoint_stop_on_sigterm_and_resume_exactly(tmp_path):
    """The launcher passes SIGTERM on; both processes stop after the same epoch's checkpoint
    (written by both, Orbax's way) and exit 0; resumed as 2 processes, the sweep equals one
    process of 4 devices that was never interrupted, bit for bit."""
    env = os.environ | {"JAXLAB_CACHE_DIR": str(tmp_path / "cache")}
    one, two = tmp_path / "one", tmp_path / "two"
    done = subprocess.run(
        [sys.executable, str(CHECKPOINTED), "--out", str(one)],
        env=env | {"JAX_NUM_CPU_DEVICES": "4"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    launch = [sys.executable, "-m", "jaxlab.launch", "--processes", "2", "--devices-per-process",
              "2", "--", str(CHECKPOINTED)]  # fmt: skip
    code, stdout, stderr, folder = start_and_stop_after_checkpoints(
        [*launch, "--out", str(two), "--checkpoint-every", "1", "--pause", "0.5"],
        two, env, signal.SIGTERM,
    )  # fmt: skip
    assert code == 0, stdout + stderr
    for process in (0, 1):
        assert f"[{process}] checkpointed_sweep.py: interrupted by SIGTERM" in stdout
    assert results.run_status(folder) == "interrupted"
    resumed = subprocess.run(
        [*launch, "--resume", str(folder)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results.run_status(folder) == "complete"
    assert_same_outputs(next(one.iterdir()), folder)


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
