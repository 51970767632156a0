"""SIGINT and SIGTERM during a checkpointed run: finish the epoch, checkpoint, then stop.

Preemptible machines send SIGTERM shortly before they go; Ctrl-C sends SIGINT. Inside
:func:`deferred`, either one only sets a flag that the training loop reads at the end of every
epoch (it then checkpoints and raises :class:`~jaxlab.errors.Interrupted`); a second Ctrl-C
stops at once, as usual.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Flag:
    """The first signal received (its name), or None."""

    def __init__(self) -> None:
        self.received: str | None = None


@contextlib.contextmanager
def deferred(enabled: bool = True) -> Iterator[Flag]:
    """Signals set the returned flag instead of stopping the process (main thread only)."""
    flag = Flag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(number, frame) -> None:
        if flag.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if flag.received is None:
            flag.received = SIGNALS[number]
            print(
                f"\n{SIGNALS[number]} received: stopping after this epoch's checkpoint "
                "(Ctrl-C again to stop now)",
                file=sys.stderr,
                flush=True,
            )

    previous = {number: signal.signal(number, handler) for number in SIGNALS}
    try:
        yield flag
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
