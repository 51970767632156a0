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

The code is in the ``bench`` package beside this file (see its ``__init__``); this script is its
entry point, and each case's subprocess runs it again with ``--case``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The bench package sits beside this file: found from any working directory, and when this file
# is loaded by path (importlib) rather than run.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# No JAX at module level, here or in bench: the Keras and PyTorch cases run this file too and
# should carry no JAX runtime (threads, memory) into their measurements.
from bench import options, report, runner  # noqa: E402

from jaxlab import cli  # noqa: E402


def build_parser():
    return options.build_parser(__doc__)


main = runner.main

__all__ = ["build_parser", "main", "options", "report", "runner"]

if __name__ == "__main__":
    cli.run(main, build_parser(), compilation_cache=False)  # compile times are measured
