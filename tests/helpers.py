"""Small synthetic datasets for unit tests."""

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
