"""Running the benchmark: one case in this process (``--case``), or, in the parent, every case
in a fresh subprocess within its budget, writing the results as it goes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import report
from bench.options import (
    DEFAULT_MODELS,
    ENV_RECORDED,
    LABELS,
    MARK,
    PLAN_MARGIN,
    QUICK,
    STOP_AFTER,
    Settings,
)
from bench.probe import emit, load_sparse, peak_rss_mib
from jaxlab import results
from jaxlab.errors import ConfigError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"  # what each case process runs


# ---------------------------------------------------------------------------------------------
# One case, in its own process: prints "BENCHMARK {json}" lines (each epoch, then the result).


def run_case_here(spec: dict) -> None:
    s = Settings(**spec["settings"])
    kind, epochs = spec["kind"], spec["epochs"]
    if kind == "jaxlab":
        from bench.jaxlab_case import run_jaxlab_case

        out = run_jaxlab_case(s, spec["formulation"], spec["models"], epochs)
    elif kind in ("keras", "keras-float64"):
        from bench.frameworks import run_keras_case

        out = run_keras_case(s, "float64" if kind == "keras-float64" else "float32", epochs)
    elif kind in ("torch-dense", "torch-bag"):
        from bench.frameworks import run_torch_case

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
    command = [sys.executable, str(SCRIPT), "--case", json.dumps(spec)]
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


def steady(seconds: list[float], warmup: int) -> float:
    return float(np.median(seconds[warmup:]))


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
    missing = report.missing_frameworks(args.frameworks)
    notes = [
        "JAX (XLA) and TensorFlow use every usable CPU core by default; PyTorch runs "
        f"torch.set_num_threads({s.torch_threads}).",
        *missing.values(),
    ]
    for note in notes[1:]:
        print(note)
    frameworks = [f for f in args.frameworks if f not in missing]
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
        "machine": report.machine(),
        "code": report.code_version(),
        "notes": notes,
        "cases": cases,
    }

    def save() -> None:
        report.add_ratios(cases)
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
    text = report.table(cases)
    if args.quick:
        text += f"\n\n(quick mode: a {s.limit}-review subset; these timings are not evidence)"
    where = report.machine()
    title = (
        f"IMDB, {len(train)} train + {len(test)} validation reviews, batch {s.batch_size}\n"
        f"{where['cpu_model']}, {where['cpus_usable']} CPUs"
    )
    report.plot(cases, run_dir / "benchmark.png", title)
    (run_dir / "summary.md").write_text(text + "\n")
    save()
    print(text)
    print(f"results in {run_dir} (benchmark.json, benchmark.png, summary.md)")
