"""The sandbox as a local cluster that ``canarylab.kube.resolve()`` can find.

Registered in the ``canarylab.local_clusters`` entry-point group (pyproject.toml), so
that cluster access never imports the sandbox: ``kube`` asks its finders, and this one
answers for sandboxes. It only reads state files and checks pids; it must never start,
build or stop anything.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from canarylab.dataplane.routes import sandbox_host
from canarylab.errors import SandboxError
from canarylab.kube import LocalCluster
from canarylab.sandbox.core import Sandbox


def find(kubeconfig: Path | None) -> LocalCluster | None:
    """``None``: the default sandbox (``$CANARYLAB_SANDBOX_DIR``) when it is running.
    A path: the sandbox whose admin kubeconfig that is, running or not (its gateway is
    where it last served)."""
    if kubeconfig is None:
        sandbox = Sandbox()
        if not (sandbox.kubeconfig.exists() and sandbox.is_running()):
            return None
        return _local(sandbox)
    path = Path(kubeconfig).expanduser().resolve()
    for sandbox in (Sandbox(path.parent), Sandbox()):
        # an unreadable state file is the sandbox's problem, not a reason to fail here
        with contextlib.suppress(SandboxError):
            if sandbox.kubeconfig.resolve() == path and sandbox.state().processes:
                return _local(sandbox)
    return None


def _local(sandbox: Sandbox) -> LocalCluster:
    extras = sandbox.state().extras
    gateway, prometheus = extras.get("gateway"), extras.get("prometheus")
    return LocalCluster(
        "sandbox",
        sandbox.kubeconfig,
        str(gateway) if gateway else None,
        route_host=sandbox_host,
        prometheus=str(prometheus) if prometheus else None,
    )
