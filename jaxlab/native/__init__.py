"""jaxlab's compiled CPU kernels (``csrc/*.cc``), registered as XLA FFI targets.

They are built with a C++ compiler (``$CXX``, else ``g++``) on first use, into
``$JAXLAB_CACHE_DIR/build/<hash>/``, once per source, flags, compiler, JAX version and CPU.
Without a compiler everything still runs: callers ask :func:`available` and fall back to plain
XLA, or :func:`require` raises a one-line :class:`ConfigError` saying why it cannot be built.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax

from jaxlab.errors import ConfigError
from jaxlab.imdb import default_cache_dir

SOURCES = tuple(sorted((Path(__file__).resolve().parent / "csrc").glob("*.cc")))
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
# FFI target name -> the handler's symbol in the library.
TARGETS = {
    "jaxlab_csr_forward": "JaxlabCsrForward",
    "jaxlab_csr_backward": "JaxlabCsrBackward",
    "jaxlab_csr_update": "JaxlabCsrUpdate",
    "jaxlab_stable_argsort": "JaxlabStableArgsort",
}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def library_path(compiler: str) -> Path:
    """Where the library built by ``compiler`` lives: one folder per sources, flags, compiler,
    JAX version and machine (``-march=native`` code is not portable between CPUs)."""
    key = "\n".join(
        [
            *(source.read_text() for source in SOURCES),
            " ".join(FLAGS),
            compiler,
            jax.__version__,
            platform.machine(),
            _cpu_name(),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_cache_dir() / "build" / digest / "libjaxlab_native.so"


def build(compiler: str, target: Path) -> None:
    """Compiles the library to ``target`` atomically: concurrent builds each write their own
    temporary file and the last rename wins, so a reader never sees a partial library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    command = [
        compiler,
        *FLAGS,
        f"-I{jax.ffi.include_dir()}",
        *map(str, SOURCES),
        "-o",
        temporary,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line]
            reason = (errors or done.stderr.strip().splitlines() or ["no output"])[0]
            raise ConfigError(f"failed to build with {compiler}: {reason}")
        os.replace(temporary, target)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"failed to build with {compiler}: {error}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@functools.cache
def _load() -> str | None:
    """Builds (if needed), loads and registers the library once per process; the reason it is
    unavailable (to follow a subject, e.g. "the ffi first layer"), or None."""
    compiler = _compiler()
    if compiler is None:
        name = os.environ.get("CXX", "g++")
        return f"needs a C++ compiler and {name!r} was not found (set CXX)"
    target = library_path(compiler)
    # OpenMP threads that spin after a parallel region (the default for a while) take a core
    # from XLA's own threads between kernel calls; read by the OpenMP runtime when it loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    try:
        if not target.exists():
            build(compiler, target)
        library = ctypes.cdll.LoadLibrary(str(target))
    except ConfigError as error:
        return str(error)
    except OSError as error:
        return f"could not load {target}: {error}"
    for name, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, symbol)), "cpu")
    return None


def available() -> bool:
    """Whether the kernels are built and registered (building them if they can be)."""
    return _load() is None


def require(what: str = "jaxlab's compiled kernels") -> None:
    """Builds the kernels if needed; raises :class:`ConfigError` saying why ``what`` cannot be
    used."""
    reason = _load()
    if reason is not None:
        raise ConfigError(f"{what} {reason}")
