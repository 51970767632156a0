"""Speed and memory of training the lesson's IMDB model: jaxlab's sparse, dense and ffi first
layers with M models at once, beside the lesson's Keras program and two PyTorch versions.

    python experiments/benchmark.py                      # M = 1,8,64,256; Keras and PyTorch too
    python experiments/benchmark.py --models 1,64 --formulations sparse --frameworks none
    python experiments/benchmark.py --quick              # a smoke run, well under a minute

A model-epoch is one model's pass over the training reviews (batch 512, RMSprop) plus its
validation pass over the test reviews. Every case runs in a fresh subprocess, so its peak memory
is its own. The first epochs are warm-up (compilation, tracing, allocation); steady-state time is
the median of the epochs after them. Writes benchmark.json, benchmark.png and summary.md to a new
folder under --out and prints a table. Timings depend on whatever else the machine is running:
the load average is recorded beside every case.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# No JAX at module level: the Keras and PyTorch cases run this file too and should carry no
# JAX runtime (threads, memory) into their measurements.
from jaxlab import cli, results
from jaxlab.errors import ConfigError

INPUT_LAYERS = ("sparse", "dense", "ffi")
REPO = Path(__file__).resolve().parents[1]  # jaxlab.models.INPUT_LAYERS, without importing JAX

DEFAULT_MODELS = (1, 8, 64, 256)
FRAMEWORKS = ("keras", "torch-dense", "torch-bag")
QUICK = {"limit": 1000, "models": (1, 2), "warmup_epochs": 1, "epochs": 1}
ENV_RECORDED = ("KERAS_BACKEND", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLA_FLAGS")
PLAN_MARGIN = 1.25  # predicted seconds x this must fit --max-seconds
STOP_AFTER = 1.5  # a case still running at this x --max-seconds is stopped
MARK = "BENCHMARK"  # prefix of the JSON lines a case prints for the parent
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "torch",
)
LABELS = {
    "keras": "Keras (float32 multi-hot)",
    "keras-float64": "Keras (lesson's float64 vectorize)",
    "torch-dense": "PyTorch nn.Linear (dense multi-hot)",
    "torch-bag": "PyTorch nn.EmbeddingBag(sum)",
}


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,64, got {text!r}") from None
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, got {text!r}")
    return sorted(values)


def parse_names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if names == ["none"]:
            return []
        unknown = [n for n in names if n not in allowed]
        if unknown or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(allowed)} (or none), got {text!r}"
            )
        return names

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        type=parse_ints,
        default=None,
        help="numbers of models trained at once (default: 1,8,64,256; quick: 1,2)",
    )
    parser.add_argument(
        "--formulations",
        type=parse_names(INPUT_LAYERS),
        default=list(INPUT_LAYERS),
        help="jaxlab first layers: sparse (gather + segment sum), dense (one-hot matmul), "
        "ffi (C++ kernel; needs a C++ compiler)",
    )
    parser.add_argument(
        "--frameworks",
        type=parse_names(FRAMEWORKS),
        default=list(FRAMEWORKS),
        help="comparisons to run if the bench extra is installed (default: all; none: skip)",
    )
    parser.add_argument(
        "--keras-float64",
        action="store_true",
        help="also run Keras on the lesson's exact float64 vectorize_sequences (its memory)",
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=None, help="untimed first epochs (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs after the warm-up (default 3)"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="budget per case (default 300): a case predicted to exceed it (from the previous M, "
        f"with a {PLAN_MARGIN}x margin) runs fewer timed epochs (down to 1) or is skipped; a case "
        f"still running at {STOP_AFTER}x the budget is stopped (recorded: timeout)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=2, help="torch.set_num_threads (default 2)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK['limit']} reviews, M={','.join(map(str, QUICK['models']))}, "
        f"{QUICK['warmup_epochs']} warm-up + {QUICK['epochs']} timed epoch unless given "
        "(its numbers are not evidence)",
    )
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, as JSON
    cli.add_data_args(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every case shares."""

    data_dir: str | None
    num_words: int
    limit: int | None
    batch_size: int
    warmup_epochs: int
    epochs: int
    torch_threads: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        defaults = QUICK if args.quick else {"limit": None, "warmup_epochs": 1, "epochs": 3}
        limit, warmup, epochs = (
            defaults[name] if getattr(args, name) is None else getattr(args, name)
            for name in ("limit", "warmup_epochs", "epochs")
        )
        if warmup < 0 or epochs < 1:
            raise ConfigError(
                f"need --warmup-epochs >= 0 and --epochs >= 1, got {warmup}, {epochs}"
            )
        if args.batch_size < 1 or args.torch_threads < 1 or not args.max_seconds > 0:
            raise ConfigError("--batch-size, --torch-threads and --max-seconds must be positive")
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be positive, got {limit}")
        data_dir = str(args.data_dir) if args.data_dir is not None else None
        return cls(
            data_dir, args.num_words, limit, args.batch_size, warmup, epochs, args.torch_threads
        )


# ---------------------------------------------------------------------------------------------
# One case, in its own process: prints "BENCHMARK {json}" lines (each epoch, then the result).


def emit(event: str, **payload: Any) -> None:
    print(f"{MARK} {json.dumps({'event': event, **payload})}", flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started its program.

    Linux's ``ru_maxrss`` keeps the peak of the process image replaced by ``exec``, i.e. of the
    parent that spawned this case, so ``VmHWM`` (per address space) is read where it exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def load_sparse(s: Settings):
    from jaxlab.imdb import load_imdb_multi_hot

    return load_imdb_multi_hot(s.num_words, s.data_dir, s.limit)


def steady(seconds: list[float], warmup: int) -> float:
    return float(np.median(seconds[warmup:]))


def run_jaxlab_case(s: Settings, formulation: str, models: int, epochs: int) -> dict:
    from jax import monitoring

    from jaxlab.models import ModelConfig
    from jaxlab.sweep import run_sweep
    from jaxlab.train import TrainConfig

    compiling = [0.0]

    def on_duration(event: str, duration: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):  # tracing, lowering, XLA compilation
            compiling[0] += duration

    monitoring.register_event_duration_secs_listener(on_duration)
    train, validation = load_sparse(s)
    rss_data = peak_rss_mib()
    model = ModelConfig(input_layer=formulation, num_words=s.num_words)
    base = TrainConfig(model=model, epochs=s.warmup_epochs + epochs, batch_size=s.batch_size)
    per_epoch_compile = []

    def on_epoch_end(result) -> None:
        per_epoch_compile.append(compiling[0] - sum(per_epoch_compile))
        emit("epoch", seconds=result.seconds[-1], peak_rss_mib=peak_rss_mib())

    start = time.perf_counter()
    result = run_sweep(
        base,
        {},
        list(range(models)),
        train,
        validation,
        verbose=False,
        on_epoch_end=on_epoch_end,
        check_memory=False,  # memory is measured here, not estimated beforehand
    )
    return {
        "epoch_seconds": result.seconds,
        "sweep_seconds": time.perf_counter() - start,
        "compile_s": compiling[0],
        "compile_s_in_timed_epochs": sum(per_epoch_compile[s.warmup_epochs :]),
        "val_accuracy": float(np.nanmean(result.histories["val_accuracy"][..., -1])),
        "rss_after_data_mib": rss_data,
    }


def lesson_vectorize(sequences, dimension: int) -> np.ndarray:
    """The lesson's ``vectorize_sequences``, float64 as written there."""
    out = np.zeros((len(sequences), dimension))
    for i, sequence in enumerate(sequences):
        out[i, sequence] = 1.0
    return out


class EpochTimer:
    """Wall time of each epoch, training and validation together."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def begin(self) -> None:
        self._start = time.perf_counter()

    def end(self) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        emit("epoch", seconds=self.seconds[-1], peak_rss_mib=peak_rss_mib())


def run_keras_case(s: Settings, dtype: str, epochs: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    if dtype == "float64":
        from jaxlab.imdb import load_imdb

        (x_train, y_train), (x_test, y_test) = load_imdb(s.num_words, s.data_dir)
        if s.limit is not None:
            rows = [np.arange(min(s.limit, len(x))) for x in (x_train, x_test)]
            x_train, y_train = x_train.take(rows[0]), y_train[rows[0]]
            x_test, y_test = x_test.take(rows[1]), y_test[rows[1]]
        x_train = lesson_vectorize(x_train, s.num_words)
        x_test = lesson_vectorize(x_test, s.num_words)
        y_train, y_test = (
            np.asarray(y_train).astype("float32"),
            np.asarray(y_test).astype("float32"),
        )
    else:
        (train, train_labels), (test, test_labels) = load_sparse(s)
        x_train, y_train, x_test, y_test = (
            train.to_dense(),
            train_labels,
            test.to_dense(),
            test_labels,
        )
    rss_data = peak_rss_mib()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(s.num_words,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    callback = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: timer.begin(),
        on_epoch_end=lambda epoch, logs: timer.end(),  # after validation
    )
    start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        epochs=s.warmup_epochs + epochs,
        batch_size=s.batch_size,
        validation_data=(x_test, y_test),
        callbacks=[callback],
        verbose=0,
    )
    return {
        "epoch_seconds": timer.seconds,
        "fit_seconds": time.perf_counter() - start,
        "val_accuracy": float(history.history["val_accuracy"][-1]),
        "rss_after_data_mib": rss_data,
        "input_dtype": str(x_train.dtype),
        "backend": keras.backend.backend(),
    }


def run_torch_case(s: Settings, bag: bool, epochs: int) -> dict:
    import torch
    from torch import nn
    from torch.nn import functional

    torch.set_num_threads(s.torch_threads)
    torch.manual_seed(0)
    (train, train_labels), (test, test_labels) = load_sparse(s)
    if bag:  # each review's unique word indices, and where each review starts

        def inputs_of(data, rows):
            taken = data.take(rows)
            return torch.from_numpy(taken.indices.astype(np.int64)), torch.from_numpy(
                taken.offsets[:-1].astype(np.int64)
            )

        sources = {"train": train, "test": test}
    else:
        dense = {
            "train": torch.from_numpy(train.to_dense()),
            "test": torch.from_numpy(test.to_dense()),
        }

        def inputs_of(data, rows):
            return data.index_select(0, torch.from_numpy(rows))

        sources = dense
    labels = {"train": torch.from_numpy(train_labels), "test": torch.from_numpy(test_labels)}
    rss_data = peak_rss_mib()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            if bag:
                self.first = nn.EmbeddingBag(s.num_words, 16, mode="sum")
                self.first_bias = nn.Parameter(torch.zeros(16))
            else:
                self.first = nn.Linear(s.num_words, 16)
            self.hidden = nn.Linear(16, 16)
            self.output = nn.Linear(16, 1)
            for module in self.modules():  # Keras's glorot_uniform kernels, zero biases
                if isinstance(module, nn.Linear | nn.EmbeddingBag):
                    nn.init.xavier_uniform_(module.weight)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

        def forward(self, inputs):
            x = self.first(*inputs) + self.first_bias if bag else self.first(inputs)
            x = torch.relu(self.hidden(torch.relu(x)))
            return self.output(x)[:, 0]

    net = Net()
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    rng = np.random.default_rng(0)
    n_train, n_test = len(train_labels), len(test_labels)
    timer = EpochTimer()
    val_loss = val_accuracy = float("nan")
    for _ in range(s.warmup_epochs + epochs):
        timer.begin()
        order = rng.permutation(n_train)
        net.train()
        for start in range(0, n_train, s.batch_size):
            rows = order[start : start + s.batch_size]
            y = labels["train"][torch.from_numpy(rows)]
            optimizer.zero_grad(set_to_none=True)
            logits = net(inputs_of(sources["train"], rows))
            loss = functional.binary_cross_entropy_with_logits(logits, y)
            loss.backward()
            optimizer.step()
        net.eval()
        val_loss, correct = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, n_test, s.batch_size):
                rows = np.arange(start, min(start + s.batch_size, n_test))
                logits = net(inputs_of(sources["test"], rows))
                y = labels["test"][torch.from_numpy(rows)]
                loss = functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
                val_loss += float(loss)
                correct += float(((logits > 0) == (y > 0.5)).sum())
        val_accuracy = correct / n_test
        timer.end()
    return {
        "epoch_seconds": timer.seconds,
        "val_loss": val_loss / n_test,
        "val_accuracy": val_accuracy,
        "rss_after_data_mib": rss_data,
        "threads": torch.get_num_threads(),
    }


def run_case_here(spec: dict) -> None:
    s = Settings(**spec["settings"])
    kind, epochs = spec["kind"], spec["epochs"]
    if kind == "jaxlab":
        out = run_jaxlab_case(s, spec["formulation"], spec["models"], epochs)
    elif kind in ("keras", "keras-float64"):
        out = run_keras_case(s, "float64" if kind == "keras-float64" else "float32", epochs)
    elif kind in ("torch-dense", "torch-bag"):
        out = run_torch_case(s, kind == "torch-bag", epochs)
    else:
        raise ConfigError(f"unknown case kind {kind!r}")
    emit("result", peak_rss_mib=peak_rss_mib(), **out)


# ---------------------------------------------------------------------------------------------
# The parent: runs every case in a subprocess, within its budget, and writes the results.


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def spawn(spec: dict, timeout: float) -> dict:
    """Runs one case in a fresh process; returns its record (status ok, timeout or failed)."""
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if spec["kind"].startswith("keras"):
        env["KERAS_BACKEND"] = "tensorflow"
    if spec["kind"].startswith("torch"):
        # With libgomp's default (spin, then sleep) PyTorch ran 25-30x slower in about half of
        # the runs on a 2-vCPU VM; passive waiting was consistently fast. Set it if unset.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(spec)]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as error:
        stdout, stderr, code = _text(error.stdout), _text(error.stderr), None
    wall = time.perf_counter() - start
    lines = [json.loads(line[len(MARK) :]) for line in stdout.splitlines() if line.startswith(MARK)]
    epochs = [line["seconds"] for line in lines if line["event"] == "epoch"]
    found = [line for line in lines if line["event"] == "result"]
    record: dict[str, Any] = {
        "environment": {k: env[k] for k in ENV_RECORDED if k in env},
        "case_wall_s": wall,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "epoch_seconds": epochs,
    }
    if code is None:
        record |= {
            "status": "timeout",
            "note": f"stopped after {timeout:.0f} s ({STOP_AFTER}x --max-seconds) with "
            f"{len(epochs)} of {spec['settings']['warmup_epochs'] + spec['epochs']} epochs done",
        }
        if epochs:  # the memory it had reached by its last finished epoch
            record["peak_rss_mib"] = [ln for ln in lines if ln["event"] == "epoch"][-1][
                "peak_rss_mib"
            ]
    elif code != 0 or not found:
        last = (stderr.strip().splitlines() or ["no output"])[-1][:300]
        record |= {"status": "failed", "note": f"exit code {code}: {last}"}
    else:
        result = dict(found[0])
        result.pop("event")
        record |= {"status": "ok", **result}
    return record


def summarize(record: dict, warmup: int, models: int) -> dict:
    """Adds first-epoch and steady-state times and ms per model-epoch, from the epochs done
    (a stopped case keeps the numbers of the timed epochs it finished, and says so)."""
    seconds = record.get("epoch_seconds", [])
    if seconds:
        record["first_epoch_s"] = seconds[0]
    if record["status"] in ("ok", "timeout") and len(seconds) > warmup:
        record["timed_epochs"] = len(seconds) - warmup
        record["steady_epoch_s"] = steady(seconds, warmup)
        record["ms_per_model_epoch"] = record["steady_epoch_s"] / models * 1000
        if record["status"] == "timeout":
            record["note"] += f"; times from the {record['timed_epochs']} timed epoch(s) done"
    return record


def plan_epochs(previous: dict | None, models: int, s: Settings, budget: float) -> tuple[int, str]:
    """Timed epochs that fit ``budget`` by a linear-in-M prediction from the previous M of the
    same formulation (0: skip), and a note saying why fewer than asked."""
    if previous is None:
        return s.epochs, ""
    if previous["status"] != "ok":
        return 0, f"skipped: M={previous['models']} already {previous['status']}"
    scale = models / previous["models"]
    epoch = previous["steady_epoch_s"] * scale
    overhead = previous["case_wall_s"] - sum(previous["epoch_seconds"])
    first = epoch + previous.get("compile_s", 0.0)
    for timed in range(s.epochs, 0, -1):
        predicted = overhead + first + (s.warmup_epochs - 1) * epoch + timed * epoch
        if predicted * PLAN_MARGIN <= budget:
            if timed == s.epochs:
                return timed, ""
            return timed, f"{timed} timed epoch(s) instead of {s.epochs} to fit --max-seconds"
    predicted = overhead + first + s.warmup_epochs * epoch
    return 0, (
        f"skipped: predicted ~{predicted:.0f} s for one timed epoch (from M="
        f"{previous['models']}; x{PLAN_MARGIN} margin) exceeds --max-seconds {budget:.0f}"
    )


def code_version() -> dict:
    """The commit measured, and which of jaxlab's files differ from it (uncommitted edits)."""

    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *command], capture_output=True, text=True, cwd=REPO, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip() if done.returncode == 0 else None

    changed = git("status", "--porcelain", "--", "jaxlab")
    return {
        "commit": git("rev-parse", "HEAD"),
        "jaxlab_uncommitted": [line[3:] for line in changed.splitlines()] if changed else [],
    }


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict:
    try:
        with open("/proc/meminfo") as f:
            memory = int(dict(line.split(":", 1) for line in f)["MemTotal"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        memory = None
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "versions": versions,
        "jax_backend": results.environment()["backend"],
        "jax_devices": results.environment()["devices"],
    }


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_frameworks(frameworks: list[str]) -> dict[str, str]:
    """Framework -> why it cannot run here (not installed)."""
    missing = {}
    for name in frameworks:
        needs = ("keras", "tensorflow") if name.startswith("keras") else ("torch",)
        absent = [m for m in needs if not installed(m)]
        if absent:
            missing[name] = (
                f"{', '.join(absent)} not installed (pip install -e '.[bench]'); "
                f"skipping {LABELS[name]}"
            )
    return missing


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def add_ratios(cases: list[dict]) -> None:
    """``vs_keras``: Keras's ms per model-epoch / this case's (above 1: faster than Keras);
    ``vs_embedding_bag`` likewise against PyTorch's EmbeddingBag."""
    by_name = {c["implementation"]: c.get("ms_per_model_epoch") for c in cases if c["models"] == 1}
    for case in cases:
        own = case.get("ms_per_model_epoch")
        case["vs_keras"] = ratio(by_name.get("keras"), own)
        case["vs_embedding_bag"] = ratio(by_name.get("torch-bag"), own)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table(cases: list[dict]) -> str:
    lines = [
        "| implementation | M | first epoch s | compile s | steady epoch s | ms per model-epoch "
        "| Keras ÷ this | EmbeddingBag ÷ this | peak RSS MiB | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        note = c.get("note", "") if c["status"] == "ok" else f"**{c['status']}**: {c['note']}"
        lines.append(
            f"| {c['label']} | {c['models']} | {fmt(c.get('first_epoch_s'), '.2f')} "
            f"| {fmt(c.get('compile_s'), '.1f')} | {fmt(c.get('steady_epoch_s'), '.3f')} "
            f"| {fmt(c.get('ms_per_model_epoch'), '.1f')} | {fmt(c.get('vs_keras'), '.1f', 'x')} "
            f"| {fmt(c.get('vs_embedding_bag'), '.1f', 'x')} | {fmt(c.get('peak_rss_mib'), '.0f')} "
            f"| {note} |"
        )
    return "\n".join(lines)


def plot(cases: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from jaxlab import plotting  # noqa: F401  (selects the Agg backend)

    fig, ax = plt.subplots(figsize=(7.5, 6))
    all_models = sorted({c["models"] for c in cases if "formulation" in c})
    for formulation, marker in zip(INPUT_LAYERS, ("o", "s", "^"), strict=False):
        mine = [c for c in cases if c.get("formulation") == formulation]
        points = [(c["models"], c["ms_per_model_epoch"]) for c in mine if "ms_per_model_epoch" in c]
        missing = [f"M={c['models']} {c['status']}" for c in mine if c["status"] != "ok"]
        label = f"jaxlab {formulation}, M models at once"
        if missing:
            label += f" ({', '.join(missing)})"
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, f"-{marker}", label=label)
    styles = {"keras": "r--", "keras-float64": "r:", "torch-dense": "g--", "torch-bag": "g-."}
    for c in cases:
        style = styles.get(c["implementation"])
        if style and "ms_per_model_epoch" in c:
            ax.axhline(
                c["ms_per_model_epoch"], color=style[0], linestyle=style[1:], label=c["label"]
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if all_models:
        ax.set_xticks(all_models)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("models trained at once (M)")
    ax.set_ylabel("ms per model-epoch (train + validate)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # Below the axes: the lines span the plot's whole height.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(args: argparse.Namespace) -> None:
    if args.case is not None:
        run_case_here(json.loads(args.case))
        return
    s = Settings.from_args(args)
    models = args.models or list(QUICK["models"] if args.quick else DEFAULT_MODELS)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    (train, _), (test, _) = load_sparse(s)  # fails early and plainly if IMDB is missing
    run_dir = results.new_run_dir(args.out, "benchmark")
    started = time.perf_counter()
    notes = [
        "JAX (XLA) and TensorFlow use every usable CPU core by default; PyTorch runs "
        f"torch.set_num_threads({s.torch_threads}).",
        *missing_frameworks(args.frameworks).values(),
    ]
    for note in notes[1:]:
        print(note)
    frameworks = [f for f in args.frameworks if f not in missing_frameworks(args.frameworks)]
    if args.keras_float64 and "keras" in frameworks:
        frameworks.insert(frameworks.index("keras") + 1, "keras-float64")
    plan = [("jaxlab", f, m) for f in args.formulations for m in models]
    plan += [(name, None, 1) for name in frameworks]
    cases: list[dict] = []
    info = {
        "experiment": "benchmark",
        "command": [Path(sys.executable).name, *sys.argv],
        "quick": args.quick,
        "settings": {**dataclasses.asdict(s), "models": models, "max_seconds": args.max_seconds},
        "data": {"train_reviews": len(train), "test_reviews": len(test)},
        "machine": machine(),
        "code": code_version(),
        "notes": notes,
        "cases": cases,
    }

    def save() -> None:
        add_ratios(cases)
        info["wall_seconds"] = time.perf_counter() - started
        results.write_json(run_dir / "benchmark.json", info)

    previous: dict[str, dict] = {}
    for kind, formulation, m in plan:
        name = f"jaxlab-{formulation}" if kind == "jaxlab" else kind
        label = f"jaxlab {formulation}" if kind == "jaxlab" else LABELS[kind]
        base = {"implementation": name, "label": label, "models": m}
        if kind == "jaxlab":
            base["formulation"] = formulation
        timed, note = plan_epochs(previous.get(name), m, s, args.max_seconds)
        if timed == 0:
            record = {**base, "status": "skipped", "note": note}
        else:
            say(f"{label}, M={m}: {s.warmup_epochs} warm-up + {timed} timed epoch(s) ...")
            spec = {"kind": kind, "formulation": formulation, "models": m, "epochs": timed}
            record = {
                **base,
                **spawn({**spec, "settings": dataclasses.asdict(s)}, STOP_AFTER * args.max_seconds),
            }
            record = summarize(record, s.warmup_epochs, m)
            if note and record["status"] == "ok":
                record["note"] = note
        previous[name] = record
        cases.append(record)
        if record["status"] == "ok":
            say(
                f"  first epoch {record['first_epoch_s']:.2f} s, steady "
                f"{record['steady_epoch_s']:.3f} s/epoch = "
                f"{record['ms_per_model_epoch']:.1f} ms per model-epoch, "
                f"peak RSS {record['peak_rss_mib']:.0f} MiB"
            )
        else:
            say(f"  {record['status']}: {record['note']}")
        save()
    text = table(cases)
    if args.quick:
        text += f"\n\n(quick mode: a {s.limit}-review subset; these timings are not evidence)"
    where = machine()
    title = (
        f"IMDB, {len(train)} train + {len(test)} validation reviews, batch {s.batch_size}\n"
        f"{where['cpu_model']}, {where['cpus_usable']} CPUs"
    )
    plot(cases, run_dir / "benchmark.png", title)
    (run_dir / "summary.md").write_text(text + "\n")
    save()
    print(text)
    print(f"results in {run_dir} (benchmark.json, benchmark.png, summary.md)")


if __name__ == "__main__":
    cli.run(main, build_parser(), compilation_cache=False)  # compile times are measured
