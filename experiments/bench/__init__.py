"""The pieces of ``experiments/benchmark.py`` (the entry point; run that, not this package).

- :mod:`bench.options`: constants, command-line options and the :class:`Settings` every case
  shares.
- :mod:`bench.probe`: what a case process uses to report: ``BENCHMARK {json}`` lines, peak
  RSS, per-epoch wall time, the IMDB data.
- :mod:`bench.jaxlab_case`: jaxlab's M models at once (sparse, dense or ffi first layer).
- :mod:`bench.frameworks`: the lesson's Keras program and two PyTorch versions.
- :mod:`bench.runner`: one case in this process, or every case in subprocesses within the
  budget (the parent).
- :mod:`bench.report`: the machine and code measured, ratios, the table and the plot.

No module imports JAX (or Keras, or PyTorch) at module level: a case process imports only the
framework it measures, so no other runtime's threads or memory enter its numbers.
"""
