"""Errors a canarylab user can meet.

Every error here carries a message that says what went wrong and what to do about
it; the CLI prints that message and exits non-zero instead of a traceback.
"""

from __future__ import annotations


class CanarylabError(Exception):
    """Base class of every error canarylab raises on purpose."""


class SandboxError(CanarylabError):
    """The local sandbox could not be built, started, inspected or stopped."""
