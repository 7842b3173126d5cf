"""Where canarylab connects: the one place that turns "which cluster" into a client.

Resolution order, the same for the CLI, notebooks, runbooks and the controller:
an explicit kubeconfig path, else ``$KUBECONFIG``, else the pod's service account
when running inside a cluster, else the local sandbox when it is running. A missing target is an error that says how to get one, never a
silent fall-back to some other cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from canarylab.errors import CanarylabError


class NoClusterError(CanarylabError):
    """Neither a kubeconfig nor a running sandbox was found."""


@dataclass(frozen=True)
class Target:
    """A resolved cluster: the kubeconfig file, the context in it, and where it came from."""

    kubeconfig: Path | None
    """None for ``in-cluster`` (the pod's service-account token)."""
    context: str | None
    source: str
    """``argument``, ``KUBECONFIG``, ``in-cluster`` or ``sandbox``."""


SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()


def resolve(kubeconfig: str | Path | None = None, context: str | None = None) -> Target:
    """Decide which cluster to talk to (see the module docstring for the order)."""
    if kubeconfig:
        path = Path(kubeconfig).expanduser()
        if not path.exists():
            raise NoClusterError(f"kubeconfig {path} does not exist")
        return Target(path, context, "argument")
    env = os.environ.get("KUBECONFIG")
    if env:
        first = Path(env.split(os.pathsep)[0]).expanduser()
        if not first.exists():
            raise NoClusterError(f"KUBECONFIG points at {first}, which does not exist")
        return Target(first, context, "KUBECONFIG")
    if _in_cluster():
        return Target(None, None, "in-cluster")
    from canarylab.sandbox import Sandbox

    sandbox = Sandbox()
    if sandbox.kubeconfig.exists() and sandbox.is_running():
        return Target(sandbox.kubeconfig, context, "sandbox")
    raise NoClusterError(
        "no cluster given and no sandbox running: run `canarylab sandbox up` "
        "(or `make demo`), or set KUBECONFIG to use an existing cluster"
    )


def api_client(
    kubeconfig: str | Path | None = None, context: str | None = None
) -> client.ApiClient:
    """A ``kubernetes.client.ApiClient`` for the resolved target."""
    target = resolve(kubeconfig, context)
    if target.kubeconfig is None:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=str(target.kubeconfig), context=target.context)
