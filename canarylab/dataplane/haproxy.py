"""Gateway rules + running processes → an HAProxy configuration (pure).

``plan`` turns route rules and the endpoints behind each Service into backends whose
servers carry HAProxy weights; ``render`` writes the configuration text. The
configuration without its ``server`` lines is the *structure*: when only servers or
weights change the data plane applies them through HAProxy's runtime API, and it
reloads HAProxy only when the structure changes.

This module must never do I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from canarylab.dataplane.routes import (
    SANDBOX_DOMAIN,
    RequestMatch,
    RouteRule,
    ValueMatch,
    dispatch_order,
    ordered,
)

MAX_WEIGHT = 256
"""HAProxy's largest server weight."""
CHECK = "check inter 500 fall 3 rise 1"
"""Health-check arguments of every server (a dynamic server ignores default-server)."""

Endpoint = tuple[str, int]
"""A ready demo-app process: (address, port)."""
ServiceKey = tuple[str, str]
"""(namespace, service name)."""


@dataclass(frozen=True)
class Server:
    name: str
    address: str
    port: int
    weight: int

    def line(self) -> str:
        return f"server {self.name} {self.address}:{self.port} weight {self.weight} {CHECK}"


@dataclass(frozen=True)
class Backend:
    name: str
    rule: RouteRule
    servers: tuple[Server, ...]


@dataclass(frozen=True)
class GatewayPlan:
    """Backends in the order their rules are tried."""

    backends: tuple[Backend, ...]

    def weights(self) -> dict[str, dict[str, Server]]:
        """backend → server name → server."""
        return {b.name: {s.name: s for s in b.servers} for b in self.backends}


def server_name(service: ServiceKey, port: int) -> str:
    """``<namespace>.<service>.<port>``: the exporter's ``server`` label then says which
    Service (canary or original) answered, so PromQL can select either side. Namespaces
    and Service names are DNS labels, so the dots separate them unambiguously."""
    return f"{service[0]}.{service[1]}.{port}"


def backend_name(rule: RouteRule) -> str:
    """A stable, HAProxy-safe name for a rule's backend."""
    return "r_" + hashlib.sha1(rule.key.encode()).hexdigest()[:12]


def server_weights(
    services: Sequence[tuple[int, Sequence[Endpoint]]],
) -> dict[Endpoint, int]:
    """HAProxy weights for endpoints so that each service gets its weight's share.

    ``services`` holds (route weight, endpoints) pairs. A service's share is split
    evenly across its endpoints; the largest per-endpoint share maps to ``MAX_WEIGHT``
    so rounding costs as little accuracy as possible. A positive share never rounds
    to 0. An endpoint behind two services of one rule gets both shares.
    """
    live = [(w, eps) for w, eps in services if w > 0 and eps]
    total = sum(w for w, _ in live)
    shares: dict[Endpoint, float] = {}
    for _weight, endpoints in services:
        for endpoint in endpoints:
            shares.setdefault(endpoint, 0.0)
    if not total:
        return dict.fromkeys(shares, 0)
    for weight, endpoints in live:
        for endpoint in endpoints:
            shares[endpoint] += weight / total / len(endpoints)
    top = max(shares.values())
    return {
        ep: (max(1, round(MAX_WEIGHT * share / top)) if share > 0 else 0)
        for ep, share in shares.items()
    }


def plan(
    rules: Iterable[RouteRule], endpoints: Mapping[ServiceKey, Sequence[Endpoint]]
) -> GatewayPlan:
    """The backends for ``rules`` given the ready endpoints behind each Service."""
    backends = []
    for rule in ordered(rules):
        services = [
            (s.weight, tuple(endpoints.get((s.namespace, s.name), ()))) for s in rule.services
        ]
        weights = server_weights(services)
        # An endpoint behind two Services of one rule is named after the first.
        owner: dict[Endpoint, ServiceKey] = {}
        for s in rule.services:
            for endpoint in endpoints.get((s.namespace, s.name), ()):
                owner.setdefault(endpoint, (s.namespace, s.name))
        servers = tuple(
            Server(server_name(owner[(address, port)], port), address, port, weight)
            for (address, port), weight in sorted(weights.items())
        )
        backends.append(Backend(backend_name(rule), rule, servers))
    return GatewayPlan(tuple(backends))


# ------------------------------------------------------------------ render
def quote(value: str) -> str:
    """An HAProxy config word holding ``value`` literally."""
    if "'" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _fetch(value: ValueMatch) -> str:
    name = quote(value.name)
    if value.scope == "header":
        return f"req.hdr({name.lower()})"
    if value.scope == "cookie":
        return f"req.cook({name})"
    return f"urlp({name})"


def _value_acl(acl: str, value: ValueMatch) -> tuple[str, str]:
    """(acl line, condition word) for one value condition."""
    words = " ".join(quote(v) for v in value.values)
    fetch = _fetch(value)
    if value.op in ("exact", "in"):
        return f"acl {acl} {fetch} -m str {words}", acl
    if value.op == "not_exact":
        return f"acl {acl} {fetch} -m str {words}", f"!{acl}"
    if value.op == "iregex":
        return f"acl {acl} {fetch} -m reg -i {words}", acl
    return f"acl {acl} {fetch} -m reg {words}", acl


def _match_acls(prefix: str, match: RequestMatch) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    words: list[str] = []
    if match.path_prefixes or match.paths:
        acl = f"{prefix}_path"
        if match.path_prefixes:
            lines.append(f"acl {acl} path_beg {' '.join(quote(p) for p in match.path_prefixes)}")
        if match.paths:
            lines.append(f"acl {acl} path {' '.join(quote(p) for p in match.paths)}")
        words.append(acl)
    if match.methods:
        lines.append(f"acl {prefix}_method method {' '.join(match.methods)}")
        words.append(f"{prefix}_method")
    if match.remote_addrs:
        lines.append(f"acl {prefix}_src src {' '.join(match.remote_addrs)}")
        words.append(f"{prefix}_src")
    for index, value in enumerate(match.values):
        line, word = _value_acl(f"{prefix}_v{index}", value)
        lines.append(line)
        words.append(word)
    return lines, words


def _frontend(plan: GatewayPlan) -> list[str]:
    # A sandbox host addresses its own route alone: it never falls through to another
    # namespace's catch-all, so concurrent tests stay isolated (docs/dataplane.md).
    acls: list[str] = [
        f"acl sandbox_host req.hdr(host),lower,field(1,:) -m end {quote('.' + SANDBOX_DOMAIN)}"
    ]
    conditions: dict[tuple[int, int], list[str]] = {}
    for index, backend in enumerate(plan.backends):
        rule = backend.rule
        hosts = "any host, after named hosts" if rule.any_host else "its hosts only"
        acls.append(f"# {rule.key} (priority {rule.priority}; {hosts})")
        acls.append(
            f"acl h{index} req.hdr(host),lower,field(1,:) -m str "
            + " ".join(quote(h) for h in rule.hosts)
        )
        for alt, match in enumerate(rule.matches):
            lines, words = _match_acls(f"m{index}_{alt}", match)
            acls.extend(lines)
            conditions[index, alt] = words
    index_of = {id(backend.rule): index for index, backend in enumerate(plan.backends)}
    uses: list[str] = []
    for line in dispatch_order(backend.rule for backend in plan.backends):
        index = index_of[id(line.rule)]
        words = conditions[index, line.match]
        host = "!sandbox_host" if line.any_host else f"h{index}"
        uses.append(f"use_backend {plan.backends[index].name} if {' '.join([host, *words])}")
    return acls + uses


def settings(admin_socket: Path | None = None) -> list[str]:
    """The gateway's ``global`` and ``defaults`` sections (benchmarks/probe.py reuses them)."""
    return [
        "global",
        *(
            [f"  stats socket {admin_socket} mode 600 level admin expose-fd listeners"]
            if admin_socket is not None
            else []
        ),
        "  nbthread 1",
        "  maxconn 5000",
        "  hard-stop-after 30s",
        "",
        "defaults",
        "  mode http",
        "  timeout connect 2s",
        "  timeout client 60s",
        # A hanging server becomes a 504 the exporter counts against that server
        # (haproxy_server_response_errors_total) instead of a minute-long stall.
        "  timeout server 10s",
        "  timeout http-keep-alive 30s",
        "  timeout queue 10s",
        # A busy demo app answers /readyz late, not never: that is no reason to drop it.
        "  timeout check 3s",
        # A reload must not close a client's idle keep-alive connection under it.
        "  option idle-close-on-response",
        # A process stopped during a rollout must never become a failed request.
        "  retries 3",
        "  retry-on conn-failure empty-response",
        "  option redispatch 1",
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        "  balance roundrobin",
    ]


def metrics_frontend(port: int) -> list[str]:
    """HAProxy's built-in Prometheus exporter on its own loopback port (``/metrics``).

    Its own frontend, so no route of the gateway can shadow it; the sandbox's Prometheus
    scrapes it (``canarylab.sandbox.prometheus``).
    """
    return [
        "frontend metrics",
        f"  bind 127.0.0.1:{port}",
        "  http-request use-service prometheus-exporter if { path /metrics }",
        "  http-request return status 404 content-type text/plain string "
        + quote("the gateway's metrics are at /metrics"),
    ]


def render(
    plan: GatewayPlan,
    port: int,
    admin_socket: Path,
    *,
    servers: bool = True,
    metrics_port: int | None = None,
) -> str:
    """The whole HAProxy configuration; ``servers=False`` gives its structure.

    ``metrics_port`` adds the Prometheus exporter's frontend (:func:`metrics_frontend`).
    """
    out = [
        "# Written by the canarylab sandbox data plane; edits are overwritten.",
        *settings(admin_socket),
        "",
        "frontend gateway",
        f"  bind 127.0.0.1:{port}",
        *(f"  {line}" for line in _frontend(plan)),
        "  default_backend no_route",
        "",
        *([*metrics_frontend(metrics_port), ""] if metrics_port is not None else []),
        "backend no_route",
        "  http-request return status 404 content-type text/plain string "
        + quote(
            "no route matches this request (its host, path, method, headers or cookies); "
            "the Host header <route>.<namespace>.sandbox addresses one route alone"
        ),
    ]
    for backend in plan.backends:
        out += ["", f"backend {backend.name}", f"  # {backend.rule.key}"]
        if servers:
            out += [f"  {server.line()}" for server in backend.servers]
    return "\n".join(out) + "\n"
