"""SIGTERM as an interrupt: what a driver needs to roll back before it exits.

A CronJob's deadline, ``kill`` or a CI cancel sends SIGTERM, whose default ends the
process at once — leaving a canary at its weight. Inside :func:`sigterm_as_interrupt`
SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so the runner's and the verbs'
interrupt handling (roll back, record, exit with the right code) runs.

Standard library only: the CLI imports it before anything heavy.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
