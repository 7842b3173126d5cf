"""The event loop the probe runs on: uvloop when it is installed, else asyncio's own.

uvloop is an optional fast path, never a requirement: on the loopback benchmark it cut
the probe's CPU per request by 14-24% (docs/dataplane.md has the figures), and
everything the probe does works the same on the standard loop. Set
``CANARYLAB_PROBE_LOOP=asyncio`` to rule uvloop out (to compare the two, or when a bug
might be the loop's); ``CANARYLAB_PROBE_LOOP=uvloop`` makes a missing uvloop an error
instead of a silent fallback.

The loop is chosen where one is created (``run``, ``new_event_loop``); code that is
already inside a running loop keeps it. This module must never install a global event
loop policy: a notebook's or a test runner's loop is theirs.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
LoopName = Literal["uvloop", "asyncio"]
ENV = "CANARYLAB_PROBE_LOOP"
"""Environment variable naming the loop: ``uvloop``, ``asyncio`` or unset (uvloop if
installed)."""


def loop_factory(
    name: str | None = None,
) -> tuple[LoopName, Callable[[], asyncio.AbstractEventLoop]]:
    """(name, factory) of the loop to use: ``name``, else ``$CANARYLAB_PROBE_LOOP``, else
    uvloop when importable, else asyncio."""
    wanted = (name or os.environ.get(ENV, "")).strip().lower()
    if wanted not in ("", "uvloop", "asyncio"):
        raise ValueError(f"{ENV}={wanted!r} is not a loop the probe knows: use uvloop or asyncio")
    if wanted != "asyncio":
        try:
            uvloop: Any = importlib.import_module("uvloop")
        except ImportError as err:
            if wanted == "uvloop":
                raise RuntimeError(
                    f"{ENV}=uvloop but uvloop is not installed: `pip install uvloop`, "
                    f"or unset {ENV} to use asyncio's loop"
                ) from err
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def new_event_loop(name: str | None = None) -> asyncio.AbstractEventLoop:
    """A new loop of the chosen kind (for a thread that runs the probe)."""
    return loop_factory(name)[1]()


def run(main: Coroutine[Any, Any, T], name: str | None = None) -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(name)[1]) as runner:
        return runner.run(main)
