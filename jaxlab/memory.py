"""Memory checks before anything is allocated: a sweep's histories against the host's memory,
and each compiled group's models against a device's."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import jax

from jaxlab import engine
from jaxlab.engine import Program
from jaxlab.errors import ConfigError
from jaxlab.sweep_results import METRICS
from jaxlab.train import TrainConfig


def available_memory(device: jax.Device) -> int | None:
    """Bytes one device can hold: the accelerator's limit, or the host's available memory."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_group(program: Program, per_device: int, data, hyper_one, count: int) -> None:
    needed = engine.estimate_bytes(program, per_device, data, hyper_one)
    available = available_memory(jax.local_devices()[0])
    if available is not None and needed > 0.8 * available:
        raise ConfigError(
            f"a group of {count} models needs about {needed / 2**30:.1f} GiB per device but "
            f"only {available / 2**30:.1f} GiB is available; use fewer seeds or grid values, "
            "more devices, or split the sweep"
        )


# Host memory a sweep keeps per compiled group and epoch besides its histories: the epoch's
# seconds and timings entry, fit's history lists and checkpoint records (a generous bound).
EPOCH_BOOKKEEPING_BYTES = 1024


def check_sweep(base: TrainConfig, grid: Mapping[str, Sequence], seeds, groups) -> None:
    """Refuses (:class:`ConfigError`) a sweep whose results would not fit in host memory,
    before anything is allocated: the histories (4 metrics x models x epochs of float32, made
    from a fifth array of NaN) and ``diverged_epoch``, and the per-epoch bookkeeping of every
    group. Each group's models are checked against a device's memory when the group starts."""
    models = math.prod(len(values) for values in grid.values()) * len(seeds)
    epochs = base.epochs
    needed = (len(METRICS) + 1) * models * epochs * 4 + models * 4
    needed += len(groups) * epochs * EPOCH_BOOKKEEPING_BYTES
    available = available_memory(jax.local_devices(backend="cpu")[0])
    if available is None and hasattr(os, "sysconf"):
        try:  # no /proc/meminfo (macOS): the machine's physical memory
            available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            available = None
    if available is not None and needed > 0.8 * available:
        raise ConfigError(
            f"the sweep's histories ({models} model(s) x {epochs} epochs) need about "
            f"{needed / 2**30:.1f} GiB of host memory but only {available / 2**30:.1f} GiB is "
            "available; use fewer epochs, seeds or grid values, or split the sweep"
        )
