"""The workload runner: demo-app Deployments become real local processes.

kwok only pretends to run pods. For every Deployment whose container image is
``canarylab/demo:<tag>`` the runner keeps ``spec.replicas`` demo-app processes on
loopback, each with the pod template's environment. A changed template is rolled:
new processes start, and only when all of them are ready are the old ones drained
(taken out of the gateway) and then stopped gracefully. A deleted Deployment's
processes are drained and stopped the same way.

``desired_workloads`` and ``service_endpoints`` are pure; ``WorkloadRunner`` owns the
processes. This module must never stop a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
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

WorkloadKey = tuple[str, str]
"""(namespace, Deployment name)."""


@dataclass(frozen=True)
class Workload:
    """What the runner should keep running for one demo-app Deployment."""

    namespace: str
    name: str
    replicas: int
    revision: str
    """Hash of the pod template: a new revision means a rollout."""
    tag: str
    env: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    """The pod template's labels, which Service selectors match."""

    @property
    def key(self) -> WorkloadKey:
        return (self.namespace, self.name)


def desired_workloads(deployments: Iterable[Mapping[str, Any]]) -> list[Workload]:
    """The demo-app Deployments among ``deployments`` (plain API dicts)."""
    out = []
    for dep in deployments:
        meta = dep.get("metadata", {})
        if meta.get("deletionTimestamp"):
            continue
        spec = dep.get("spec", {})
        template = spec.get("template", {})
        containers = template.get("spec", {}).get("containers") or []
        demo = next((c for c in containers if image_tag(str(c.get("image", "")))), None)
        if demo is None:
            continue
        env = tuple(
            (str(e["name"]), str(e.get("value", "")))
            for e in demo.get("env") or []
            if e.get("name") and "valueFrom" not in e
        )
        revision = hashlib.sha1(
            json.dumps(template, sort_keys=True, default=str).encode()
        ).hexdigest()[:10]
        replicas = spec.get("replicas")
        out.append(
            Workload(
                namespace=meta.get("namespace", "default"),
                name=meta.get("name", ""),
                replicas=1 if replicas is None else int(replicas),
                revision=revision,
                tag=image_tag(str(demo["image"])) or "",
                env=env,
                labels=tuple(sorted((template.get("metadata", {}).get("labels") or {}).items())),
            )
        )
    return out


def service_endpoints(
    services: Iterable[Mapping[str, Any]],
    workloads: Iterable[Workload],
    ready: Mapping[WorkloadKey, Sequence[Endpoint]],
) -> dict[ServiceKey, list[Endpoint]]:
    """Service → ready endpoints, by the Service's selector over pod-template labels."""
    by_namespace: dict[str, list[Workload]] = {}
    for workload in workloads:
        by_namespace.setdefault(workload.namespace, []).append(workload)
    out: dict[ServiceKey, list[Endpoint]] = {}
    for svc in services:
        meta = svc.get("metadata", {})
        namespace = meta.get("namespace", "default")
        selector = (svc.get("spec") or {}).get("selector") or {}
        endpoints: list[Endpoint] = []
        if selector:
            for workload in by_namespace.get(namespace, []):
                labels = dict(workload.labels)
                if all(labels.get(k) == v for k, v in selector.items()):
                    endpoints += ready.get(workload.key, ())
        out[(namespace, meta.get("name", ""))] = sorted(endpoints)
    return out


State = Literal["starting", "ready", "draining", "stopping", "failed"]


@dataclass
class DemoProcess:
    """One demo-app process the runner started."""

    key: WorkloadKey
    revision: str
    port: int
    process: asyncio.subprocess.Process
    state: State = "starting"
    since: float = field(default_factory=time.monotonic)
    address: str = "127.0.0.1"
    """The loopback address this process alone listens on (see ``loopback_address``)."""

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
    """Starts, rolls and stops demo-app processes to match the desired workloads."""

    def __init__(self, log_dir: Path, drain_delay: float = 0.3) -> None:
        self.log_dir = log_dir
        self.drain_delay = drain_delay
        """How long a drained process keeps serving before SIGTERM (requests in HAProxy's
        hands at the moment of the switch still reach it)."""
        self.processes: list[DemoProcess] = []
        self._backoff: dict[tuple[WorkloadKey, str], float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ queries
    def ready(self) -> dict[WorkloadKey, list[Endpoint]]:
        out: dict[WorkloadKey, list[Endpoint]] = {}
        for proc in self.processes:
            if proc.state == "ready":
                out.setdefault(proc.key, []).append(proc.endpoint)
        return out

    # -------------------------------------------------------------- sync
    async def sync(self, workloads: Sequence[Workload]) -> None:
        """Start what is missing and mark for draining what is no longer wanted."""
        wanted = {w.key: w for w in workloads}
        now = time.monotonic()
        for proc in self.processes:
            if proc.state in ("starting", "ready") and proc.key not in wanted:
                self._drain(proc, now)
        for workload in workloads:
            mine = [p for p in self.processes if p.key == workload.key]
            current = [
                p
                for p in mine
                if p.revision == workload.revision and p.state in ("starting", "ready")
            ]
            current.sort(key=lambda p: p.state != "ready")  # keep ready ones
            for extra in current[workload.replicas :]:
                self._drain(extra, now)
            current = current[: workload.replicas]
            missing = workload.replicas - len(current)
            if missing > 0 and self._backoff.get((workload.key, workload.revision), 0) <= now:
                for _ in range(missing):
                    await self._start(workload)
            if sum(p.state == "ready" for p in current) >= workload.replicas:
                for old in mine:
                    if old.revision != workload.revision and old.state in ("starting", "ready"):
                        self._drain(old, now)

    def _drain(self, proc: DemoProcess, now: float) -> None:
        proc.state = "draining"
        proc.since = now

    async def _start(self, workload: Workload) -> None:
        live = [p for p in self.processes if p.process.returncode is None]
        address = loopback_address(p.address for p in live)
        port = _free_port(address, (p.port for p in live))
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
        env.update(dict(workload.env))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_dir / f"{workload.namespace}_{workload.name}.log"
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
                workload.tag,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        proc = DemoProcess(workload.key, workload.revision, port, process, address=address)
        self.processes.append(proc)
        log.info("started %s/%s rev %s on %s:%d", *workload.key, workload.revision, address, port)
        self._spawn(self._await_ready(proc, workload))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await_ready(self, proc: DemoProcess, workload: Workload) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1))
        url = f"http://{proc.address}:{proc.port}{READY_PATH}"
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while proc.state == "starting" and time.monotonic() < deadline:
            if proc.process.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with self._session.get(url) as response:
                    if response.status == 200:
                        proc.state = "ready"
                        return
            await asyncio.sleep(0.05)
        if proc.state == "starting":
            log.warning(
                "demo app for %s/%s did not become ready; see %s",
                *workload.key,
                self.log_dir / f"{workload.namespace}_{workload.name}.log",
            )
            proc.state = "failed"
            self._backoff[(workload.key, workload.revision)] = time.monotonic() + 2.0
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

    async def _stop(self, proc: DemoProcess, grace: float = 15.0) -> None:
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
        log.info("stopped %s/%s on port %d", *proc.key, proc.port)

    def reap_exited(self) -> None:
        """Forget processes that died on their own (they are restarted on the next sync)."""
        for proc in list(self.processes):
            if proc.process.returncode is not None and proc.state in ("ready", "draining"):
                log.warning("demo app %s/%s on port %d exited", *proc.key, proc.port)
                self.processes.remove(proc)

    async def close(self) -> None:
        """Stop every process (the data plane is shutting down)."""
        await asyncio.gather(*(self._stop(p, grace=5.0) for p in list(self.processes)))
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
