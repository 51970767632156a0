"""jaxlab's compiled CPU kernels (``csrc/*.cc``), registered as XLA FFI targets.

They are built with a C++ compiler (``$CXX``, else ``g++``) on first use, into
``$JAXLAB_CACHE_DIR/build/<hash>/``, once per source, flags, compiler (and what
``-march=native`` means to it), JAX version and CPU. Without a compiler everything still runs:
callers ask :func:`available` and fall back to plain XLA, or :func:`require` raises a one-line
:class:`ConfigError` saying why it cannot be built.

A library is trusted only after checks: its size and SHA-256 match the checksum written beside
it when it was built (``libjaxlab_native.so.sha256``), it loads, has every handler and its probe
(``JaxlabProbe`` in ``csrc/shuffle.cc``) returns the expected value. A library that fails them
is rebuilt once; a build that fails is remembered in ``build-failed.txt`` in its folder (delete
it to try again), so other processes do not each spend the build's time to fail the same way.
Builds in one folder are serialized by a lock file. A compiler that rejects ``-fopenmp``
(Apple clang) builds the kernels single-threaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: builds in one folder are not serialized
    fcntl = None

import jax

from jaxlab.atomic import write_atomically
from jaxlab.errors import ConfigError
from jaxlab.imdb import default_cache_dir

SOURCES = tuple(sorted((Path(__file__).resolve().parent / "csrc").glob("*.cc")))
OPENMP = "-fopenmp"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", OPENMP, "-shared", "-fPIC", "-std=c++17")
LIBRARY = "libjaxlab_native.so"
CHECKSUM = ".sha256"  # the library's size and SHA-256, beside it: "<size> <hex digest>"
FAILED = "build-failed.txt"  # a failed build's one-line reason, in its folder
# The probe's answer: the stable order of its eight keys, as octal digits (csrc/shuffle.cc).
PROBE, PROBE_VALUE = "JaxlabProbe", 0o47130652
# A compiler's complaint that means "no OpenMP here" (Apple clang: unsupported option
# '-fopenmp'; clang without libomp: 'omp.h' file not found).
NO_OPENMP = re.compile(r"openmp|omp\.h|gomp|libomp|-lomp", re.IGNORECASE)
# /proc/cpuinfo's fields that say which CPU -march=native code was built for: x86's model name
# and flags, ARM's CPU implementer/architecture/variant/part/revision and Features.
CPU_FIELDS = ("model name", "flags", "features", "cpu implementer", "cpu architecture")
CPU_FIELDS += ("cpu variant", "cpu part", "cpu revision")
# FFI target name -> the handler's symbol in the library.
TARGETS = {
    "jaxlab_csr_forward": "JaxlabCsrForward",
    "jaxlab_csr_backward": "JaxlabCsrBackward",
    "jaxlab_csr_update": "JaxlabCsrUpdate",
    "jaxlab_stable_argsort": "JaxlabStableArgsort",
}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _cpu_identity() -> str:
    """The CPU that ``-march=native`` code is built for, on x86 and ARM Linux alike (ARM has no
    "model name"): /proc/cpuinfo's :data:`CPU_FIELDS`, each distinct line once; elsewhere
    (macOS) the platform's processor name."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = {line.strip() for line in f if line.split(":")[0].strip().lower() in CPU_FIELDS}
    except OSError:
        lines = set()
    return "\n".join(sorted(lines)) or platform.processor()


@functools.cache
def _compiler_identity(compiler: str) -> str:
    """The compiler's version and what ``-march=native`` means to it: its predefined macros
    (``__VERSION__``, ``__AVX2__``, ``__ARM_FEATURE_*``...), about 20 ms."""
    command = [compiler, "-march=native", "-dM", "-E", "-x", "c++", os.devnull]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        return type(error).__name__
    return done.stdout if done.returncode == 0 else f"exit {done.returncode}"


def library_path(compiler: str) -> Path:
    """Where the library built by ``compiler`` lives: one folder per sources, flags, compiler
    (its version and what ``-march=native`` means to it), JAX version and CPU
    (``-march=native`` code is not portable between CPUs). A failed build is remembered in its
    folder, so changing any of these tries again."""
    key = "\n".join(
        [
            *(source.read_text() for source in SOURCES),
            " ".join(FLAGS),
            compiler,
            _compiler_identity(compiler),
            jax.__version__,
            platform.machine(),
            _cpu_identity(),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_cache_dir() / "build" / digest / LIBRARY


def _fsync(path: Path | str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems cannot sync a folder; the file itself must be
            raise
    finally:
        os.close(fd)


def _checksum(data: bytes) -> str:
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}"


def _compile(command: list[str]) -> str | None:
    """Runs the compiler; the reason it failed (its first error line), or None."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if done.returncode == 0:
        return None
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    return (errors or done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]


def build(compiler: str, target: Path) -> None:
    """Compiles the library to ``target`` atomically: each build writes its own temporary file,
    syncs it to disk, writes its checksum beside ``target`` and renames it over ``target``, so a
    reader never sees a partial library. A compiler that rejects ``-fopenmp`` is asked once
    more without it (the kernels then run on one thread)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    include = f"-I{jax.ffi.include_dir()}"
    command = [compiler, *FLAGS, include, *map(str, SOURCES), "-o", temporary]
    try:
        reason = _compile(command)
        if reason is not None and NO_OPENMP.search(reason):
            retry = _compile([part for part in command if part != OPENMP])
            reason = None if retry is None else f"{reason}; without {OPENMP}: {retry}"
        if reason is not None:
            raise ConfigError(f"failed to build with {compiler}: {reason}")
        _fsync(temporary)
        checksum = _checksum(Path(temporary).read_bytes())
        write_atomically(
            target.with_name(target.name + CHECKSUM), lambda f: f.write(checksum), text=True,
            sync=True,
        )  # fmt: skip
        os.replace(temporary, target)
        _fsync(target.parent, directory=True)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"failed to build with {compiler}: {error}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _damage(target: Path) -> str | None:
    """What is wrong with the library file at ``target`` against its recorded checksum."""
    try:
        recorded = target.with_name(target.name + CHECKSUM).read_text().strip()
    except OSError:
        return "its checksum file is missing"
    data = target.read_bytes()
    if _checksum(data) == recorded:
        return None
    size = recorded.split(" ")[0]
    if str(len(data)) != size:
        return f"it has {len(data)} bytes, {size} when built"
    return "its SHA-256 differs from the one recorded when it was built"


_opened: dict[str, int] = {}  # how often this process has opened each library path


def _open(target: Path) -> ctypes.CDLL:
    """Loads ``target``; opened again in this process (rebuilt), under another spelling of its
    path, since the dynamic loader hands back the library it already has under a path."""
    count = _opened.get(str(target), 0)
    _opened[str(target)] = count + 1
    return ctypes.CDLL(f"{target.parent}/{'./' * count}{target.name}")


def _verified(target: Path) -> tuple[ctypes.CDLL | None, str | None]:
    """The library at ``target`` loaded, or None and what is wrong with it (None: missing)."""
    if not target.exists():
        return None, None
    try:
        damage = _damage(target)
        if damage is not None:
            return None, damage
        library = _open(target)
        for symbol in (*TARGETS.values(), PROBE):
            getattr(library, symbol)
        probe = library[PROBE]
        probe.restype = ctypes.c_int64
        answer = probe()
    except (OSError, AttributeError, ValueError) as error:  # ValueError: undecodable message
        return None, f"it does not load ({type(error).__name__}: {error})"
    if answer != PROBE_VALUE:
        return None, f"its probe returned {answer}, not {PROBE_VALUE}"
    return library, None


@contextlib.contextmanager
def _locked(folder: Path):
    """Holds the build folder's lock: one process builds while the others wait for it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def _rebuilt(compiler: str, target: Path, damage: str | None) -> tuple[ctypes.CDLL | None, str]:
    """Builds the library afresh and loads it; on failure the reason, also remembered in the
    folder's :data:`FAILED` file."""
    for stale in (target, target.with_name(target.name + CHECKSUM)):
        stale.unlink(missing_ok=True)
    library = None
    try:
        build(compiler, target)
        library, problem = _verified(target)
        reason = f"built a library that fails its checks ({problem})"
    except ConfigError as error:
        reason = str(error)
    if library is not None:
        return library, ""
    if damage is not None:
        reason = f"found {target} damaged ({damage}); rebuilding it: {reason}"
    marker = target.parent / FAILED
    with contextlib.suppress(OSError):
        write_atomically(marker, lambda f: f.write(reason + "\n"), text=True, sync=True)
    return None, f"{reason} (remembered in {marker}; delete it to try again)"


@functools.cache
def _load() -> str | None:
    """Builds (if needed), checks, loads and registers the library once per process; the reason
    it is unavailable (to follow a subject, e.g. "the ffi first layer"), or None."""
    compiler = _compiler()
    if compiler is None:
        name = os.environ.get("CXX", "g++")
        return f"needs a C++ compiler and {name!r} was not found (set CXX)"
    target = library_path(compiler)
    # OpenMP threads that spin after a parallel region (the default for a while) take a core
    # from XLA's own threads between kernel calls; read by the OpenMP runtime when it loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        library, damage = _verified(target)
        if library is None:
            with _locked(target.parent):
                marker = target.parent / FAILED
                if marker.exists():
                    reason = marker.read_text().strip()
                    return f"{reason} (remembered in {marker}; delete it to try again)"
                library, damage = _verified(target)  # another process may have built it
                if library is None:
                    library, reason = _rebuilt(compiler, target, damage)
                    if library is None:
                        return reason
    except OSError as error:
        return f"could not build or load {target}: {error}"
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)), "cpu")
    return None


def available() -> bool:
    """Whether the kernels are built and registered (building them if they can be)."""
    return _load() is None


def reason() -> str | None:
    """Why the kernels cannot be used (to follow a subject), or None when they can (building
    them if they can be)."""
    return _load()


def require(what: str = "jaxlab's compiled kernels") -> None:
    """Builds the kernels if needed; raises :class:`ConfigError` saying why ``what`` cannot be
    used."""
    reason = _load()
    if reason is not None:
        raise ConfigError(f"{what} {reason}")
