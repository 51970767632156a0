"""Small synthetic datasets for unit tests, and other helpers the tests share."""

import importlib.util
from pathlib import Path

import numpy as np

from jaxlab import sparse_multi_hot


def synthetic_reviews(n: int, dim: int = 50, seed: int = 0, max_len: int = 12):
    """Random "reviews" whose label depends on which half of the vocabulary dominates."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, dim, size=rng.integers(1, max_len)).tolist() for _ in range(n)]
    labels = np.array([np.mean(np.array(s) < dim // 2) > 0.5 for s in sequences], np.float32)
    return sparse_multi_hot(sequences, dim), labels


def assert_one_line_error(result, message: str) -> None:
    """A script refused bad input the way users should see it: exit 2, one line, no traceback."""
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def load_script(name: str):
    """An experiment script (``experiments/NAME[.py]``) imported as a module."""
    stem = name.removesuffix(".py")
    path = Path(__file__).resolve().parents[1] / "experiments" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
