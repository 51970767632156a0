"""Hardening: output paths, hyperparameter ranges, summary columns, --num-words, offline start-up
and Keras-like indexing of Sequences. Each test reproduces one reported attack."""

import argparse
import socket
import threading
import time
from pathlib import Path

import numpy as np
import optax
import pytest
from test_lesson import load_script

from jaxlab import imdb, lesson, optim, results, sweep_results, text
from jaxlab.atomic import write_atomically
from jaxlab.errors import ConfigError, DataNotFoundError
from jaxlab.sweep_results import SweepResult, summary_table
from jaxlab.text import Sequences
from jaxlab.train import TrainConfig


def tiny_result(finite: bool = True) -> SweepResult:
    result = SweepResult.empty(
        TrainConfig(epochs=3), {"learning_rate": [1e-3, 1e-2]}, [0, 1], "shared", 0
    )
    if finite:
        rng = np.random.default_rng(0)
        for values in result.histories.values():
            values[...] = rng.uniform(0.1, 0.9, values.shape)
    return result


# --- 5. output paths ---


def test_save_never_writes_through_a_planted_symlink(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    names = ("summary.csv", "histories.csv", "histories.npz", "summary.json")
    for name in names:
        (out / f"{name}.tmp").symlink_to(victim)
    tiny_result().save(out)
    assert victim.read_text() == "precious"
    assert all((out / f"{name}.tmp").is_symlink() for name in names)  # left as they were
    assert "peak_val_accuracy_mean" in (out / "summary.csv").read_text()


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "summary.csv", fail)
    assert list(tmp_path.iterdir()) == []


def test_readme_save_creates_its_folder_from_a_fresh_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_result().save("results/my_sweep")
    saved = sorted(p.name for p in (tmp_path / "results/my_sweep").iterdir())
    assert saved == ["histories.csv", "histories.npz", "summary.csv", "summary.json"]
    assert oct((tmp_path / "results/my_sweep/summary.csv").stat().st_mode & 0o777) == "0o644"


def test_save_into_a_file_is_a_one_line_config_error(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        tiny_result().save(tmp_path / "taken")


def test_out_root_that_is_or_lies_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    for root in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ConfigError, match="is not a folder") as error:
            results.check_out_root(root)
        assert len(str(error.value).splitlines()) == 1
    fresh = tmp_path / "new" / "deeper"
    assert results.check_out_root(fresh) == fresh
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nor leaves a probe behind


def test_out_root_in_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        try:
            (locked / "probe").write_text("")
            can_write = True
        except OSError:
            can_write = False
        if can_write:  # root ignores permissions: chmod cannot make a folder read-only here
            pytest.skip("running as root: a chmod-ed folder stays writable")
        for root in (locked, locked / "run"):
            with pytest.raises(ConfigError, match="is not writable"):
                results.check_out_root(root)
    finally:
        locked.chmod(0o755)


def test_out_root_on_a_read_only_file_system_is_refused_even_for_root():
    if not Path("/proc").is_dir():
        pytest.skip("no /proc")
    with pytest.raises(ConfigError, match="is not writable"):
        results.check_out_root("/proc/jaxlab-results")


# --- 6. hyperparameter ranges, summary columns, --num-words ---


@pytest.mark.parametrize(
    "name, hyperparameters, message",
    [
        ("rmsprop", {"rho": float("nan")}, r"optimizer 'rmsprop': rho must be in \[0, 1\)"),
        ("rmsprop", {"rho": 1.5}, r"optimizer 'rmsprop': rho must be in \[0, 1\)"),
        ("rmsprop", {"rho": 1.0}, r"rho must be in \[0, 1\)"),
        ("adam", {"epsilon": -1.0}, r"optimizer 'adam': epsilon must be positive, in \(0, inf\)"),
        ("adam", {"beta_1": 1.0}, r"beta_1 must be in \[0, 1\)"),
        ("nadam", {"beta_2": -0.1}, r"beta_2 must be in \[0, 1\)"),
        ("adamw", {"weight_decay": float("inf")}, r"weight_decay must be in \[0, inf\)"),
        ("momentum", {"momentum": 1.1}, r"momentum must be in \[0, 1\]"),
        ("adagrad", {"initial_accumulator_value": -1.0}, r"initial_accumulator_value"),
        ("lion", {"beta_1": 0.0}, r"beta_1 must be in \(0, 1\]"),
        ("sgd", {"learning_rate": float("inf")}, r"learning_rate must be positive"),
        ("rmsprop", {"rho": "0.9"}, r"rho must be in \[0, 1\)"),
    ],
)
def test_built_in_hyperparameters_out_of_range_are_refused(name, hyperparameters, message):
    with pytest.raises(ConfigError, match=message) as error:
        optim.make_optimizer(name, **hyperparameters)
    assert len(str(error.value).splitlines()) == 1
    config = dict(hyperparameters)
    learning_rate = config.pop("learning_rate", None)
    with pytest.raises(ConfigError, match=message):
        TrainConfig(optimizer=name, learning_rate=learning_rate, optimizer_args=config)


def test_sweep_grid_values_out_of_range_are_refused_before_running():
    from jaxlab.grid import plan_groups

    with pytest.raises(ConfigError, match=r"rho must be in \[0, 1\), got nan"):
        plan_groups(TrainConfig(), {"rho": [0.9, float("nan")]})


@pytest.mark.parametrize(
    "name, hyperparameters",
    [("rmsprop", {"rho": 0.0}), ("momentum", {"momentum": 1.0}), ("lion", {"beta_1": 1.0})],
)
def test_edge_values_inside_the_ranges_are_accepted(name, hyperparameters):
    optim.make_optimizer(name, **hyperparameters)


@pytest.fixture
def scratch_optimizer():
    yield "hardening_user_opt"
    if "hardening_user_opt" in optim.OPTIMIZERS:
        optim.OPTIMIZERS.unregister("hardening_user_opt")
    getattr(optim, "RANGES", {}).pop("hardening_user_opt", None)


def test_user_optimizers_get_a_finiteness_check_or_their_declared_ranges(scratch_optimizer):
    def factory(learning_rate=0.1, clip=1.0, mode="plain"):
        return optax.sgd(learning_rate)

    optim.register_optimizer(scratch_optimizer, factory)
    optim.make_optimizer(scratch_optimizer, clip=-5.0)  # nothing declared: any finite value
    with pytest.raises(ConfigError, match=f"'{scratch_optimizer}': clip must be finite"):
        optim.make_optimizer(scratch_optimizer, clip=float("nan"))
    optim.register_optimizer(scratch_optimizer, factory, ranges={"clip": "(0, 10]"}, override=True)
    with pytest.raises(ConfigError, match=r"clip must be in \(0, 10\], got -5.0"):
        optim.make_optimizer(scratch_optimizer, clip=-5.0)
    with pytest.raises(ConfigError, match="not a hyperparameter"):
        optim.register_optimizer(scratch_optimizer, factory, ranges={"x": "[0, 1)"}, override=True)
    with pytest.raises(ConfigError, match="must be an interval"):
        optim.register_optimizer(scratch_optimizer, factory, ranges={"clip": "0-1"}, override=True)


def test_summary_table_refuses_an_unknown_column_and_lists_the_known_ones():
    result = tiny_result()
    with pytest.raises(ConfigError, match="unknown summary column 'val_acc'") as error:
        summary_table(result, ["min_val_loss", "val_acc"])
    assert all(column in str(error.value) for column in sweep_results.SUMMARY_COLUMNS)
    assert "min val loss" in summary_table(result, "min_val_loss")


def test_summary_columns_are_what_summary_reports():
    row = tiny_result().summary()[0]
    reported = [key[: -len("_mean")] for key in row if key.endswith("_mean")]
    assert sorted(reported) == sorted(sweep_results.SUMMARY_COLUMNS)


def test_all_diverged_config_still_shows_diverged_for_a_known_column():
    result = tiny_result()
    result.diverged_epoch[...] = 0
    assert "diverged" in summary_table(result, ["min_val_loss"])


def lesson_args(**extra):
    return argparse.Namespace(num_words=500, data_dir=None, quiet=True, **extra)


def test_lesson_run_data_honours_num_words(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(lesson, "load_imdb_multi_hot", lambda *a, **k: calls.append((a, k)))
    run = lesson.Run("x", [0], 1, 10, True, tmp_path)
    run.data(lesson_args())
    ((args, kwargs),) = calls
    assert 500 in args or kwargs.get("num_words") == 500


def test_lesson_scaling_loads_num_words_wide_inputs(monkeypatch):
    scaling = load_script("lesson_scaling.py")
    seen = []

    def load(kind, num_words=10000, *rest, **kwargs):
        seen.append(num_words)
        raise StopIteration

    monkeypatch.setattr(scaling, "load_imdb_features", load)
    with pytest.raises(StopIteration):
        scaling.load_inputs(lesson_args(), limit=10)
    assert seen == [500]


def test_lesson_capacity_counts_parameters_with_num_words(monkeypatch):
    capacity = load_script("lesson_capacity.py")
    info = {}

    class FakeRun:
        def write_info(self, **kw):
            info.update(kw)

        def sweep(self, *a, **k):
            raise StopIteration

    monkeypatch.setattr(capacity.lesson.Run, "from_args", lambda name, args: FakeRun())
    with pytest.raises(StopIteration):
        capacity.run(lesson_args())
    assert info["parameters"]["16-16"] == capacity.parameter_count((16, 16), 500) == 8305


# --- 7. offline start-up ---

SYNTHETIC = {
    "train": (["A good film.", "A bad film!"], np.array([1, 0])),
    "test": (["Good.", "Bad bad."], np.array([1, 0])),
}


class FakeBuilder:
    """Stands in for the TFDS builder: not prepared; "downloading" fills the data dir the way
    TFDS does, then fails (as it does offline, after its retries)."""

    url_infos = {"http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz": None}

    def __init__(self, root: Path):
        self.root = root
        self.data_dir = str(root / "imdb_reviews/plain_text/1.0.0")
        self.downloads = 0

    def download_and_prepare(self, **kwargs):
        self.downloads += 1
        (self.root / "downloads/ai.stanford.edu_aclImdb.tmp").mkdir(parents=True)
        (self.root / "downloads/ai.stanford.edu_aclImdb.tmp/part").write_text("x")
        (self.root / "imdb_reviews/plain_text/1.0.0.incomplete").mkdir(parents=True)
        raise ConnectionError("Failed to resolve 'ai.stanford.edu'")


@pytest.fixture
def fake_builder(monkeypatch, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    builder = FakeBuilder(data)
    monkeypatch.setattr(imdb, "_builder", lambda data_dir: builder)
    return builder


def offline(monkeypatch, hang: threading.Event | None = None):
    """No network: connecting fails at once, or (``hang``) never answers until set."""

    def connect(address, timeout=None, *rest, **kwargs):
        if hang is not None:
            hang.wait(30)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", connect)


def test_offline_download_fails_at_once_and_leaves_the_data_dir_as_it_was(
    fake_builder, monkeypatch, tmp_path
):
    offline(monkeypatch)
    data = fake_builder.root
    (data / "downloads").mkdir()
    (data / "downloads/someone_elses.tar.gz").write_text("kept")
    (data / "mnist").mkdir()
    started = time.perf_counter()
    with pytest.raises(DataNotFoundError, match="downloading it failed") as error:
        imdb.load_imdb(data_dir=data, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - started < 5
    assert "ai.stanford.edu" in str(error.value) and "TFDS_DATA_DIR" in str(error.value)
    assert fake_builder.downloads == 0  # TFDS's 10 retries are never started
    assert sorted(p.name for p in data.iterdir()) == ["downloads", "mnist"]
    assert [p.name for p in (data / "downloads").iterdir()] == ["someone_elses.tar.gz"]


def test_a_download_host_that_never_answers_is_given_up_quickly(
    fake_builder, monkeypatch, tmp_path
):
    hang = threading.Event()
    offline(monkeypatch, hang)
    monkeypatch.setattr(imdb, "REACH_TIMEOUT_S", 0.3)
    started = time.perf_counter()
    try:
        with pytest.raises(DataNotFoundError, match="no answer within 0.3 s"):
            imdb.load_imdb(data_dir=fake_builder.root, cache_dir=tmp_path / "cache")
    finally:
        hang.set()
    assert time.perf_counter() - started < 3
    assert fake_builder.downloads == 0


def test_a_download_that_fails_midway_removes_only_what_it_created(
    fake_builder, monkeypatch, tmp_path
):
    class Connection:
        def close(self):
            pass

    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: Connection())
    data = fake_builder.root
    (data / "downloads").mkdir()
    (data / "downloads/someone_elses.tar.gz").write_text("kept")
    with pytest.raises(DataNotFoundError, match="ConnectionError: Failed to resolve"):
        imdb.load_imdb(data_dir=data, cache_dir=tmp_path / "cache")
    assert fake_builder.downloads == 1
    assert [p.name for p in data.iterdir()] == ["downloads"]
    assert [p.name for p in (data / "downloads").iterdir()] == ["someone_elses.tar.gz"]


def test_the_real_tfds_builder_is_checked_before_it_downloads(monkeypatch, tmp_path):
    offline(monkeypatch)
    real_builder = imdb._builder
    downloads = []

    def builder(data_dir):
        made = real_builder(data_dir)
        made.download_and_prepare = lambda **kwargs: downloads.append(kwargs) or 1 / 0
        return made

    monkeypatch.setattr(imdb, "_builder", builder)
    with pytest.raises(DataNotFoundError, match="ai.stanford.edu"):
        imdb.load_imdb(data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert downloads == []
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def cached(monkeypatch, tmp_path):
    """An encoding cache built from synthetic reviews; TFDS is never read."""

    class Info:
        version = imdb.VERSION

    class Prepared:
        info = Info

    monkeypatch.setattr(imdb, "_read_split", lambda builder, split: SYNTHETIC[split])
    monkeypatch.setattr(imdb, "_prepared_builder", lambda *a: Prepared())
    cache = tmp_path / "cache"
    imdb.load_imdb(cache_dir=cache)
    return cache


def test_a_missing_explicit_data_dir_is_an_error_even_with_the_cache(cached, tmp_path):
    with pytest.raises(DataNotFoundError, match="does not exist") as error:
        imdb.load_imdb(data_dir=tmp_path / "typo", cache_dir=cached)
    assert str(tmp_path / "typo") in str(error.value)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(DataNotFoundError, match="is not a folder"):
        imdb.get_word_index(data_dir=tmp_path / "a_file", cache_dir=cached)
    (train, _), _ = imdb.load_imdb(data_dir=tmp_path, cache_dir=cached)  # exists: cache used
    assert len(train) == 2


# --- 8. Keras compatibility of Sequences ---


def test_sequences_slice_index_arrays_and_negative_indices_like_keras():
    rows = [[1, 2], [], [3, 4, 5], [6], [7, 8]]
    sequences = Sequences.from_lists(rows)
    keras = np.empty(len(rows), dtype=object)
    keras[:] = [list(r) for r in rows]
    for key in (
        slice(None, 3),
        slice(1, None),
        slice(None, None, -2),
        slice(10, 20),
        [4, 0, -1],
        np.array([2, 2]),
        np.array([True, False, True, False, True]),
        [],
    ):
        got = sequences[key]
        assert isinstance(got, Sequences)
        assert [r.tolist() for r in got] == [list(r) for r in keras[key]]
    assert sequences[-2].tolist() == [6]
    assert [r.tolist() for r in sequences.take(np.array([3, 0]))] == [[6], [1, 2]]
    with pytest.raises(IndexError):
        sequences[[0, 5]]
    with pytest.raises(IndexError):
        sequences[-6]


def test_np_asarray_with_dtype_object_gives_keras_form():
    sequences = Sequences.from_lists([[1, 2], [], [3, 4, 5]])
    array = np.asarray(sequences, dtype=object)
    assert array.dtype == object and array.shape == (3,)
    assert [row.tolist() for row in array] == [[1, 2], [], [3, 4, 5]]
    array[0][0] = 99  # a copy: the Sequences stay as they were
    assert sequences[0].tolist() == [1, 2]
    square = np.asarray(Sequences.from_lists([[1, 2], [3, 4]]), dtype=object)
    assert square.shape == (2,) and square[1].tolist() == [3, 4]
    with pytest.raises(ConfigError, match="dtype=object"):
        np.asarray(sequences, dtype=np.int64)


def test_load_imdb_train_data_slices_like_keras(cached):
    (train_data, train_labels), _ = imdb.load_imdb(cache_dir=cached)
    first = train_data[:1]
    assert isinstance(first, Sequences) and len(first) == 1
    assert first[0].tolist() == train_data[0].tolist() and first[0][0] == text.START
    assert np.asarray(train_data, dtype=object)[-1].tolist() == train_data[-1].tolist()
