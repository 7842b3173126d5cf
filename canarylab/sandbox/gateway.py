"""Starting the data plane (HAProxy and ``python -m canarylab.dataplane``) next to a
sandbox's control plane.

``start`` writes an empty gateway configuration, starts HAProxy in master-worker mode
and the data-plane process, waits until the data plane has programmed HAProxy once,
and returns both as ``ProcessRecord``s for the sandbox's state file (so ``sandbox
down`` stops them like any other component).

It lives in the sandbox, not in ``canarylab.dataplane``: the data plane is the layer
below, and knows nothing of how the sandbox records and stops its processes. This
module must never stop a process: stopping belongs to ``canarylab.sandbox.core``.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from canarylab.dataplane.haproxy import GatewayPlan, render
from canarylab.errors import SandboxError
from canarylab.sandbox import procs

UNIX_PATH_MAX = 90
"""Socket paths longer than this move to /tmp (HAProxy refuses more than 97 characters)."""


@dataclass(frozen=True)
class DataPlane:
    """What the sandbox records about a started data plane."""

    processes: tuple[procs.ProcessRecord, ...]
    gateway: str
    """The gateway's URL, e.g. ``http://127.0.0.1:40123``."""
    port: int


def _socket_dir(work_dir: Path) -> Path:
    if len(str(work_dir / "haproxy-master.sock")) <= UNIX_PATH_MAX:
        return work_dir
    digest = hashlib.sha1(str(work_dir).encode()).hexdigest()[:10]
    path = Path("/tmp") / f"canarylab-{digest}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def haproxy_binary() -> str:
    """The haproxy executable, or an error that says how to install it."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if not found:
        raise SandboxError(
            "the sandbox gateway needs HAProxy, which is not installed: run `make system-deps` "
            "(or `sudo apt-get install haproxy`)"
        )
    return found


def start(
    state_dir: Path,
    log_dir: Path,
    server: str,
    pki_dir: Path,
    port: int,
    progress: Callable[[str], None],
    record: Callable[[procs.ProcessRecord], None],
    timeout: float = 60.0,
    metrics_port: int | None = None,
) -> DataPlane:
    """Start HAProxy and the data-plane process; return once the gateway answers.

    ``record`` is called with each process as soon as it runs, so that the caller
    can stop it even when start-up fails later. ``metrics_port`` puts HAProxy's
    Prometheus exporter on 127.0.0.1 at that port.
    """
    binary = haproxy_binary()
    work_dir = state_dir / "dataplane"
    work_dir.mkdir(parents=True, exist_ok=True)
    sockets = _socket_dir(work_dir)
    admin, master = sockets / "haproxy-admin.sock", sockets / "haproxy-master.sock"
    config = work_dir / "haproxy.cfg"
    config.write_text(render(GatewayPlan(()), port, admin, metrics_port=metrics_port))
    (work_dir / "ready").unlink(missing_ok=True)
    records = []
    haproxy = procs.spawn(
        "haproxy",
        [binary, "-W", "-db", "-f", str(config), "-S", f"{master},mode,600"],
        log_dir / "haproxy.log",
    )
    records.append(haproxy)
    record(haproxy)
    progress(f"started haproxy (pid {haproxy.pid}) on 127.0.0.1:{port}")
    plane = procs.spawn(
        "dataplane",
        [
            sys.executable,
            "-m",
            "canarylab.dataplane",
            f"--server={server}",
            f"--ca-file={pki_dir / 'ca.crt'}",
            f"--cert-file={pki_dir / 'admin.crt'}",
            f"--key-file={pki_dir / 'admin.key'}",
            f"--work-dir={work_dir}",
            f"--log-dir={log_dir}",
            f"--admin-socket={admin}",
            f"--master-socket={master}",
            f"--port={port}",
            *([f"--metrics-port={metrics_port}"] if metrics_port is not None else []),
        ],
        log_dir / "dataplane.log",
    )
    records.append(plane)
    record(plane)
    progress(f"started dataplane (pid {plane.pid})")
    deadline = time.monotonic() + timeout
    while not (work_dir / "ready").exists():
        for started in records:
            if not started.alive():
                raise SandboxError(
                    f"sandbox component {started.name} exited during start-up. "
                    f"Last lines of {started.log}:\n{procs.log_tail(started.log)}"
                )
        if time.monotonic() > deadline:
            raise SandboxError(
                f"the data plane did not program HAProxy within {timeout:.0f}s; see "
                f"{plane.log} and {haproxy.log}"
            )
        time.sleep(0.05)
    return DataPlane(tuple(records), f"http://127.0.0.1:{port}", port)
