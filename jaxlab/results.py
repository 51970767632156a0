"""Results directories that describe themselves: config, seed, versions, device, wall time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from jaxlab.atomic import write_atomically
from jaxlab.errors import ConfigError


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """``root/name-YYYYmmdd-HHMMSS`` (with a suffix if taken), created."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(root)
    for attempt in range(100):
        path = root / (f"{name}-{stamp}" + (f"-{attempt}" if attempt else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {root}")


def check_out_root(root: str | os.PathLike) -> Path:
    """``root`` if results can be written under it (it need not exist yet): refuses, with a
    one-line :class:`ConfigError`, a root that is (or lies under) a file or is not writable."""
    root = Path(root)
    existing = root
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    what = f"--out {root}" if existing == root else f"--out {root} cannot be created: {existing}"
    if not existing.is_dir():
        raise ConfigError(f"{what} is not a folder")
    # os.access alone is not enough: root may write anywhere, and read-only mounts or ACLs
    # are only seen by trying. The probe is a unique temporary file, removed at once.
    if os.access(existing, os.W_OK | os.X_OK):
        try:
            fd, probe = tempfile.mkstemp(dir=existing, prefix=".jaxlab-write-probe")
        except OSError:
            pass
        else:
            os.close(fd)
            os.unlink(probe)
            return root
    raise ConfigError(f"{what} is not writable")


def to_jsonable(value: Any) -> Any:
    """Dataclasses, mappings, numpy values and tuples as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "items"):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes atomically: an interrupted write never leaves a half file behind."""

    def write(f) -> None:
        json.dump(to_jsonable(value), f, indent=2, allow_nan=True)
        f.write("\n")

    write_atomically(path, write, text=True)


@functools.cache
def source_commit() -> str | None:
    """The git commit of the jaxlab source running (``+dirty`` if the code, ``jaxlab/`` or
    ``experiments/``, has uncommitted changes), or None outside a git checkout."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--"]
            + ["jaxlab", "experiments"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


@functools.cache
def environment() -> dict[str, Any]:
    """Versions, backend and devices of this process."""
    import jax

    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy", "tensorflow-datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    devices = jax.devices()
    return {
        "commit": source_commit(),
        "versions": versions,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "processes": jax.process_count(),
        "device_kind": devices[0].device_kind,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores",
    }


def write_run_info(run_dir: Path, **info: Any) -> None:
    """``run.json``: what the caller passes (config, seeds, status, wall time...) plus the
    environment; what earlier calls wrote and this one does not pass is kept."""
    path = Path(run_dir) / "run.json"
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        earlier = {}
    write_json(path, {**earlier, **to_jsonable(info), "environment": environment()})


def run_status(run_dir: str | os.PathLike) -> str | None:
    """A run folder's ``status`` (``running``, ``complete``, ``interrupted``, ``failed``); runs
    written before statuses existed count as complete once their claims.json or summary.json
    is written. None if the folder is not a run."""
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    if "status" in info:
        return info["status"]
    finished = any((run_dir / name).exists() for name in ("claims.json", "summary.md"))
    return "complete" if finished else "running"
