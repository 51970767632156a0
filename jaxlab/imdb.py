"""IMDB reviews from tensorflow-datasets in the form of ``keras.datasets.imdb``.

Reviews come in the order TFDS stores them (TFDS shuffled them once when it prepared the
dataset, so labels are interleaved); jaxlab does not shuffle them again. The word index is built
from the training split only. The encoded dataset is cached on disk, so only the first load
tokenizes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import urllib.parse
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxlab import text
from jaxlab.atomic import write_atomically
from jaxlab.errors import ConfigError, DataNotFoundError
from jaxlab.text import Sequences

DATASET = "imdb_reviews/plain_text"
# The TFDS version jaxlab reads; a prepared copy of another version is refused.
VERSION = "1.0.0"
SPLITS = ("train", "test")
_ARRAYS = ("values", "offsets", "labels")


def default_cache_dir() -> Path:
    """``$JAXLAB_CACHE_DIR``, else ``~/.cache/jaxlab``."""
    return Path(os.environ.get("JAXLAB_CACHE_DIR", Path.home() / ".cache" / "jaxlab"))


@dataclass(frozen=True)
class EncodedImdb:
    """Both splits encoded with the full vocabulary, plus the vocabulary in rank order."""

    splits: dict[str, tuple[Sequences, np.ndarray]]
    vocabulary: list[str]
    version: str


def _builder(data_dir: str | os.PathLike | None):
    import tensorflow_datasets as tfds

    return tfds.builder(f"{DATASET}:{VERSION}", data_dir=data_dir, file_format="array_record")


def _is_prepared(builder) -> bool:
    return (Path(builder.data_dir) / "dataset_info.json").exists()


HOW = (
    "Point jaxlab at a prepared TFDS data dir with --data-dir DIR or the TFDS_DATA_DIR "
    "environment variable (DIR must contain imdb_reviews/plain_text/1.0.0)."
)
REACH_TIMEOUT_S = 10.0  # how long the download host gets to answer before we say it is offline


def check_data_dir(data_dir: str | os.PathLike | None) -> None:
    """An explicit data dir must be an existing folder: a mistyped one is never ignored."""
    if data_dir is None or "://" in str(data_dir):  # default, or a remote (gs://) TFDS dir
        return
    if not Path(data_dir).is_dir():
        what = "is not a folder" if Path(data_dir).exists() else "does not exist"
        raise DataNotFoundError(
            f"IMDB data dir {data_dir} {what} (create it to download IMDB into it). {HOW}"
        )


def _unreachable(urls, timeout: float | None = None) -> str | None:
    """Why no host of ``urls`` (or the proxy for it) accepts a connection within ``timeout``
    seconds (default :data:`REACH_TIMEOUT_S`), name lookup included; None when one does. Each
    try runs in a daemon thread, as a name lookup cannot be given a timeout."""
    timeout = REACH_TIMEOUT_S if timeout is None else timeout
    problems = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        proxy = urllib.request.getproxies().get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        outcome = [f"no answer within {timeout:g} s"]

        def attempt(address=address, outcome=outcome) -> None:
            try:
                socket.create_connection(address, timeout=timeout).close()
                outcome[0] = None
            except OSError as error:
                outcome[0] = f"{type(error).__name__}: {error}"

        thread = threading.Thread(target=attempt, daemon=True)
        thread.start()
        thread.join(timeout)
        if outcome[0] is None:
            return None
        problems.append(f"cannot reach {address[0]}:{address[1]}: {outcome[0]}")
    return "; ".join(problems) or None


def _paths_under(root: Path) -> set[Path]:
    """What TFDS may add to ``root`` while preparing IMDB: the root, its downloads, IMDB."""
    paths = {root} if root.exists() else set()
    for top in (root / "downloads", root / DATASET.split("/")[0]):
        for folder, dirs, files in os.walk(top):
            paths |= {Path(folder)} | {Path(folder) / name for name in dirs + files}
    return paths


def _remove_new(root: Path, before: set[Path]) -> None:
    """Removes what appeared under ``root`` since ``before`` (shallowest first)."""
    for path in sorted(_paths_under(root) - before, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            path.unlink(missing_ok=True)


def _prepared_builder(data_dir: str | os.PathLike | None, download: bool):
    builder = _builder(data_dir)
    if _is_prepared(builder):
        return builder
    where = builder.data_dir
    if not download:
        raise DataNotFoundError(f"IMDB is not prepared at {where}. {HOW}")
    problem = _unreachable(list(builder.url_infos or {}))
    if problem is not None:
        raise DataNotFoundError(
            f"IMDB is not prepared at {where} and downloading it failed ({problem}). {HOW}"
        )
    import tensorflow_datasets as tfds

    root = Path(where).parents[2]  # <root>/imdb_reviews/plain_text/<version>
    before = _paths_under(root)
    try:  # jaxlab reads array_record, which TFDS never takes from its GCS mirror: skip asking
        config = tfds.download.DownloadConfig(try_download_gcs=False)
        builder.download_and_prepare(download_config=config)
    except BaseException as error:  # any failure here means: no data, say so plainly
        _remove_new(root, before)  # nothing half-made stays in the user's data dir
        if not isinstance(error, Exception):
            raise
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise DataNotFoundError(
            f"IMDB is not prepared at {where} and downloading it failed "
            f"({type(error).__name__}: {first_line}). {HOW}"
        ) from error
    return builder


def read_reviews(
    split: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[list[str], np.ndarray]:
    """Raw review texts and 0/1 labels of one split, in TFDS order."""
    check_split(split)
    check_data_dir(data_dir)
    return _read_split(_prepared_builder(data_dir, download), split)


def _read_split(builder, split: str) -> tuple[list[str], np.ndarray]:
    source = builder.as_data_source(split=split)
    records = source.__getitems__(range(len(source)))
    texts = [record["text"].decode("utf-8") for record in records]
    labels = np.asarray([record["label"] for record in records], np.int64)
    return texts, labels


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _cache_path(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"imdb_reviews-{version}-tokenizer{text.TOKENIZER_VERSION}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: zlib.crc32(np.ascontiguousarray(a).view(np.uint8)) for name, a in arrays.items()}


def _encode_from_tfds(data_dir, download: bool) -> EncodedImdb:
    builder = _prepared_builder(data_dir, download)
    raw = {split: _read_split(builder, split) for split in SPLITS}
    tokens = {split: [text.tokenize(review) for review in raw[split][0]] for split in SPLITS}
    word_index = text.build_word_index(tokens["train"])
    splits = {split: (text.encode(tokens[split], word_index), raw[split][1]) for split in SPLITS}
    return EncodedImdb(splits, list(word_index), str(builder.info.version))


def _write_cache(path: Path, encoded: EncodedImdb) -> None:
    arrays = {"vocabulary": np.frombuffer("\n".join(encoded.vocabulary).encode(), np.uint8)}
    for split, (sequences, labels) in encoded.splits.items():
        arrays |= {
            f"{split}_values": sequences.values,
            f"{split}_offsets": sequences.offsets,
            f"{split}_labels": labels,
        }
    meta = {"version": encoded.version, "crc32": _checksum(arrays)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays), sync=True)


def _read_cache(path: Path) -> EncodedImdb:
    """Reads and validates a cache file; raises ValueError if anything is off."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode())
    if _checksum(arrays) != meta["crc32"]:
        raise ValueError("checksum mismatch")
    splits = {}
    for split in SPLITS:
        sequences = Sequences(arrays[f"{split}_values"], arrays[f"{split}_offsets"])
        labels = arrays[f"{split}_labels"]
        if len(labels) != len(sequences):
            raise ValueError("labels and sequences differ in length")
        splits[split] = (sequences, labels)
    vocabulary = arrays["vocabulary"].tobytes().decode().split("\n")
    return EncodedImdb(splits, vocabulary, meta["version"])


def load_encoded(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> EncodedImdb:
    """Both splits with the full vocabulary, from the cache or else from TFDS (then cached).

    An explicit ``data_dir`` must exist even when the cache holds the data.
    """
    check_data_dir(data_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _cache_path(cache_dir, VERSION)
    if path.exists():
        try:
            return _read_cache(path)
        except Exception as error:  # a damaged cache is rebuilt, never trusted
            warnings.warn(f"rebuilding damaged IMDB cache {path} ({error})", stacklevel=2)
    encoded = _encode_from_tfds(data_dir, download)
    try:
        _write_cache(path, encoded)
    except OSError as error:
        warnings.warn(f"could not write IMDB cache {path} ({error})", stacklevel=2)
    return encoded


def load_imdb(
    num_words: int | None = 10000,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> tuple[tuple[Sequences, np.ndarray], tuple[Sequences, np.ndarray]]:
    """``keras.datasets.imdb.load_data(num_words=...)`` from TFDS.

    Returns ``(train_data, train_labels), (test_data, test_labels)``: each review is the start
    token 1 followed by word indices (rank + 3); words of index >= ``num_words`` become 2.

    Args:
      num_words: keep the ``num_words - 3`` most frequent words; None keeps all.
      data_dir: a TFDS data dir; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
      cache_dir: where the encoded dataset is cached; default :func:`default_cache_dir`.
      download: download and prepare IMDB if it is not in ``data_dir``.
    """
    text.check_num_words(num_words)
    encoded = load_encoded(data_dir, cache_dir, download)
    out = []
    for split in SPLITS:
        sequences, labels = encoded.splits[split]
        if num_words is not None:
            sequences = text.limit_vocabulary(sequences, num_words)
        out.append((sequences, labels))
    return out[0], out[1]


def get_word_index(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> dict[str, int]:
    """``keras.datasets.imdb.get_word_index()``: word -> frequency rank (1 = most frequent)."""
    vocabulary = load_encoded(data_dir, cache_dir, download).vocabulary
    return {word: rank for rank, word in enumerate(vocabulary, start=1)}


def index_to_word(word_index: dict[str, int]) -> dict[int, str]:
    """The lesson's inverse dictionary ``index_word``."""
    return {rank: word for word, rank in word_index.items()}


def decode_review(sequence, index_word: dict[int, str]) -> str:
    """The lesson's ``' '.join(index_word.get(i - 3, '?') for i in sequence)``."""
    return text.decode(sequence, index_word)


def load_imdb_multi_hot(
    num_words: int = 10000,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """The lesson's model inputs: ``(x_train, y_train), (x_test, y_test)``.

    Inputs are :class:`~jaxlab.encoding.SparseMultiHot` (``num_words`` wide), labels float32.
    ``limit`` keeps only the first ``limit`` reviews of each split (quick runs).
    """
    return load_imdb_features("multi_hot", num_words, data_dir, limit, cache_dir)


def load_imdb_features(
    features: str = "multi_hot",
    num_words: int = 10000,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """Like :func:`load_imdb_multi_hot` with a choice of ``features``: ``"multi_hot"`` (1 if a
    word occurs) or ``"counts"`` (how often it occurs, as :class:`~jaxlab.encoding.SparseFeatures`).
    """
    from jaxlab.encoding import sparse_multi_hot, sparse_word_counts

    encoders = {"multi_hot": sparse_multi_hot, "counts": sparse_word_counts}
    if features not in encoders:
        raise ConfigError(f"unknown features {features!r}; known: {', '.join(encoders)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    splits = load_imdb(num_words, data_dir, cache_dir)
    out = []
    for sequences, labels in splits:
        if limit is not None:
            rows = np.arange(min(limit, len(sequences)))
            sequences, labels = sequences.take(rows), labels[rows]
        out.append((encoders[features](sequences, num_words), labels.astype(np.float32)))
    return out[0], out[1]


def load_imdb_tokens(
    num_words: int = 10000,
    maxlen: int = 256,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    padding: str = "pre",
    truncating: str = "pre",
):
    """IMDB as token sequences for models that read word order: ``(x_train, y_train),
    (x_test, y_test)`` with int32 inputs ``[N, maxlen]`` (0 = padding) and float32 labels.

    The reviews are :func:`load_imdb`'s, cut and padded as Keras's ``pad_sequences`` does by
    default (``padding="pre"``, ``truncating="pre"``: the end of a long review is kept).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    out = []
    for sequences, labels in load_imdb(num_words, data_dir, cache_dir):
        if limit is not None:
            rows = np.arange(min(limit, len(sequences)))
            sequences, labels = sequences.take(rows), labels[rows]
        tokens = text.pad_sequences(sequences, maxlen, padding=padding, truncating=truncating)
        out.append((tokens, labels.astype(np.float32)))
    return out[0], out[1]
