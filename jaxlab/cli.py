"""What every experiment script shares: common options, user modules, clean errors."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxlab.errors import ConfigError, Interrupted, JaxlabError

__all__ = [
    "ConfigError",
    "JaxlabError",
    "add_data_args",
    "add_run_args",
    "import_user_module",
    "run",
    "run_dir",
]


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("TFDS_DATA_DIR"),
        help="prepared TFDS data dir holding imdb_reviews (default: $TFDS_DATA_DIR, "
        "else TFDS downloads it)",
    )
    parser.add_argument("--num-words", type=int, default=10000, help="vocabulary size")
    parser.add_argument(
        "--out", default="results", help="results root; each run gets a new folder in it"
    )
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module or .py file first (e.g. one that registers an optimizer); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def import_user_module(spec: str) -> None:
    """Imports ``spec``: a path to a .py file or a dotted module name."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise ConfigError(f"--import: no such file {spec}")
        loaded = sys.modules.get(path.stem)
        if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
            return  # already imported: registering twice would fail
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as error:
        raise ConfigError(f"--import: cannot import {spec!r} ({error})") from None


def enable_compilation_cache() -> None:
    """Keeps compiled programs on disk (``$JAXLAB_CACHE_DIR/xla``), so a rerun skips most of
    the compilation (on a 2-core CPU a small fit's first epoch took 0.8 s instead of 3.1 s).

    Programs that compile in under 0.5 s are not kept, unless
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise."""
    import os

    import jax

    from jaxlab.imdb import default_cache_dir

    jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "xla"))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Checkpoints, resuming, and running as one of many processes (:mod:`jaxlab.distributed`)."""
    runs = parser.add_argument_group("checkpoints and processes")
    runs.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue an interrupted run in RUN_DIR, with its own arguments (from its run.json)",
    )
    runs.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="checkpoint every K epochs (default: after epochs over a few seconds, and at the "
        "end of every group)",
    )
    runs.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the checkpoints of a finished run (by default only interrupted runs keep them)",
    )
    runs.add_argument(
        "--distributed",
        action="store_true",
        help="one process of a jax.distributed job found by JAX (SLURM, Open MPI, TPU pods)",
    )
    runs.add_argument("--coordinator", default=None, metavar="HOST:PORT")
    runs.add_argument("--num-processes", type=int, default=None, metavar="N")
    runs.add_argument("--process-id", type=int, default=None, metavar="I")


# Options that may differ between a run and its resumption.
RESUME_OPTIONS = ("resume", "quiet", "keep_checkpoints", "distributed", "coordinator")
RESUME_OPTIONS += ("num_processes", "process_id")
_RUN: dict[str, Any] = {}  # the run folder of this script (set by run_dir)


def _resumed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The arguments of the run in ``args.resume`` (its run.json), with this call's
    :data:`RESUME_OPTIONS`."""
    info_path = Path(args.resume) / "run.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"--resume: {args.resume} is not a run folder (no run.json)") from None
    if "argv" not in info:
        raise ConfigError(f"--resume: {args.resume} was written before runs could resume")
    if info.get("status") == "complete":
        raise ConfigError(f"--resume: the run in {args.resume} is already complete")
    defaults = parser.parse_args([])  # every option at its default
    extra = [
        name
        for name, value in vars(args).items()
        if name not in RESUME_OPTIONS and value != getattr(defaults, name, value)
    ]
    if extra:
        raise ConfigError(
            f"--resume takes the run's arguments from {info_path}; drop --"
            + ", --".join(name.replace("_", "-") for name in extra)
        )
    resumed = parser.parse_args(info["argv"])
    for name in RESUME_OPTIONS:
        if hasattr(args, name):
            setattr(resumed, name, getattr(args, name))
    resumed.argv = info["argv"]
    return resumed


def run_dir(args: argparse.Namespace, name: str) -> Path:
    """The script's run folder: ``--resume``'s, else a new one under ``--out`` (made by process
    0, the same in every process). Its run.json says the run is ``running``."""
    from jaxlab import distributed, results

    if getattr(args, "resume", None):
        _RUN["resumed"] = True
        path = Path(args.resume)
        experiment = json.loads((path / "run.json").read_text()).get("experiment")
        if experiment != name:
            raise ConfigError(f"--resume: {path} is a run of {experiment}, not of {name}")
    else:
        made = ""
        if distributed.is_main():
            made = str(results.new_run_dir(results.check_out_root(args.out), name))
        path = Path(distributed.broadcast_text(made))
    _RUN["dir"] = path
    if distributed.is_main():
        argv = getattr(args, "argv", sys.argv[1:])
        results.write_run_info(path, experiment=name, argv=argv, status="running")
    return path


def _set_status(status: str) -> None:
    from jaxlab import distributed, results

    if "dir" in _RUN and distributed.is_main():
        results.write_run_info(_RUN["dir"], status=status)


def _discard_empty_run() -> None:
    """Removes this script's new run folder if it holds nothing but its run.json (a run
    refused before it trained leaves no folder behind)."""
    from jaxlab import distributed

    folder = _RUN.get("dir")
    if folder is None or not distributed.is_main() or folder.name == "":
        return
    files = [path for path in folder.rglob("*") if not path.is_dir()]
    if all(path.name == "run.json" for path in files) and not _RUN.get("resumed"):
        shutil.rmtree(folder, ignore_errors=True)


def run(
    main: Callable[[argparse.Namespace], None],
    parser: argparse.ArgumentParser,
    compilation_cache: bool = True,
) -> None:
    """Parses arguments and runs ``main``; a user mistake prints one line, not a traceback.

    Starts ``jax.distributed`` when asked (:func:`add_run_args`) or launched by
    :mod:`jaxlab.launch`, and records in the run folder's run.json (:func:`run_dir`) whether
    the run is ``complete``, ``interrupted`` or ``failed``. ``compilation_cache=False`` leaves
    JAX's persistent cache off (benchmarks time compiling).
    """
    from jaxlab import distributed

    args = parser.parse_args()
    try:
        if getattr(args, "resume", None):
            args = _resumed(parser, args)
        distributed.initialize(
            getattr(args, "coordinator", None),
            getattr(args, "num_processes", None),
            getattr(args, "process_id", None),
            auto=getattr(args, "distributed", False),
        )
        if compilation_cache:
            enable_compilation_cache()
        for spec in getattr(args, "imports", []):
            import_user_module(spec)
        main(args)
    except Interrupted as error:
        _set_status("interrupted")
        where = f"\nresume with: --resume {_RUN['dir']}" if "dir" in _RUN else ""
        code = 0 if error.signal_name == "SIGTERM" else 130
        _exit(parser, code, f"{parser.prog}: {error}{where}\n")
    except JaxlabError as error:
        _set_status("failed")
        _discard_empty_run()
        _exit(parser, 2, f"{parser.prog}: error: {error}\n")
    except KeyboardInterrupt:
        _set_status("interrupted")
        _exit(parser, 130, f"{parser.prog}: interrupted; results written so far are kept\n")
    except SystemExit as exit:  # main's own exit status (e.g. a diverged run's 1)
        _set_status("complete" if exit.code in (None, 0) else "failed")
        message = exit.code if isinstance(exit.code, str) else ""
        code = 1 if isinstance(exit.code, str) else (exit.code or 0)
        _exit(parser, code, f"{message}\n" if message else "")
    except BaseException:
        _set_status("failed")
        if not _many_processes():
            raise
        traceback.print_exc()
        _exit(parser, 1, "")
    _set_status("complete")
    if not getattr(args, "keep_checkpoints", True):
        _discard_checkpoints()


def _discard_checkpoints() -> None:
    """Removes a finished run's checkpoints (a run resumes only until it is complete)."""
    from jaxlab import distributed

    folder = _RUN.get("dir")
    if folder is not None and distributed.is_main():
        for checkpoints in [folder / "checkpoints", *folder.glob("*/checkpoints")]:
            shutil.rmtree(checkpoints, ignore_errors=True)


def _many_processes() -> bool:
    import jax

    return jax.distributed.is_initialized() and jax.process_count() > 1


def _exit(parser: argparse.ArgumentParser, code: int, message: str) -> None:
    """Exits with ``code``. One of many processes exits at once: JAX's exit handler would wait
    for the others, which may be waiting for this one (the launcher stops them instead)."""
    if not _many_processes():
        parser.exit(code, message)
    sys.stderr.write(message)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_floats(text: str) -> list[float]:
    """``"1e-3,3e-3"`` -> ``[0.001, 0.003]`` (an argparse ``type``)."""
    try:
        return [float(value) for value in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1e-3,3e-3, got {text!r}") from None


def add_sweep_args(
    parser: argparse.ArgumentParser,
    *,
    quick: str,
    epochs: int,
    batch_size: int,
    seeds: int,
    learning_rates: list[float] | None = None,
) -> None:
    """The options a small sweep script shares: ``--quick`` (what it does: ``quick``),
    ``--epochs`` (default ``epochs``), ``--batch-size``, ``--seeds`` and ``--learning-rates``."""
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--epochs", type=int, default=None, help=f"default {epochs}")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seeds", type=int, default=seeds, help="seeds 0..N-1")
    if learning_rates is not None:
        example = ",".join(f"{rate:g}" for rate in learning_rates)
        parser.add_argument(
            "--learning-rates", type=parse_floats, default=learning_rates, help=f"e.g. {example}"
        )
    add_run_args(parser)


def sweep_into_folder(args: argparse.Namespace, name: str, run: Callable):
    """``run(**saving)`` (a :func:`jaxlab.run_sweep` call given ``saving``: its
    ``on_epoch_end`` and checkpoint options) into the script's run folder (:func:`run_dir`):
    saved after every epoch and at the end, checkpointed, resumable with ``--resume``; prints
    the summary table. Returns the result."""
    from jaxlab import distributed
    from jaxlab.sweep_results import summary_table

    folder = run_dir(args, name)

    def save(partial) -> None:
        if distributed.is_main():
            partial.save(folder)

    result = run(
        on_epoch_end=save,
        checkpoint_dir=folder / "checkpoints",
        checkpoint_every=getattr(args, "checkpoint_every", None),
        resume=bool(getattr(args, "resume", None)),
    )
    save(result)
    if distributed.is_main():
        print(summary_table(result))
        print(f"results in {folder}")
    return result
