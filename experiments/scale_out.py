"""What checkpoints and many processes cost: the lesson's network on IMDB, 64 models per sweep.

    python experiments/scale_out.py                  # both measurements, ~10 min on 2 cores
    python experiments/scale_out.py --only checkpoints --epochs 6

``checkpoints``: the same sweep checkpointed only at its end (the default for epochs this short)
and after every epoch (Orbax, asynchronous), alternated ``--repeats`` times; the cost is the
median over these pairs of the difference of their median epoch times (the first epoch, which
compiles, is left out), and of their CPU times per added checkpoint.
``processes``: the same sweep as one process of ``--devices`` CPU devices and as ``--devices``
processes of one device each (:mod:`jaxlab.launch`), wall time of the whole script. Writes
scale_out.json to a new folder under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxlab import cli, results

HERE = Path(__file__).resolve().parent
# 4 initializers x 16 seeds = 64 models of the lesson's network, in one compiled group.
INITS = "glorot_uniform,he_normal,lecun_normal,normal_1"
CORES = os.cpu_count() or 1


def sweep_command(args: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    command = [str(HERE / "imdb_overfitting.py"), "--seeds", str(args.seeds), "--inits", INITS]
    command += ["--epochs", str(args.epochs), "--out", str(out), "--quiet"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return [*command, *extra]


def epoch_seconds(out: Path) -> list[float]:
    """The epoch times a run of imdb_overfitting.py saved (its timings)."""
    (folder,) = out.iterdir()
    info = json.loads((folder / "run.json").read_text())
    return info["epoch_seconds"]


def cpu_seconds() -> float:
    """CPU time (user and system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Runs ``command`` in Python; its wall time and CPU time in seconds."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise cli.ConfigError(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - start, cpu_seconds() - start_cpu


def checkpoint_cost(args: argparse.Namespace, env: dict[str, str]) -> dict:
    # Without --checkpoint-every, epochs this short are not checkpointed: only the group's end.
    variants = (("group end only", []), ("every epoch", ["--checkpoint-every", "1"]))
    rows, cpu = {name: [] for name, _ in variants}, {name: [] for name, _ in variants}
    for repeat in range(args.repeats):
        for name, extra in variants:
            with tempfile.TemporaryDirectory() as out:
                cpu[name].append(run(sweep_command(args, Path(out), *extra), env)[1])
                rows[name].append(epoch_seconds(Path(out))[1:])
            print(f"repeat {repeat + 1}, checkpoints {name}: {np.median(rows[name][-1]):.3f} s")
    # Each repeat is a pair of runs back to back; the cost is the median of the pairs'
    # differences of median epoch times (a shared, noisy machine drifts between pairs).
    (plain, every), extra = rows, args.epochs - 1  # checkpoints the second run adds
    per_run = {name: [float(np.median(times)) for times in runs] for name, runs in rows.items()}
    costs = [b - a for a, b in zip(per_run[plain], per_run[every], strict=True)]
    cost, epoch = float(np.median(costs)), float(np.median(per_run[plain]))
    cpu_costs = [(b - a) / extra for a, b in zip(cpu[plain], cpu[every], strict=True)]
    return {
        "models": 4 * args.seeds,
        "median_epoch_seconds": per_run,
        "checkpoint_seconds_per_epoch": cost,
        "checkpoint_fraction_of_epoch": cost / epoch,
        # CPU time is steadier than wall time on a shared machine: each added checkpoint's
        # CPU time, against one epoch's wall time on all the machine's cores.
        "cpu_seconds": cpu,
        "checkpoint_cpu_seconds": float(np.median(cpu_costs)),
        "checkpoint_cpu_fraction_of_epoch": float(np.median(cpu_costs)) / (epoch * CORES),
        "epoch_seconds": rows,
    }


def process_cost(args: argparse.Namespace, env: dict[str, str]) -> dict:
    walls = {"1 process": [], f"{args.devices} processes": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            one = env | {"JAX_NUM_CPU_DEVICES": str(args.devices)}
            walls["1 process"].append(run(sweep_command(args, Path(out)), one)[0])
        with tempfile.TemporaryDirectory() as out:
            launch = ["-m", "jaxlab.launch", "--processes", str(args.devices), "--"]
            walls[f"{args.devices} processes"].append(
                run([*launch, *sweep_command(args, Path(out))], env)[0]
            )
        print({name: f"{times[-1]:.1f} s" for name, times in walls.items()})
    return {"devices": args.devices, "wall_seconds": walls}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("checkpoints", "processes"), default=None)
    parser.add_argument("--seeds", type=int, default=16, help="seeds per initializer (x4 models)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=2, help="devices = processes compared")
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR"))
    parser.add_argument("--out", default="results")
    return parser


def main(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    report = {"environment": results.environment(), "epochs": args.epochs}
    if args.only in (None, "checkpoints"):
        report["checkpoints"] = checkpoint_cost(args, env)
        print(json.dumps({k: v for k, v in report["checkpoints"].items() if k != "epoch_seconds"}))
    if args.only in (None, "processes"):
        report["processes"] = process_cost(args, env)
    folder = results.new_run_dir(args.out, "scale_out")
    results.write_json(folder / "scale_out.json", report)
    print(f"results in {folder}")


if __name__ == "__main__":
    cli.run(main, build_parser())
