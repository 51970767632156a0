import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
