import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The suite's time is mostly XLA compiling many small programs. Without LLVM's backend
# optimizations they compile about a third faster (measured: 3.2-4.0 -> 2.2-2.4 s for a small
# fit) and agree with the optimized build to float rounding; every comparison in the tests is
# between programs compiled the same way, and no test times anything. Set before JAX starts,
# and inherited by the scripts the tests run. A user's own XLA_FLAGS setting is kept.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def imdb_data_dir() -> Path | None:
    """TFDS_DATA_DIR if set, else ../shared/data/tensorflow_datasets beside the repo."""
    candidates = [os.environ.get("TFDS_DATA_DIR"), REPO.parent / "shared/data/tensorflow_datasets"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "imdb_reviews").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    found = imdb_data_dir()
    if found is None:
        message = "no prepared imdb_reviews in TFDS_DATA_DIR or ../shared/data/tensorflow_datasets"
        if os.environ.get("JAXLAB_REQUIRE_IMDB"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def imdb_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imdb_cache")


@pytest.fixture(scope="session")
def imdb(imdb_dir, imdb_cache):
    """The lesson's IMDB, num_words=10000, loaded once per test session."""
    from jaxlab import load_imdb

    return load_imdb(num_words=10000, data_dir=imdb_dir, cache_dir=imdb_cache, download=False)


@pytest.fixture(scope="session")
def baseline():
    """experiments/imdb_baseline.py as a module."""
    from helpers import load_script

    return load_script("imdb_baseline")
