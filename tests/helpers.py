"""Small synthetic datasets for unit tests."""

import numpy as np

from jaxlab import sparse_multi_hot


def synthetic_reviews(n: int, dim: int = 50, seed: int = 0, max_len: int = 12):
    """Random "reviews" whose label depends on which half of the vocabulary dominates."""
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(1, dim, size=rng.integers(1, max_len)).tolist() for _ in range(n)]
    labels = np.array([np.mean(np.array(s) < dim // 2) > 0.5 for s in sequences], np.float32)
    return sparse_multi_hot(sequences, dim), labels
