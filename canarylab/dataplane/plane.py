"""The data-plane process: keeps demo-app processes and HAProxy in step with the API.

It follows the kinds in ``WATCHED`` through watches (``canarylab.dataplane.watch``; a
missing CRD simply means no such routes yet). On every change, and at least every
``RESYNC`` seconds, it lets the workload runner start or drain one process per
demo-app Pod, reports the Pods' readiness, plans the gateway and applies the plan to
HAProxy. Only after HAProxy has stopped sending new requests to a drained process is
that process stopped, and only then is its Pod's deletion completed, so a rollout
never turns into a failed client request.

It runs as its own process (``python -m canarylab.dataplane``), recorded by the
sandbox like every other component. The objects it writes are its own EndpointSlices
(``canarylab.dataplane.endpoints``), so that real gateways see the same processes as
HAProxy, and demo-app Pods' status and final deletion (``canarylab.dataplane.pods``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from canarylab.dataplane.endpoints import EndpointPublisher
from canarylab.dataplane.haproxy import GatewayPlan, plan
from canarylab.dataplane.pods import PodReporter
from canarylab.dataplane.routes import (
    RouteProblem,
    RouteRule,
    apisix_rules,
    httproute_rules,
    subset_services,
)
from canarylab.dataplane.runtime import GatewayApplier, GatewayError
from canarylab.dataplane.watch import RESYNC, ClusterView, WatchedKind
from canarylab.dataplane.workloads import WorkloadRunner, demo_pods, service_endpoints

log = logging.getLogger("canarylab.dataplane")

WATCHED = (
    WatchedKind("pods", "/api/v1/pods"),
    WatchedKind("services", "/api/v1/services"),
    WatchedKind(
        "apisixroutes", "/apis/apisix.apache.org/v2/apisixroutes", "apisixroutes.apisix.apache.org"
    ),
    WatchedKind(
        "apisixupstreams",
        "/apis/apisix.apache.org/v2/apisixupstreams",
        "apisixupstreams.apisix.apache.org",
    ),
    WatchedKind(
        "httproutes",
        "/apis/gateway.networking.k8s.io/v1/httproutes",
        "httproutes.gateway.networking.k8s.io",
    ),
)
"""Every kind the data plane reads: the one list to extend (a snapshot's keys)."""
REQUEST_LOG_PERIOD = 60.0
"""Seconds between two log lines that count the data plane's API requests."""


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
    interval: float = 0.1
    """Seconds between two local passes while a process drains or HAProxy still holds
    connections to a removed server (no API request is made unless something changed)."""

    @property
    def config_path(self) -> Path:
        return self.work_dir / "haproxy.cfg"

    @property
    def ready_marker(self) -> Path:
        return self.work_dir / "ready"

    @property
    def status_path(self) -> Path:
        return self.work_dir / "status.json"


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
    wake = asyncio.Event()
    runner = WorkloadRunner(settings.log_dir / "workloads", changed=wake.set)
    view = ClusterView(WATCHED, changed=wake.set)
    publisher = EndpointPublisher()
    reporter = PodReporter()
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
    sent: Counter[str] = Counter()

    async def count(request: httpx.Request) -> None:
        watch = request.method == "GET" and request.url.params.get("watch") == "1"
        sent["WATCH" if watch else request.method] += 1

    async with httpx.AsyncClient(
        base_url=settings.server,
        verify=context,
        timeout=10,
        event_hooks={"request": [count]},
    ) as client:
        watching = asyncio.create_task(view.run(client))
        logged_at = loop.time()
        try:
            while not stop.is_set():
                wake.clear()
                if view.synced:
                    objects = view.snapshot()
                    pods = demo_pods(objects["pods"])
                    runner.reap_exited()
                    await runner.sync(pods)
                    try:
                        await reporter.sync(client, pods, runner.ready(), runner.has_process)
                    except httpx.HTTPError as err:
                        log.warning("could not write pod status (retrying): %s", err)
                    rules, problems = route_rules(objects)
                    for problem in set(problems) - reported:
                        log.warning("%s: %s", problem.route, problem.message)
                    reported = set(problems)
                    endpoints = service_endpoints(objects["services"], pods, runner.ready())
                    # ApisixUpstream subsets: endpoints for the gateway, never published
                    subsets = subset_services(objects["services"], objects["apisixupstreams"])
                    gateway = plan(
                        rules, {**endpoints, **service_endpoints(subsets, pods, runner.ready())}
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
                if loop.time() - logged_at >= REQUEST_LOG_PERIOD and sent:
                    # What this client costs the API server (GET = lists and reads).
                    period, logged_at = loop.time() - logged_at, loop.time()
                    log.info(
                        "API requests in the last %.0f s: %s", period, dict(sorted(sent.items()))
                    )
                    sent.clear()
                # Changes wake the loop; timers (a drain, HAProxy's connections, a
                # retry) need a short local tick; otherwise resync from the caches.
                flux = runner.in_flux() or applier.draining or last_plan is None
                if watching.done():
                    watching.result()  # a watch task never ends on its own: re-raise
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
                await asyncio.wait(
                    waits,
                    timeout=settings.interval if flux else RESYNC,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for waiter in waits:
                    waiter.cancel()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watching
            await runner.close()
