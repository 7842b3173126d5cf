"""The workload runner: demo-app Pods become real local processes.

kwok only pretends to run pods. For every scheduled Pod whose container image is
``canarylab/demo:<tag>`` the runner keeps one demo-app process on a loopback address of
its own, with the container's environment, as a kubelet keeps a container: the Pod
is Ready only once that process answers ``/readyz`` (``canarylab.dataplane.pods``
writes the condition), and a Pod being deleted has its process drained (taken out of
the gateway) and stopped gracefully before its deletion completes. Rolling a
Deployment is therefore the Deployment controller's work, on true readiness.

``demo_pods`` and ``service_endpoints`` are pure; ``WorkloadRunner`` owns the
processes. This module must never stop a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from canarylab.dataplane.demoapp import READY_PATH, image_tag
from canarylab.dataplane.haproxy import Endpoint, ServiceKey

log = logging.getLogger("canarylab.dataplane.workloads")

PodKey = tuple[str, str]
"""(namespace, Pod name)."""


@dataclass(frozen=True)
class DemoPod:
    """A scheduled Pod whose container runs the demo app: the runner keeps one process
    for it while it is not being deleted."""

    namespace: str
    name: str
    uid: str
    tag: str
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    """The Pod's labels, which Service selectors match."""
    containers: tuple[str, ...]
    """Names of the Pod's containers (their statuses carry readiness too)."""
    container_statuses: tuple[Mapping[str, Any], ...]
    """``status.containerStatuses`` as kwok wrote them (a status patch replaces the list
    whole, so it is rewritten in full)."""
    running: bool
    """kwok has started the Pod (phase Running), so its status can take a Ready condition."""
    ready: bool | None
    """The Pod's Ready condition in the API now (None: none yet)."""
    resource_version: str
    terminating: bool
    """The Pod has a deletionTimestamp: drain and stop its process, then remove it."""
    grace: float
    """Seconds its process may take to stop after SIGTERM (the deletion grace period)."""

    @property
    def key(self) -> PodKey:
        return (self.namespace, self.name)


def _condition(status: Mapping[str, Any], kind: str) -> bool | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind:
            return condition.get("status") == "True"
    return None


def demo_pods(pods: Iterable[Mapping[str, Any]]) -> list[DemoPod]:
    """The scheduled demo-app Pods among ``pods`` (plain API dicts)."""
    out = []
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        status = pod.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        containers = spec.get("containers") or []
        demo = next((c for c in containers if image_tag(str(c.get("image", "")))), None)
        if demo is None:
            continue
        env = tuple(
            (str(e["name"]), str(e.get("value", "")))
            for e in demo.get("env") or []
            if e.get("name") and "valueFrom" not in e
        )
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds")
        out.append(
            DemoPod(
                namespace=str(meta.get("namespace", "default")),
                name=str(meta.get("name", "")),
                uid=str(meta.get("uid", "")),
                tag=image_tag(str(demo["image"])) or "",
                env=env,
                labels=tuple(sorted((meta.get("labels") or {}).items())),
                containers=tuple(str(c.get("name", "")) for c in containers),
                container_statuses=tuple(status.get("containerStatuses") or ()),
                running=status.get("phase") == "Running",
                ready=_condition(status, "Ready"),
                resource_version=str(meta.get("resourceVersion", "")),
                terminating=bool(meta.get("deletionTimestamp")),
                grace=float(30 if grace is None else grace),
            )
        )
    return out


def service_endpoints(
    services: Iterable[Mapping[str, Any]],
    pods: Iterable[DemoPod],
    ready: Mapping[str, Endpoint],
) -> dict[ServiceKey, list[Endpoint]]:
    """Service → endpoints of its selected Pods whose process is ready (by Pod uid) and
    that are not being deleted, as the EndpointSlice controller would list them."""
    by_namespace: dict[str, list[DemoPod]] = {}
    for pod in pods:
        if not pod.terminating and pod.uid in ready:
            by_namespace.setdefault(pod.namespace, []).append(pod)
    out: dict[ServiceKey, list[Endpoint]] = {}
    for svc in services:
        meta = svc.get("metadata", {})
        namespace = meta.get("namespace", "default")
        selector = (svc.get("spec") or {}).get("selector") or {}
        endpoints: list[Endpoint] = []
        if selector:
            for pod in by_namespace.get(namespace, []):
                labels = dict(pod.labels)
                if all(labels.get(k) == v for k, v in selector.items()):
                    endpoints.append(ready[pod.uid])
        out[(namespace, meta.get("name", ""))] = sorted(endpoints)
    return out


State = Literal["starting", "ready", "draining", "stopping", "failed"]


@dataclass
class DemoProcess:
    """One demo-app process the runner started for a Pod."""

    key: PodKey
    uid: str
    """The Pod's uid: a Pod re-created under the same name is another Pod."""
    port: int
    process: asyncio.subprocess.Process
    state: State = "starting"
    since: float = field(default_factory=time.monotonic)
    address: str = "127.0.0.1"
    """The loopback address this process alone listens on (see ``loopback_address``)."""
    grace: float = 15.0
    """Seconds SIGTERM may take before SIGKILL (the Pod's deletion grace period)."""

    @property
    def endpoint(self) -> Endpoint:
        return (self.address, self.port)


LOOPBACK_HOSTS = range(2, 255)
"""Last octets of the per-process addresses 127.0.0.N (127.0.0.1 stays the gateway's)."""


def loopback_address(taken: Iterable[str]) -> str:
    """A loopback address no live demo-app process uses.

    Each process gets an address of its own because real gateways find backends through
    EndpointSlices and Traefik deduplicates endpoints by IP: two processes on one IP
    would collapse into one endpoint. The whole 127.0.0.0/8 block is loopback on Linux,
    so binding to 127.0.0.N needs no setup. This is the one place that picks them.
    """
    used = set(taken)
    for host in LOOPBACK_HOSTS:
        address = f"127.0.0.{host}"
        if address not in used:
            return address
    return "127.0.0.1"  # more than 253 processes: share, as before per-process addresses


def _free_port(address: str, taken: Iterable[int]) -> int:
    """A free port on ``address`` that no other process of ours uses (server names are
    ``p<port>``, so ports stay unique across addresses)."""
    used = set(taken)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
            port = int(sock.getsockname()[1])
        if port not in used:
            return port


def endpoint_slices(endpoints: Mapping[ServiceKey, Sequence[Endpoint]]) -> list[dict[str, Any]]:
    """One EndpointSlice per Service, listing its ready processes, for real gateways.

    The API server rejects loopback IPs in ``addressType: IPv4`` slices but accepts
    ``addressType: FQDN`` with the address ``127.0.0.N`` (with a deprecation warning),
    and Traefik routes to it. FQDN slices are deprecated: this is the one place that
    writes them, so a future switch (to a non-loopback test network, say) is one edit.
    A slice has one port list for all its endpoints and every process listens on a port
    of its own, so each process gets a slice of its own (``<service>-dp-<port>``); the
    Service's own port is what routes name, the slice's port is where the process is.
    """
    slices: list[dict[str, Any]] = []
    for (namespace, service), found in sorted(endpoints.items()):
        for address, port in found:
            slices.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"{service}-dp-{port}",
                        "namespace": namespace,
                        "labels": {
                            "kubernetes.io/service-name": service,
                            "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                        },
                    },
                    "addressType": "FQDN",
                    "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
                    "ports": [{"name": "", "port": port, "protocol": "TCP"}],
                }
            )
    return slices


SLICE_MANAGER = "dataplane.canarylab.io"
"""The ``managed-by`` label of the data plane's EndpointSlices."""


class WorkloadRunner:
    """Keeps one demo-app process per demo-app Pod, as a kubelet keeps a container.

    A Pod's process starts when the Pod is scheduled; it is ready when it answers
    ``/readyz`` on its own address. When the Pod is being deleted the process is drained
    (taken out of the gateway), then stopped within the Pod's grace period; only then
    may the Pod's deletion complete (``has_process`` turns False).
    """

    def __init__(
        self,
        log_dir: Path,
        changed: Callable[[], None] | None = None,
        drain_delay: float = 0.3,
    ) -> None:
        self.log_dir = log_dir
        self._changed = changed or (lambda: None)
        """Called when a process became ready, failed or stopped."""
        self.drain_delay = drain_delay
        """How long a drained process keeps serving before SIGTERM (requests in HAProxy's
        hands at the moment of the switch still reach it)."""
        self.processes: list[DemoProcess] = []
        self._backoff: dict[str, float] = {}
        """Pod uid → when its process may be started again after a failure."""
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ queries
    def ready(self) -> dict[str, Endpoint]:
        """Pod uid → the endpoint of its ready process."""
        return {p.uid: p.endpoint for p in self.processes if p.state == "ready"}

    def has_process(self, uid: str) -> bool:
        """Whether a process of this Pod still runs (its deletion must wait)."""
        return any(p.uid == uid for p in self.processes)

    def in_flux(self) -> bool:
        """Whether a process is draining or waits out a restart back-off: the caller
        should look again soon (no event will say so)."""
        return bool(self._backoff) or any(p.state == "draining" for p in self.processes)

    # -------------------------------------------------------------- sync
    async def sync(self, pods: Sequence[DemoPod]) -> None:
        """Start a process for every live Pod without one; drain those of Pods gone or
        being deleted."""
        wanted = {p.uid: p for p in pods if not p.terminating}
        graces = {p.uid: p.grace for p in pods}
        now = time.monotonic()
        for proc in self.processes:
            if proc.state in ("starting", "ready") and proc.uid not in wanted:
                proc.grace = min(graces.get(proc.uid, 15.0), 60.0)
                self._drain(proc, now)
        live = {p.uid for p in self.processes if p.state in ("starting", "ready")}
        for uid, pod in wanted.items():
            if uid not in live and self._backoff.get(uid, 0) <= now:
                self._backoff.pop(uid, None)
                await self._start(pod)
        for uid in [u for u in self._backoff if u not in wanted]:
            del self._backoff[uid]

    def _drain(self, proc: DemoProcess, now: float) -> None:
        proc.state = "draining"
        proc.since = now

    async def _start(self, pod: DemoPod) -> None:
        live = [p for p in self.processes if p.process.returncode is None]
        address = loopback_address(p.address for p in live)
        port = _free_port(address, (p.port for p in live))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
        env.update(dict(pod.env))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_dir / f"{pod.namespace}_{pod.name}.log"
        with logfile.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "canarylab.dataplane.demoapp",
                "--host",
                address,
                "--port",
                str(port),
                "--tag",
                pod.tag,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        proc = DemoProcess(pod.key, pod.uid, port, process, address=address)
        self.processes.append(proc)
        log.info("started pod %s/%s on %s:%d", *pod.key, address, port)
        self._spawn(self._await_ready(proc, logfile))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ready(self, proc: DemoProcess, logfile: Path) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        url = f"http://{proc.address}:{proc.port}{READY_PATH}"
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while proc.state == "starting" and time.monotonic() < deadline:
            if proc.process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self._session.get(url) as response:
                    if response.status == 200 and proc.state == "starting":
                        proc.state = "ready"
                        self._changed()
                        return
            await asyncio.sleep(0.05)
        if proc.state == "starting":
            log.warning("demo app of pod %s/%s did not become ready; see %s", *proc.key, logfile)
            proc.state = "failed"
            self._backoff[proc.uid] = time.monotonic() + 2.0
            self._spawn(self._stop(proc))

    # -------------------------------------------------------------- stop
    def stop_drained(self, drained: Callable[[Endpoint], bool]) -> None:
        """SIGTERM draining processes the gateway no longer sends new requests to."""
        now = time.monotonic()
        for proc in self.processes:
            if (
                proc.state == "draining"
                and now - proc.since >= self.drain_delay
                and drained(proc.endpoint)
            ):
                proc.state = "stopping"
                self._spawn(self._stop(proc))

    async def _stop(self, proc: DemoProcess, grace: float | None = None) -> None:
        grace = proc.grace if grace is None else grace
        if proc.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.process.terminate()
            try:
                await asyncio.wait_for(proc.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.kill()
                await proc.process.wait()
        if proc in self.processes:
            self.processes.remove(proc)
        log.info("stopped pod %s/%s on port %d", *proc.key, proc.port)
        self._changed()

    def reap_exited(self) -> None:
        """Forget processes that died on their own (they are restarted on the next sync)."""
        for proc in list(self.processes):
            if proc.process.returncode is not None and proc.state in ("ready", "draining"):
                log.warning("demo app of pod %s/%s on port %d exited", *proc.key, proc.port)
                self.processes.remove(proc)
                self._backoff[proc.uid] = time.monotonic() + 1.0

    async def close(self) -> None:
        """Stop every process (the data plane is shutting down)."""
        await asyncio.gather(*(self._stop(p, grace=5.0) for p in list(self.processes)))
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
