"""The control plane's command lines, one function per component, in one table.

``CONTROL_PLANE`` is the start order (stopping goes the other way). Each entry names
the component and the function that turns a ``LaunchContext`` (paths, ports and the
built binaries) into its argv; ``canarylab.sandbox.core`` starts them and waits for
the API. Adding a component is one function and one row; nothing else branches on
a component's name.

This module only builds command lines (and the config files they name); it must never
start or signal a process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"
DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class LaunchContext:
    """What a component's command line is made of."""

    state_dir: Path
    pki_dir: Path
    binaries: dict[str, Path]
    """Binary name to its path in the component cache."""
    ports: dict[str, int]
    """The sandbox's ports by name (``apiserver``, ``etcd``, ...)."""
    pod_ready_delay_ms: int = 1000
    """kwok's Ready delay for Pods whose image is not the demo app."""

    @property
    def kubeconfigs(self) -> Path:
        return self.state_dir / "kubeconfigs"


def etcd(ctx: LaunchContext) -> list[str]:
    """etcd on loopback, without fsync (a sandbox trades durability for speed)."""
    client = f"http://127.0.0.1:{ctx.ports['etcd']}"
    peer = f"http://127.0.0.1:{ctx.ports['etcd-peer']}"
    return [
        str(ctx.binaries["etcd"]),
        "--name=sandbox",
        f"--data-dir={ctx.state_dir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=sandbox={peer}",
        "--auto-compaction-retention=1",
        "--quota-backend-bytes=4294967296",
        # A sandbox trades durability for speed; envtest does the same.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def kube_apiserver(ctx: LaunchContext) -> list[str]:
    """The API server: envtest's flags, RBAC, plain in-flight limits."""
    return [
        str(ctx.binaries["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{ctx.ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ctx.ports['apiserver']}",
        f"--tls-cert-file={ctx.pki_dir / 'apiserver.crt'}",
        f"--tls-private-key-file={ctx.pki_dir / 'apiserver.key'}",
        f"--client-ca-file={ctx.pki_dir / 'ca.crt'}",
        f"--kubelet-client-certificate={ctx.pki_dir / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={ctx.pki_dir / 'apiserver-kubelet-client.key'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={ctx.pki_dir / 'sa.pub'}",
        f"--service-account-signing-key-file={ctx.pki_dir / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # No kubelet mounts tokens here; skipping the plugin lets pods be
        # created before a namespace's default ServiceAccount exists.
        "--disable-admission-plugins=ServiceAccount",
        # One user, many controllers: plain in-flight limits instead of APF queues.
        "--enable-priority-and-fairness=false",
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
        "--profiling=false",
        "--v=0",
    ]


def kube_controller_manager(ctx: LaunchContext) -> list[str]:
    """Every default controller except the EndpointSlice ones."""
    return [
        str(ctx.binaries["kube-controller-manager"]),
        f"--kubeconfig={ctx.kubeconfigs / 'controller-manager.kubeconfig'}",
        f"--authentication-kubeconfig={ctx.kubeconfigs / 'controller-manager.kubeconfig'}",
        f"--authorization-kubeconfig={ctx.kubeconfigs / 'controller-manager.kubeconfig'}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--root-ca-file={ctx.pki_dir / 'ca.crt'}",
        f"--service-account-private-key-file={ctx.pki_dir / 'sa.key'}",
        f"--cluster-signing-cert-file={ctx.pki_dir / 'ca.crt'}",
        f"--cluster-signing-key-file={ctx.pki_dir / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The data plane publishes the real endpoints (127.0.0.N per process);
        # these controllers would add kwok's fake pod IPs as Ready endpoints,
        # and a real gateway would send traffic off loopback to them.
        "--controllers=*,-endpointslice-controller,-endpointslice-mirroring-controller",
        "--concurrent-gc-syncs=30",
        "--concurrent-deployment-syncs=20",
        "--concurrent-replicaset-syncs=20",
        "--concurrent-service-endpoint-syncs=10",
        "--kube-api-qps=300",
        "--kube-api-burst=600",
        "--v=0",
    ]


def kube_scheduler(ctx: LaunchContext) -> list[str]:
    """The scheduler, configured by a file written next to the state."""
    config = ctx.state_dir / "scheduler-config.yaml"
    config.write_text(
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        "clientConnection:\n"
        f"  kubeconfig: {ctx.kubeconfigs / 'scheduler.kubeconfig'}\n"
        "  qps: 300\n"
        "  burst: 600\n"
        "leaderElection:\n"
        "  leaderElect: false\n"
    )
    return [
        str(ctx.binaries["kube-scheduler"]),
        f"--config={config}",
        f"--authentication-kubeconfig={ctx.kubeconfigs / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={ctx.kubeconfigs / 'scheduler.kubeconfig'}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--v=0",
    ]


def kwok(ctx: LaunchContext) -> list[str]:
    """kwok with the sandbox's stages: the nodes and the pods' lifecycle."""
    stages = ctx.state_dir / "kwok-stages.yaml"
    text = (DATA_DIR / "kwok-stages.yaml").read_text()
    stages.write_text(
        text.replace(
            "durationMilliseconds: 1000", f"durationMilliseconds: {ctx.pod_ready_delay_ms}"
        )
    )
    return [
        str(ctx.binaries["kwok"]),
        f"--kubeconfig={ctx.kubeconfigs / 'kwok.kubeconfig'}",
        "--manage-all-nodes=true",
        f"--config={stages}",
        f"--server-address=127.0.0.1:{ctx.ports['kwok']}",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.200.0.1",
    ]


@dataclass(frozen=True)
class Component:
    """One control-plane process: its name and how its command line is built."""

    name: str
    argv: Callable[[LaunchContext], list[str]]
    ready: Literal["started", "port", "api"] = "started"
    """What start-up waits for before the next component: nothing, the component's own
    port (``ports[name]``, e.g. ``etcd``), or the API server's ``/readyz``."""


CONTROL_PLANE: tuple[Component, ...] = (
    Component("etcd", etcd, ready="port"),
    Component("kube-apiserver", kube_apiserver, ready="api"),
    Component("kube-controller-manager", kube_controller_manager),
    Component("kube-scheduler", kube_scheduler),
    Component("kwok", kwok),
)
"""The control plane in start order."""
NAMES = tuple(c.name for c in CONTROL_PLANE)


def component(name: str) -> Component:
    """The control-plane component called ``name``; KeyError for any other name."""
    return {c.name: c for c in CONTROL_PLANE}[name]
