"""Atomic file writes: a reader sees the old file, the new one, or none, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], Any], *, text: bool = False,
    sync: bool = False,
) -> None:  # fmt: skip
    """Calls ``write(f)`` on a new, uniquely named file beside ``path`` (never a file already
    there, nor a symlink's target), then renames it over ``path``; removes it if ``write``
    fails. ``sync``: flush it to disk before the rename (files other runs rely on: caches,
    compiled libraries). The file is readable by all, as results and caches are shared."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private
        with os.fdopen(fd, "w" if text else "wb", newline="" if text else None) as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
