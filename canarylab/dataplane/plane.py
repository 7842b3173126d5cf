"""The data-plane process: keeps demo-app processes and HAProxy in step with the API.

Every ``interval`` it lists Deployments, Services, ``ApisixRoute`` and ``HTTPRoute``
objects from the sandbox's API server (a missing CRD simply means no such routes
yet), lets the workload runner start, roll or drain processes, plans the gateway
and applies the plan to HAProxy. Only after HAProxy has stopped sending new
requests to a drained process is that process stopped, so a rollout never turns
into a failed client request.

It runs as its own process (``python -m canarylab.dataplane``), recorded by the
sandbox like every other component. The only objects it writes are its own
EndpointSlices (``canarylab.dataplane.endpoints``), so that real gateways see the same
processes as HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from canarylab.dataplane.endpoints import EndpointPublisher
from canarylab.dataplane.haproxy import GatewayPlan, plan
from canarylab.dataplane.routes import (
    RouteProblem,
    RouteRule,
    apisix_rules,
    httproute_rules,
    subset_services,
)
from canarylab.dataplane.runtime import GatewayApplier, GatewayError
from canarylab.dataplane.workloads import WorkloadRunner, desired_workloads, service_endpoints

log = logging.getLogger("canarylab.dataplane")

LISTS = {
    "deployments": "/apis/apps/v1/deployments",
    "services": "/api/v1/services",
    "apisixroutes": "/apis/apisix.apache.org/v2/apisixroutes",
    "apisixupstreams": "/apis/apisix.apache.org/v2/apisixupstreams",
    "httproutes": "/apis/gateway.networking.k8s.io/v1/httproutes",
}


@dataclass(frozen=True)
class PlaneSettings:
    """Where the data plane finds the API server, HAProxy and its own files."""

    server: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    work_dir: Path
    """Holds haproxy.cfg, the status file and the ``ready`` marker."""
    log_dir: Path
    admin_socket: Path
    master_socket: Path
    port: int
    """The gateway's port on 127.0.0.1."""
    metrics_port: int | None = None
    """HAProxy's Prometheus exporter port on 127.0.0.1; None: no exporter."""
    interval: float = 0.2
    """Seconds between two looks at the API server."""
    idle_interval: float = 1.0
    """The same, while no demo app runs and no route exists."""

    @property
    def config_path(self) -> Path:
        return self.work_dir / "haproxy.cfg"

    @property
    def ready_marker(self) -> Path:
        return self.work_dir / "ready"

    @property
    def status_path(self) -> Path:
        return self.work_dir / "status.json"


async def fetch(client: httpx.AsyncClient) -> dict[str, list[dict[str, Any]]]:
    """Every object the data plane reads; a 404 (CRD not installed) is an empty list."""

    async def one(path: str) -> list[dict[str, Any]]:
        response = await client.get(path)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("items") or [])

    results = await asyncio.gather(*(one(p) for p in LISTS.values()))
    return dict(zip(LISTS, results, strict=True))


def route_rules(
    objects: dict[str, list[dict[str, Any]]],
) -> tuple[list[RouteRule], list[RouteProblem]]:
    rules: list[RouteRule] = []
    problems: list[RouteProblem] = []
    for obj in objects["apisixroutes"]:
        found, bad = apisix_rules(obj)
        rules += found
        problems += bad
    for obj in objects["httproutes"]:
        found, bad = httproute_rules(obj)
        rules += found
        problems += bad
    return rules, problems


def describe(gateway: GatewayPlan, reloads: int) -> dict[str, Any]:
    """The status file's content: what the gateway routes where, for humans and tests."""
    return {
        "reloads": reloads,
        "backends": [
            {
                "backend": b.name,
                "rule": b.rule.key,
                "priority": b.rule.priority,
                "hosts": list(b.rule.hosts),
                "any_host": b.rule.any_host,
                "servers": [{"port": s.port, "weight": s.weight} for s in b.servers],
            }
            for b in gateway.backends
        ],
    }


async def run(settings: PlaneSettings) -> None:
    """Reconcile until SIGTERM, then stop every demo-app process."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    settings.ready_marker.unlink(missing_ok=True)
    context = ssl.create_default_context(cafile=str(settings.ca_file))
    context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    runner = WorkloadRunner(settings.log_dir / "workloads")
    publisher = EndpointPublisher()
    applier = GatewayApplier(
        settings.config_path,
        settings.admin_socket,
        settings.master_socket,
        settings.port,
        metrics_port=settings.metrics_port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    last_plan: GatewayPlan | None = None
    retry_at = 0.0
    reported: set[RouteProblem] = set()
    async with httpx.AsyncClient(base_url=settings.server, verify=context, timeout=10) as client:
        try:
            while not stop.is_set():
                try:
                    objects = await fetch(client)
                except (httpx.HTTPError, ValueError) as err:
                    log.warning("cannot read the API server (%s); retrying", err)
                    objects = None
                if objects is not None:
                    workloads = desired_workloads(objects["deployments"])
                    runner.reap_exited()
                    await runner.sync(workloads)
                    rules, problems = route_rules(objects)
                    for problem in set(problems) - reported:
                        log.warning("%s: %s", problem.route, problem.message)
                    reported = set(problems)
                    endpoints = service_endpoints(objects["services"], workloads, runner.ready())
                    # ApisixUpstream subsets: endpoints for the gateway, never published
                    subsets = subset_services(objects["services"], objects["apisixupstreams"])
                    gateway = plan(
                        rules,
                        {**endpoints, **service_endpoints(subsets, workloads, runner.ready())},
                    )
                    try:
                        await publisher.sync(client, endpoints)
                    except httpx.HTTPError as err:
                        log.warning("could not publish EndpointSlices (retrying): %s", err)
                        publisher.published = None
                    due = loop.time() >= retry_at
                    if due and (gateway != last_plan or applier.draining):
                        try:
                            await applier.apply(gateway)
                            last_plan = gateway
                            settings.status_path.write_text(
                                json.dumps(describe(gateway, applier.reloads), indent=1)
                            )
                            settings.ready_marker.touch()
                        except (GatewayError, OSError) as err:
                            log.error("could not program HAProxy (retrying in 5 s): %s", err)
                            applier.structure = None  # re-apply in full next time
                            last_plan = None
                            retry_at = loop.time() + 5
                    runner.stop_drained(applier.drained)
                # An idle data plane (no demo app, no route) looks less often.
                busy = objects is None or runner.processes or (last_plan and last_plan.backends)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), settings.interval if busy else settings.idle_interval
                    )
        finally:
            await runner.close()
