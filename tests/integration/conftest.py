"""Integration fixtures: the canarylab controller, run the way a cluster would run it.

``controller`` (session) installs the real APISIX and Gateway API CRDs and the
CanaryDeployment CRD, applies ``deploy/``'s ServiceAccount and ClusterRole, and runs
``canarylab controller`` as a subprocess logged in with a TokenRequest token for that
ServiceAccount (RBAC is on in the sandbox). Other test modules use it as is:

    def test_something(controller, namespace): ...   # the controller manages `namespace`

``controller.kill()`` SIGKILLs it, ``controller.start()`` starts it again (tests that
kill it must start it again, even on failure: use ``controller.restarted()``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import install_crds, wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SA_NAMESPACE = "canarylab-system"
SA_NAME = "canarylab-controller"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControllerProcess:
    """A ``canarylab controller`` subprocess."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, scope: Sequence[str] = ("--all-namespaces",)
    ) -> None:
        """``scope``: what it serves (``--namespace NS``, ``--selector shard=a``, ...)."""
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.scope = tuple(scope)
        self.metrics_port = _free_port()
        self.liveness_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> None:
        """Start it (no-op when running) and wait until kopf reports itself alive."""
        if self.proc is not None and self.proc.poll() is None:
            return
        exe = Path(sys.executable).parent / "canarylab"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "controller",
                "--kubeconfig",
                str(self.kubeconfig),
                *self.scope,
                "--metrics-port",
                str(self.metrics_port),
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

        def alive() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"controller exited; see {self.log_path}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1
                ) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(alive, timeout, interval=0.2, what="the controller's liveness endpoint")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizer work, exactly like a crashed pod."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM and wait (kopf exits gracefully)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    @contextlib.contextmanager
    def restarted(self) -> Iterator[ControllerProcess]:
        """For tests that kill it: whatever happens inside, it runs again afterwards."""
        try:
            yield self
        finally:
            self.start()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return str(r.read().decode())

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def service_account_kubeconfig(api_client: Any, admin_kubeconfig: Path, dest: Path) -> Path:
    """A kubeconfig that authenticates as the controller's ServiceAccount (TokenRequest)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    token = core.create_namespaced_service_account_token(
        SA_NAME, SA_NAMESPACE, {"spec": {"expirationSeconds": 86400}}
    ).status.token
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": SA_NAME, "context": {"cluster": cluster["name"], "user": SA_NAME}}],
        "current-context": SA_NAME,
    }
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return dest


def apply_manifests(api_client: Any, path: Path) -> None:
    """Server-side apply every object in ``path`` as the admin (updates stale copies)."""
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(api_client)
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        resource.server_side_apply(
            body=doc,
            name=doc["metadata"]["name"],
            namespace=doc["metadata"].get("namespace"),
            field_manager="canarylab-tests",
            force_conflicts=True,
        )


@pytest.fixture(scope="session")
def controller_crds(api_client: Any, shared_crds: Path) -> None:
    """The real APISIX/Gateway API CRDs and the CanaryDeployment CRD, Established."""
    files = [*sorted((shared_crds / "apisix").glob("*.yaml"))]
    files += [*sorted((shared_crds / "gateway-api").glob("*.yaml"))]
    files += [DEPLOY / "canarydeployments.canarylab.io.yaml"]
    install_crds(api_client, files)


@pytest.fixture(scope="session")
def controller_kubeconfig(
    sandbox: Any, api_client: Any, controller_crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """deploy/'s ServiceAccount and ClusterRole applied; a token kubeconfig for them."""
    apply_manifests(api_client, DEPLOY / "namespace.yaml")
    apply_manifests(api_client, DEPLOY / "rbac.yaml")
    dest = tmp_path_factory.mktemp("controller") / "kubeconfig"
    return service_account_kubeconfig(api_client, Path(sandbox.kubeconfig), dest)


@pytest.fixture(scope="session")
def controller(
    controller_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProcess]:
    """A running controller (as the deploy/ ServiceAccount), shared by the session."""
    log_path = tmp_path_factory.mktemp("controller-log") / "controller.log"
    proc = ControllerProcess(controller_kubeconfig, log_path)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"[controller] log: {log_path}\n{proc.tail(15)}")


@pytest.fixture
def canary_api(controller: ControllerProcess, api_client: Any) -> Any:
    """``CustomObjectsApi`` as admin, with the controller running."""
    from kubernetes import client

    return client.CustomObjectsApi(api_client)
