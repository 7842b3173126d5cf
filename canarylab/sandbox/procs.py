"""Processes the sandbox starts, and how it finds and stops exactly those.

A sandbox component is a child process started in its own session, so that it
outlives the `canarylab sandbox up` command that started it. Its pid alone is not
enough to stop it safely later (pids are reused), so the kernel's start time of
the process is recorded next to it and checked before any signal is sent.

This module must never signal a process it did not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRecord:
    """What the state file remembers of one started process."""

    name: str
    """Component name, e.g. ``kube-apiserver``."""
    pid: int
    """Process id at start."""
    start_ticks: int
    """Start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    log: str
    """Path of the file that receives the process's stdout and stderr."""

    def alive(self) -> bool:
        """Whether this very process (not a reused pid) is still running."""
        ticks = process_start_ticks(self.pid)
        return ticks is not None and ticks == self.start_ticks and not _is_zombie(self.pid)


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` detached from our session, appending its output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    ticks = process_start_ticks(proc.pid)
    if ticks is None:  # exited before we could look at it
        ticks = -1
    # Popen objects reap their child only when polled; we hand the pid to the
    # state file instead and let init adopt the process once this one exits.
    proc.returncode = 0
    return ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log))


def stop(record: ProcessRecord, grace: float = 10.0) -> None:
    """Stop the recorded process: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if not record.alive():
        _reap(record.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while record.alive() and time.monotonic() < deadline:
        _reap(record.pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status when it is our own child (a no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(log: str | Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
