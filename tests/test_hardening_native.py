"""The compiled kernels (jaxlab.native) against damaged libraries, failing or OpenMP-less
compilers and other CPUs, and the checks that keep malformed inputs away from native code.

Library scenarios run in fresh processes (the library is loaded once per process, and a damaged
one could crash it) against a build cache made once for this module by a compiler wrapper
(``cxx``): g++, except that it logs each build and, when told by its environment, fails,
rejects ``-fopenmp`` or copies the module's first build instead of compiling again."""

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxlab import native
from jaxlab.batching import to_device_data
from jaxlab.encoding import SparseFeatures, SparseMultiHot, sparse_multi_hot
from jaxlab.errors import ConfigError

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None, reason="no g++ to build the compiled kernels"
)

WRAPPER = """#!/bin/sh
case " $* " in
  *" -shared "*)
    echo "$*" >> "$CXX_LOG"
    if [ -n "$CXX_FAIL" ]; then echo "error: told to fail" >&2; exit 1; fi
    if [ -n "$CXX_COPY" ]; then  # "build" by copying a library g++ built (saves ~20 s)
      out=""; previous=""
      for arg in "$@"; do [ "$previous" = "-o" ] && out="$arg"; previous="$arg"; done
      cp "$CXX_COPY" "$out"; exit 0
    fi
    case " $* " in
      *" -fopenmp "*) if [ -n "$CXX_NO_OPENMP" ]; then
        echo "clang: error: unsupported option '-fopenmp'" >&2; exit 1; fi ;;
    esac ;;
esac
exec g++ "$@"
"""

# What a process checks: the reason (if any) the kernels are unavailable, then that the shuffle
# is jax.random.permutation, the compiled layer (when available) gives x @ kernel, asking for it
# explicitly is a one-line error otherwise, and fit with the sparse layer and with "auto" runs.
CHECK = textwrap.dedent(
    """
    import warnings
    import jax, jax.numpy as jnp, numpy as np
    from jaxlab import TrainConfig, fit, native
    from jaxlab.batching import make_batch, to_device_data
    from jaxlab.errors import ConfigError
    from jaxlab.native import bag, shuffle
    print("reason:", native._load())
    key = jax.random.key(0)
    assert np.array_equal(shuffle.permutation(key, 1000), jax.random.permutation(key, 1000))
    rng = np.random.default_rng(0)
    x = (rng.random((20, 30)) < 0.2) * rng.uniform(0.5, 3.0, (20, 30)).astype(np.float32)
    kernel = jax.random.normal(key, (30, 16))
    if native.available():
        batch = make_batch(to_device_data(x, np.zeros(20)), jnp.arange(20), "ffi", 0)["inputs"]
        np.testing.assert_allclose(bag.csr_matmul(kernel, batch), x @ kernel, 1e-5, 1e-5)
        print("ffi ok")
    else:
        try:
            bag.require()
        except ConfigError as error:
            assert "\\n" not in str(error)
            print("require:", error)
    y = (x.sum(1) > x.sum(1).mean()).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for layer in RUN:
            config = TrainConfig(input_layer=layer, epochs=1, model_args={"hidden": (4,)})
            fit(config, (x, y), (x, y), verbose=False)
    fallbacks = [w for w in caught if "input_layer 'auto'" in str(w.message)]
    print("warnings:", len(fallbacks), *(str(w.message) for w in fallbacks))
    print("done")
    """
)


def run(cache: Path, log: Path, cxx: Path, layers=("sparse", "auto"), **env) -> dict:
    """Runs CHECK in a fresh process on ``cache`` with the compiler ``cxx``; its printed fields,
    how it ended and the builds ``cxx`` logged."""
    environment = {
        **os.environ,
        "JAXLAB_CACHE_DIR": str(cache),
        "CXX": str(cxx),
        "CXX_LOG": str(log),
        **env,
    }
    for name in ("CXX_FAIL", "CXX_NO_OPENMP", "CXX_COPY"):
        if not environment.get(name):
            environment.pop(name, None)
    code = f"RUN = {tuple(layers)!r}\n{CHECK}"
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300
    )
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    builds = log.read_text().splitlines() if log.exists() else []
    ended = {"rc": done.returncode, "out": done.stdout, "err": done.stderr[-3000:]}
    return {**ended, **fields, "builds": builds}


@pytest.fixture(scope="module")
def cxx(tmp_path_factory) -> Path:
    """The compiler wrapper, one for the module (its path is part of the build folder's key)."""
    wrapper = tmp_path_factory.mktemp("tools") / "cxx"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def built(cxx) -> Path:
    """A build cache holding a good library, built once for the module."""
    cache = cxx.parent / "built"
    done = run(cache, cxx.parent / "build.log", cxx, layers=())
    assert done["rc"] == 0 and done["reason"] == "None", done
    return cache


def fresh_copy(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the built cache and its library's path."""
    cache = tmp_path / "cache"
    shutil.copytree(built, cache)
    (library,) = cache.glob("build/*/libjaxlab_native.so")
    return cache, library


def good_library(built: Path) -> str:
    """The module's build, for the wrapper to copy when asked to build again."""
    (library,) = built.glob("build/*/libjaxlab_native.so")
    return str(library)


# Item 1: a damaged library is verified, rebuilt once, and never loaded.


@needs_compiler
def test_a_truncated_library_is_rebuilt_and_the_run_is_right(built, cxx, tmp_path):
    """Was: SIGBUS (exit 135) in every process, the sparse layer's too (the shuffle loads it)."""
    cache, library = fresh_copy(built, tmp_path)
    good = library.read_bytes()
    library.write_bytes(good[:100000])
    done = run(cache, tmp_path / "cxx.log", cxx, layers=("auto",), CXX_COPY=good_library(built))
    assert done["rc"] == 0, done
    assert done["reason"] == "None" and "ffi ok" in done["out"], done
    assert len(done["builds"]) == 1 and done["warnings"] == "0", done
    assert len(library.read_bytes()) == len(good)
    again = run(cache, tmp_path / "cxx.log", cxx, layers=())  # now trusted: no build
    assert again["rc"] == 0 and again["reason"] == "None" and len(again["builds"]) == 1, again


@needs_compiler
def test_a_wrong_library_with_a_matching_checksum_fails_its_probe_and_is_rebuilt(
    built, cxx, tmp_path
):
    """A library that loads but is not ours (its checksum file rewritten to match) is caught by
    its missing handlers and probe, and the rebuilt one is loaded in the same process."""
    cache, library = fresh_copy(built, tmp_path)
    import _ctypes

    library.write_bytes(Path(_ctypes.__file__).read_bytes())
    data = library.read_bytes()
    checksum = library.with_name(library.name + ".sha256")
    checksum.write_text(f"{len(data)} {hashlib.sha256(data).hexdigest()}")
    done = run(cache, tmp_path / "cxx.log", cxx, layers=(), CXX_COPY=good_library(built))
    assert done["rc"] == 0 and done["reason"] == "None" and "ffi ok" in done["out"], done
    assert len(done["builds"]) == 1, done


def damage(library: Path, how: str) -> None:
    if how == "garbage":
        library.write_bytes(np.random.default_rng(0).bytes(200_000))
    elif how == "empty":
        library.write_bytes(b"")
    else:  # another shared library
        import _ctypes

        library.write_bytes(Path(_ctypes.__file__).read_bytes())


@needs_compiler
@pytest.mark.parametrize("how", ["garbage", "empty", "another library"])
def test_a_damaged_library_whose_rebuild_fails_gives_one_line_and_slower_layers_work(
    built, cxx, tmp_path, how
):
    """Was: an AttributeError/UnicodeDecodeError traceback, or a silent fallback forever."""
    cache, library = fresh_copy(built, tmp_path)
    damage(library, how)
    log = tmp_path / "cxx.log"
    done = run(cache, log, cxx, layers=("auto",), CXX_FAIL="1")
    assert done["rc"] == 0 and "done" in done["out"], done
    reason = done["reason"]
    assert "damaged" in reason and "told to fail" in reason and "remembered in" in reason, done
    assert done["require"].startswith("the ffi first layer found"), done
    assert len(done["builds"]) == 1, done
    assert done["warnings"].startswith("1 input_layer 'auto' takes the slower"), done
    # The failure is remembered: the next process does not try again.
    again = run(cache, log, cxx, layers=())
    assert again["rc"] == 0 and again["reason"] == reason and len(again["builds"]) == 1, again


@needs_compiler
def test_a_failed_build_is_remembered_by_other_processes(cxx, tmp_path):
    """Was: every process spent the build's time (about 19 s) failing again."""
    cache, log = tmp_path / "cache", tmp_path / "cxx.log"
    first = run(cache, log, cxx, layers=(), CXX_FAIL="1")
    assert first["rc"] == 0 and "told to fail" in first["reason"], first
    (marker,) = cache.glob("build/*/build-failed.txt")
    assert "told to fail" in marker.read_text()
    second = run(cache, log, cxx, layers=())  # the compiler would work now, but is not asked
    assert second["rc"] == 0 and second["reason"] == first["reason"], second
    assert len(second["builds"]) == 1, second


# Item 6 (part): the default layer's fallback says why.


def test_without_a_compiler_auto_warns_once_that_it_takes_a_slower_layer(tmp_path):
    done = run(
        tmp_path / "cache",
        tmp_path / "cxx.log",
        tmp_path / "no-such-compiler",
        layers=("auto", "auto"),
    )
    assert done["rc"] == 0 and "done" in done["out"], done
    assert done["warnings"].startswith("1 input_layer 'auto' takes the slower"), done
    assert "needs a C++ compiler" in done["warnings"], done


# Item 9: build keys and platforms.

ARM = """processor\t: {core}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: {variant}
CPU part\t: {part}
CPU revision\t: 1
"""


def test_the_build_key_tells_arm_cpus_apart(monkeypatch):
    """ARM Linux's /proc/cpuinfo has no "model name": two ARM CPUs shared one build folder."""
    real_open = open

    def cpus(text):
        def fake_open(path, *args, **kwargs):
            if str(path) == "/proc/cpuinfo":
                import io

                return io.StringIO(text)
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("builtins.open", fake_open)
        return native.library_path("/no/such/compiler")

    neoverse_n1 = "\n".join(ARM.format(core=c, variant="0x3", part="0xd0c") for c in range(4))
    cortex_a72 = "\n".join(ARM.format(core=c, variant="0x0", part="0xd08") for c in range(4))
    assert cpus(neoverse_n1) != cpus(cortex_a72)
    assert cpus(neoverse_n1) == cpus(neoverse_n1)


@needs_compiler
def test_a_compiler_rejecting_openmp_builds_single_threaded_kernels(cxx, tmp_path):
    """Apple clang rejects -fopenmp: the build was abandoned instead of retried without it."""
    done = run(tmp_path / "cache", tmp_path / "cxx.log", cxx, layers=(), CXX_NO_OPENMP="1")
    assert done["rc"] == 0 and done["reason"] == "None" and "ffi ok" in done["out"], done
    assert len(done["builds"]) == 2, done
    assert "-fopenmp" in done["builds"][0] and "-fopenmp" not in done["builds"][1], done


# Item 2 (and 3's NaN/inf inputs): malformed inputs are refused before native code sees them.


def rows(n=60):
    return sparse_multi_hot([[1, 2], [3], [4, 0]] * (n // 3), 5)


def test_offsets_past_the_data_are_refused_when_made_and_when_changed_since():
    x = rows()
    offsets = x.offsets.copy()
    offsets[-1] = 10**8
    expected = "offsets must be non-decreasing and end at 100 .* got 100000000 at row 59"
    with pytest.raises(ConfigError, match=expected):
        SparseMultiHot(x.indices, offsets, 5)
    x.offsets[-1] = 10**8  # changed in place after it was made
    with pytest.raises(ConfigError, match=expected):
        to_device_data(x, np.zeros(60))


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param(
            lambda x: x.indices.__setitem__(7, 5),
            r"indices must lie in \[0, 5\) .*got 5 at row 4",
            id="index-too-large",
        ),
        pytest.param(
            lambda x: x.indices.__setitem__(0, -1),
            r"indices must lie in \[0, 5\) .*got -1 at row 0",
            id="negative-index",
        ),
        pytest.param(
            lambda x: x.offsets.__setitem__(3, 0),
            "offsets must be non-decreasing, got 0 after 3 at row 2",
            id="decreasing-offsets",
        ),
        pytest.param(
            lambda x: x.offsets.__setitem__(0, 1), "offsets must start at 0, got 1", id="start"
        ),
    ],
)
def test_malformed_rows_are_refused_before_any_layer_reads_them(change, message):
    """Was: out-of-range columns skipped (ffi) or clamped (sparse) silently, or a crash."""
    x = rows()
    change(x)
    with pytest.raises(ConfigError, match=message):
        to_device_data(x, np.zeros(60))
    with pytest.raises(ConfigError, match=message):
        SparseMultiHot(x.indices, x.offsets, x.dim)


def test_non_finite_values_are_refused():
    x = rows()
    values = np.ones(len(x.indices), np.float32)
    values[10] = np.nan
    with pytest.raises(ConfigError, match="values must be finite float32 numbers, got nan at row"):
        SparseFeatures(x.indices, x.offsets, values, 5)
    shift = np.array([0.0, np.inf, 0.0, 0.0, 0.0])
    with pytest.raises(ConfigError, match="shift must be finite"):
        SparseFeatures(x.indices, x.offsets, np.ones(len(x.indices)), 5, shift)
    features = SparseFeatures(x.indices, x.offsets, np.ones(len(x.indices), np.float32), 5)
    features.values[3] = np.inf
    with pytest.raises(ConfigError, match="got inf at row 2"):
        to_device_data(features, np.zeros(60))
    big = np.ones(len(x.indices))  # finite as float64, infinite as the float32 models read
    big[0] = 1e300
    with pytest.raises(ConfigError, match="finite float32"):
        SparseFeatures(x.indices, x.offsets, big, 5)


@pytest.mark.parametrize("form", ["dense", "bag"])
def test_dense_inputs_with_nan_or_inf_are_refused(form):
    x = np.ones((6, 4), np.float32)
    to_device_data(x, np.zeros(6), form)
    for bad in (np.nan, np.inf, -np.inf):
        x[4, 2] = bad
        with pytest.raises(ConfigError, match=f"{form} inputs must be finite.*row 4"):
            to_device_data(x, np.zeros(6), form)
        with pytest.raises(ConfigError, match=f"{form} inputs must be finite.*row 4"):
            to_device_data(jax.numpy.asarray(x), np.zeros(6), form)
    huge = np.full((3, 4), 3e38, np.float32)  # only their sum overflows: accepted
    to_device_data(huge, np.zeros(3), form)


@needs_compiler
def test_offsets_past_the_data_are_a_one_line_error_not_a_crash_in_the_default_layer(
    built, cxx, tmp_path
):
    """Was: a segmentation fault (exit 139) in the compiled first layer."""
    cache, _ = fresh_copy(built, tmp_path)
    code = textwrap.dedent(
        """
        import numpy as np
        from jaxlab import TrainConfig, fit, sparse_multi_hot
        from jaxlab.errors import ConfigError
        x = sparse_multi_hot([[1, 2], [3], [4, 0]] * 20, 5)
        x.offsets[-1] = 10**8
        y = np.array([0, 1, 1] * 20)
        try:
            fit(TrainConfig(epochs=1, model_args={"hidden": (4,)}), (x, y), (x, y), verbose=False)
        except ConfigError as error:
            print("ConfigError:", error)
        """
    )
    env = {**os.environ, "JAXLAB_CACHE_DIR": str(cache), "CXX": str(cxx)}
    env["CXX_LOG"] = str(tmp_path / "cxx.log")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done
    assert "ConfigError: SparseMultiHot offsets must be non-decreasing" in done.stdout, done
