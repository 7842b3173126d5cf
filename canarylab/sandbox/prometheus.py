"""Prometheus as a sandbox component: the gateway's and the controller's metrics.

Debian's ``prometheus`` (2.42) runs beside the control plane with its data in the
sandbox's state directory, listens on 127.0.0.1 only and scrapes every
``SCRAPE_INTERVAL`` (metric gates judge fresh data, so never more than 2 s):

- ``gateway``: HAProxy's built-in exporter (``canarylab.dataplane.haproxy.metrics_frontend``),
  whose per-server series name the Service that answered;
- ``controller``: the controller's ``/metrics`` on the port the sandbox reserves for it
  (``canarylab controller --metrics-port``); the target is simply down while no
  controller runs.

Without the ``prometheus`` binary the sandbox starts without it and says how to install
it. This module never starts the control plane and never signals a process it did not
start (``canarylab.sandbox.procs`` checks pid and start time).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from canarylab.errors import SandboxError
from canarylab.sandbox import procs

SCRAPE_INTERVAL = "1s"
"""How often Prometheus scrapes (1–2 s keeps the gates' evidence fresh)."""
RETENTION = "6h"
"""A sandbox keeps a working day's afternoon of samples, not more."""


def binary() -> str | None:
    """The ``prometheus`` executable, or None when it is not installed."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def config(gateway_metrics_port: int, controller_metrics_port: int) -> str:
    """The scrape configuration (YAML text): the gateway's exporter and the controller."""
    return (
        "# Written by the canarylab sandbox; edits are overwritten.\n"
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  scrape_timeout: {SCRAPE_INTERVAL}\n"
        "  evaluation_interval: 15s\n"
        "scrape_configs:\n"
        "  - job_name: gateway\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gateway_metrics_port}']\n"
        "        labels: {gateway: haproxy}\n"
        "  - job_name: controller\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{controller_metrics_port}']\n"
    )


def argv(executable: str, work_dir: Path, port: int) -> list[str]:
    return [
        executable,
        f"--config.file={work_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={work_dir / 'data'}",
        f"--storage.tsdb.retention.time={RETENTION}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Series of a stopped process vanish within seconds, not the default 5 min,
        # so a gate never judges a server that is gone.
        "--query.lookback-delta=30s",
        "--log.level=warn",
    ]


def start(
    state_dir: Path,
    log_dir: Path,
    port: int,
    gateway_metrics_port: int,
    controller_metrics_port: int,
    progress: Callable[[str], None],
    timeout: float = 60.0,
) -> procs.ProcessRecord | None:
    """Start Prometheus and wait until it is ready; None (and a note) when not installed."""
    executable = binary()
    if executable is None:
        progress(
            "prometheus is not installed, so the sandbox runs without it (metric gates will "
            "find no evidence): run `make system-deps` or `sudo apt-get install prometheus`"
        )
        return None
    work_dir = state_dir / "prometheus"
    (work_dir / "data").mkdir(parents=True, exist_ok=True)
    (work_dir / "prometheus.yml").write_text(config(gateway_metrics_port, controller_metrics_port))
    record = procs.spawn("prometheus", argv(executable, work_dir, port), log_dir / "prometheus.log")
    progress(f"started prometheus (pid {record.pid}) on 127.0.0.1:{port}")
    wait_ready(record, f"http://127.0.0.1:{port}", timeout)
    return record


def wait_ready(record: procs.ProcessRecord, url: str, timeout: float) -> None:
    """Return once Prometheus answers ``/-/ready``; raise when it exits or never does."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while True:
            if not record.alive():
                raise SandboxError(
                    f"prometheus exited during start-up. Last lines of {record.log}:\n"
                    f"{procs.log_tail(record.log)}"
                )
            try:
                if client.get(f"{url}/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"prometheus did not become ready within {timeout:.0f}s; see {record.log}"
                )
            time.sleep(0.1)
