"""Traefik as the sandbox's real Gateway API gateway (opt-in, built on first use).

The HAProxy data plane serves every route by canarylab's own reading of the specs.
Traefik (pinned in ``components/traefik/go.mod``, built like the other components but
only when first needed: its cold build is long) serves HTTPRoutes as a real Gateway API
implementation does, and writes real route status. It runs outside the cluster against
the sandbox's admin kubeconfig, listens on 127.0.0.1 only, and finds backends through
the EndpointSlices that the data plane publishes (one 127.0.0.N per process).

The sandbox owns one GatewayClass and one Gateway (both named ``canarylab``, the
Gateway in ``default``); HTTPRoutes that Traefik should serve carry a ``parentRefs``
entry naming it (``parent_ref()``).

This module never starts the control plane and never signals a process it did not
start (``canarylab.sandbox.procs`` checks pid and start time).
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from canarylab.errors import SandboxError
from canarylab.sandbox import build, procs

CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_CLASS = "canarylab"
GATEWAY_NAME = "canarylab"
GATEWAY_NAMESPACE = "default"
LISTENER = "web"
ENV_SETTING = "CANARYLAB_SANDBOX_GATEWAY"
"""``traefik`` makes ``canarylab sandbox up`` start Traefik too (off by default)."""


def wanted() -> bool:
    """Whether the user asked the sandbox for the real Gateway API gateway."""
    return os.environ.get(ENV_SETTING, "").strip().lower() == "traefik"


def parent_ref() -> dict[str, str]:
    """The ``parentRefs`` entry of an HTTPRoute that the sandbox's Traefik serves."""
    return {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": GATEWAY_NAME,
        "namespace": GATEWAY_NAMESPACE,
    }


def is_built() -> bool:
    """Whether Traefik's pinned binary is in the component cache."""
    return build.GATEWAYS["traefik"].is_built()


def ensure_binary(progress: Callable[[str], None] | None = None) -> Path:
    """Traefik's binary, built into the component cache the first time (minutes)."""
    report = build.ProgressLines(progress) if progress else None
    component = build.GATEWAYS["traefik"]
    return build.ensure_components([component], report)["traefik"]


def argv(binary: Path, port: int) -> list[str]:
    """Traefik's command line: Gateway API only, one entryPoint on 127.0.0.1:``port``."""
    return [
        str(binary),
        f"--entryPoints.{LISTENER}.address=127.0.0.1:{port}",
        "--providers.kubernetesgateway=true",
        # Out of a cluster there is no Service address to report: say loopback.
        "--providers.kubernetesgateway.statusaddress.ip=127.0.0.1",
        "--providers.kubernetesgateway.throttleDuration=200ms",
        "--providers.providersThrottleDuration=200ms",
        "--global.checkNewVersion=false",
        "--global.sendAnonymousUsage=false",
        "--log.level=INFO",
    ]


# ------------------------------------------------------------- API objects
def _client(server: str, pki_dir: Path) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
    return httpx.Client(base_url=server, verify=context, timeout=10)


def crd_files() -> list[Path]:
    """The standard-channel Gateway API CRDs of the release Traefik is built against
    (from Go's module cache: the Traefik build downloads that module)."""
    gomod = (build.GATEWAYS["traefik"].path / "go.mod").read_text()
    found = re.search(r"sigs\.k8s\.io/gateway-api (v\S+)", gomod)
    if not found:
        raise SandboxError("components/traefik/go.mod does not require sigs.k8s.io/gateway-api")
    go, _ = build.find_go()
    cache = subprocess.run(
        [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    directory = Path(cache) / f"sigs.k8s.io/gateway-api@{found[1]}/config/crd/standard"
    if not directory.is_dir():
        subprocess.run(
            [go, "mod", "download", f"sigs.k8s.io/gateway-api@{found[1]}"],
            cwd=build.GATEWAYS["traefik"].path,
            capture_output=True,
            check=False,
        )
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise SandboxError(f"no Gateway API CRDs in {directory}; is the Go module proxy reachable?")
    return files


def ensure_crds(client: httpx.Client, timeout: float = 60) -> None:
    """Create every Gateway API CRD Traefik watches that is missing (a newer one that
    is already installed stays), and wait until each is Established."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    names = []
    for file in crd_files():
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            names.append(doc["metadata"]["name"])
            response = client.post(path, json=doc)
            if response.status_code not in (201, 409):
                raise SandboxError(f"could not create CRD {names[-1]}: {response.text[:300]}")
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = client.get(f"{path}/{name}").json()
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise SandboxError(f"CRD {name} is not Established after {timeout:.0f}s")
            time.sleep(0.1)


def gateway_objects(port: int) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) for the GatewayClass and the Gateway; the listener's
    port is the entryPoint's, which is how Traefik maps listeners to entryPoints."""
    base = "/apis/gateway.networking.k8s.io/v1"
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS},
        "spec": {"controllerName": CONTROLLER_NAME},
    }
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
        "spec": {
            "gatewayClassName": GATEWAY_CLASS,
            "listeners": [
                {
                    "name": LISTENER,
                    "port": port,
                    "protocol": "HTTP",
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
            ],
        },
    }
    return [
        (f"{base}/gatewayclasses", gateway_class),
        (f"{base}/namespaces/{GATEWAY_NAMESPACE}/gateways", gateway),
    ]


def ensure_gateway(client: httpx.Client, port: int) -> None:
    """Create (or point at ``port``) the sandbox's GatewayClass and Gateway."""
    for collection, body in gateway_objects(port):
        response = client.post(collection, json=body)
        if response.status_code == 409:
            url = f"{collection}/{body['metadata']['name']}"
            current = client.get(url).json()
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            response = client.put(url, json=body)
        if response.status_code not in (200, 201):
            raise SandboxError(f"could not write {body['kind']}: {response.text[:300]}")


def gateway_programmed(client: httpx.Client) -> bool:
    """Whether Traefik has accepted and programmed the sandbox's Gateway."""
    url = (
        f"/apis/gateway.networking.k8s.io/v1/namespaces/{GATEWAY_NAMESPACE}/gateways/{GATEWAY_NAME}"
    )
    response = client.get(url)
    if response.status_code != 200:
        return False
    conditions = (response.json().get("status") or {}).get("conditions") or []
    return any(c["type"] == "Programmed" and c["status"] == "True" for c in conditions)


# ------------------------------------------------------------------ start
def start(
    *,
    server: str,
    pki_dir: Path,
    kubeconfig: Path,
    log_dir: Path,
    port: int,
    progress: Callable[[str], None] = lambda message: None,
    timeout: float = 120,
) -> procs.ProcessRecord:
    """Build if needed, install what it watches, start Traefik and wait until its
    Gateway is Programmed. The caller records (and later stops) the returned process."""
    binary = ensure_binary(progress)
    with _client(server, pki_dir) as client:
        ensure_crds(client)
        ensure_gateway(client, port)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        record = procs.spawn("traefik", argv(binary, port), log_dir / "traefik.log", env=env)
        progress(f"started traefik (pid {record.pid}) on 127.0.0.1:{port}")
        deadline = time.monotonic() + timeout
        while not gateway_programmed(client):
            if not record.alive():
                raise SandboxError(
                    f"traefik exited during start-up. Last lines of {record.log}:\n"
                    + procs.log_tail(record.log)
                )
            if time.monotonic() > deadline:
                procs.stop(record)
                raise SandboxError(
                    f"traefik did not program the Gateway within {timeout:.0f}s; see {record.log}"
                )
            time.sleep(0.2)
    return record


def main() -> None:
    """``python -m canarylab.sandbox.traefik``: build (or confirm) Traefik, with progress."""
    from rich.console import Console

    started = time.monotonic()
    component = build.GATEWAYS["traefik"]
    cached = component.is_built()
    try:
        build.ensure_components([component], build.progress_for(Console()))
    except SandboxError as error:
        raise SystemExit(f"error: {error}") from None
    except KeyboardInterrupt:
        raise SystemExit("interrupted; the next build resumes from Go's build cache") from None
    how = "cached" if cached else "built"
    print(f"{component.label()}: {how} -> {component.binary_dir()}")
    print(f"ready in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
