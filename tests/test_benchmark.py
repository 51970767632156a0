"""experiments/benchmark.py (and its bench package): its options, its budget logic, and a quick
run on real IMDB.

Timings are only checked to be positive: speed depends on the machine and never fails a test.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from helpers import assert_one_line_error

SCRIPT = REPO / "experiments" / "benchmark.py"


def run_benchmark(*args, env_extra=None, timeout=300, cwd=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def benchmark():
    """The script as a module, with its package's modules as ``options``, ``report`` and
    ``runner`` (it imports no JAX at module level, so this is cheap)."""
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_help_works_from_any_directory(tmp_path):
    result = run_benchmark("--help", cwd=tmp_path)  # finds its bench package beside it
    assert result.returncode == 0, result.stderr
    assert "Speed and memory of training the lesson's IMDB model" in result.stdout
    for option in ("--models", "--formulations", "--frameworks", "--max-seconds", "--quick"):
        assert option in result.stdout
    assert "--case" not in result.stdout  # internal


def test_loading_the_script_and_its_cases_imports_no_jax(tmp_path):
    # The Keras and PyTorch cases run the script too: no JAX runtime may come with it.
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("benchmark_script", {str(SCRIPT)!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
import bench.frameworks, bench.jaxlab_case, bench.probe
module.build_parser()
print(sorted(m for m in ("jax", "keras", "torch", "matplotlib") if m in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "need --warmup-epochs >= 0 and --epochs >= 1"),
        (["--max-seconds", "0"], "--max-seconds must be positive"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(args, message, tmp_path):
    assert_one_line_error(run_benchmark(*args, "--out", str(tmp_path)), message)


def test_unknown_formulation_is_refused():
    result = run_benchmark("--formulations", "sparse,onehot")
    assert result.returncode == 2 and "expected a comma-separated subset" in result.stderr


def test_budget_runs_fewer_epochs_or_skips(benchmark):
    settings = benchmark.options.Settings(None, 10000, None, 512, 1, 3, 2)
    plan_epochs = benchmark.runner.plan_epochs
    # M=8 took 10 s per epoch, 20 s besides its epochs, and compiled for 5 s.
    previous = {
        "models": 8,
        "status": "ok",
        "steady_epoch_s": 10.0,
        "epoch_seconds": [15.0, 10.0, 10.0, 10.0],
        "case_wall_s": 65.0,
        "compile_s": 5.0,
    }
    assert plan_epochs(None, 64, settings, 100.0) == (3, "")
    assert plan_epochs(previous, 16, settings, 1000.0) == (3, "")
    # M=16: 20 + (20 + 5) + k * 20 s, x1.25 margin: 3 timed epochs need 131 s, 1 needs 81 s.
    timed, note = plan_epochs(previous, 16, settings, 90.0)
    assert timed == 1 and "instead of 3" in note
    timed, note = plan_epochs(previous, 64, settings, 100.0)
    assert timed == 0 and note.startswith("skipped: predicted")
    failed = {**previous, "status": "timeout"}
    assert plan_epochs(failed, 64, settings, 1e9) == (0, "skipped: M=8 already timeout")


def test_steady_time_is_the_median_after_warmup_per_model(benchmark):
    ok = {"status": "ok", "epoch_seconds": [9.0, 2.0, 4.0, 3.0]}
    record = benchmark.runner.summarize(ok, 1, 4)
    assert record["first_epoch_s"] == 9.0 and record["timed_epochs"] == 3
    assert record["steady_epoch_s"] == 3.0 and record["ms_per_model_epoch"] == 750.0
    stopped = {"status": "timeout", "note": "stopped", "epoch_seconds": [9.0, 2.0]}
    record = benchmark.runner.summarize(stopped, 1, 1)
    assert record["timed_epochs"] == 1 and "times from the 1 timed epoch(s) done" in record["note"]
    early = benchmark.runner.summarize(
        {"status": "timeout", "note": "", "epoch_seconds": [9.0]}, 1, 1
    )
    assert "steady_epoch_s" not in early


@pytest.mark.parametrize("formulation", ["sparse", "dense", "ffi"])
def test_jaxlab_case_trains_the_lessons_network_with_its_first_layer(benchmark, formulation):
    from bench.jaxlab_case import jaxlab_config  # found: loading the script put it on sys.path

    settings = benchmark.options.Settings(None, 10000, None, 256, 2, 3, 2)
    config = jaxlab_config(settings, formulation, 3)
    assert config.input_layer == formulation and config.model == "mlp"
    assert config.epochs == 5 and config.batch_size == 256 and config.optimizer == "rmsprop"
    hyper = config.model_hyperparameters()
    assert hyper["hidden"] == (16, 16) and hyper["activation"] == "relu"
    assert hyper["kernel_init"] == "glorot_uniform" and hyper["dropout"] == 0.0


def test_ratios_are_against_single_model_keras_and_embedding_bag(benchmark):
    cases = [
        {"implementation": "jaxlab-sparse", "models": 8, "ms_per_model_epoch": 100.0},
        {"implementation": "keras", "models": 1, "ms_per_model_epoch": 1000.0},
        {"implementation": "torch-bag", "models": 1, "ms_per_model_epoch": 500.0},
        {"implementation": "jaxlab-dense", "models": 256, "status": "skipped"},
    ]
    benchmark.report.add_ratios(cases)
    assert cases[0]["vs_keras"] == 10.0 and cases[0]["vs_embedding_bag"] == 5.0
    assert cases[1]["vs_keras"] == 1.0 and cases[2]["vs_embedding_bag"] == 1.0
    assert cases[3]["vs_keras"] is None


def test_missing_frameworks_are_named_and_skipped(benchmark, monkeypatch):
    real = importlib.util.find_spec

    def without_torch(name, *args):
        return None if name == "torch" else real(name, *args)

    monkeypatch.setattr(benchmark.report.importlib.util, "find_spec", without_torch)
    missing = benchmark.report.missing_frameworks(["torch-dense", "torch-bag"])
    assert set(missing) == {"torch-dense", "torch-bag"}
    assert "torch not installed (pip install -e '.[bench]')" in missing["torch-bag"]


def read_run(out):
    (run_dir,) = out.iterdir()
    return run_dir, json.loads((run_dir / "benchmark.json").read_text())


@pytest.mark.imdb
def test_quick_run_on_real_imdb(imdb, imdb_dir, imdb_cache, tmp_path):
    # `imdb` fills imdb_cache once per session, so this test does not pay for tokenizing.
    # One case of each kind (the dense formulation differs only in a config value, PyTorch's
    # dense input in a few lines), to stay within ~40 s on two cores.
    result = run_benchmark(
        *("--quick", "--models", "2", "--formulations", "sparse"),
        *("--frameworks", "keras,torch-bag", "--quiet"),
        *("--data-dir", str(imdb_dir), "--out", str(tmp_path)),
        env_extra={"JAXLAB_CACHE_DIR": str(imdb_cache)},
    )
    assert result.returncode == 0, result.stderr
    run_dir, info = read_run(tmp_path)
    assert info["quick"] is True and info["settings"]["limit"] == 1000
    assert info["settings"]["models"] == [2] and info["settings"]["epochs"] == 1
    machine = info["machine"]
    for key in ("platform", "cpu_count", "cpu_model", "versions"):
        assert key in machine
    assert machine["cpu_count"] >= 1 and machine["versions"]["jax"]
    cases = {(c["implementation"], c["models"]): c for c in info["cases"]}
    expected = {("jaxlab-sparse", 2)}
    installed = {
        "keras": all(importlib.util.find_spec(m) for m in ("keras", "tensorflow")),
        "torch-bag": importlib.util.find_spec("torch") is not None,
    }
    for name, present in installed.items():
        if present:
            expected.add((name, 1))
        else:
            assert any("not installed" in note for note in info["notes"])
    assert set(cases) == expected
    for (name, models), case in cases.items():
        assert case["status"] == "ok", case
        assert case["timed_epochs"] == 1 and len(case["epoch_seconds"]) == 2
        assert case["first_epoch_s"] > 0 and case["steady_epoch_s"] > 0
        assert case["ms_per_model_epoch"] == pytest.approx(case["steady_epoch_s"] / models * 1000)
        assert case["peak_rss_mib"] > 0 and 0 <= case["val_accuracy"] <= 1
        if name.startswith("jaxlab"):
            assert case["compile_s"] > 0
        if installed["keras"]:
            assert case["vs_keras"] > 0
    assert (run_dir / "benchmark.png").stat().st_size > 10_000
    summary = (run_dir / "summary.md").read_text()
    assert "| jaxlab sparse | 2 |" in summary and "quick mode" in summary
    assert "results in" in result.stdout


@pytest.mark.imdb
def test_a_case_over_budget_is_recorded_not_hidden(imdb, imdb_dir, imdb_cache, tmp_path):
    result = run_benchmark(
        "--quick",
        *("--formulations", "sparse", "--frameworks", "none", "--max-seconds", "1", "--quiet"),
        *("--data-dir", str(imdb_dir), "--out", str(tmp_path)),
        env_extra={"JAXLAB_CACHE_DIR": str(imdb_cache)},
    )
    assert result.returncode == 0, result.stderr
    _, info = read_run(tmp_path)
    first, second = info["cases"]
    assert first["status"] == "timeout" and "--max-seconds" in first["note"]
    assert second["status"] == "skipped" and "M=1 already timeout" in second["note"]
    assert "**timeout**" in result.stdout and "**skipped**" in result.stdout
