"""What a case process uses to measure and report: it prints ``BENCHMARK {json}`` lines (one
per epoch, then its result) for the parent to read."""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from bench.options import MARK, Settings


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
    """IMDB's ``(train, validation)`` as sparse multi-hot rows of width ``s.num_words``."""
    from jaxlab.imdb import load_imdb_multi_hot

    return load_imdb_multi_hot(s.num_words, s.data_dir, s.limit)


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
