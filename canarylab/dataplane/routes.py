"""Route objects → gateway rules: the pure half of programming the sandbox gateway.

``ApisixRoute`` (``apisix.apache.org/v2``) and ``HTTPRoute``
(``gateway.networking.k8s.io/v1``) objects, given as plain dicts, become
``RouteRule`` values: which requests a rule takes (hosts, paths, headers, cookies,
query arguments, source addresses, methods), its priority, and the Services it splits
traffic between with their weights.

Host semantics are the real gateways': an ``ApisixRoute`` rule without ``hosts`` and
an ``HTTPRoute`` without ``hostnames`` take every Host. Every route also answers on its
own host, ``<route>.<namespace>.sandbox``, which is tried before any catch-all, so
tests in different namespaces can still address their own route and never collide.
``dispatch_order`` ranks the rules the way APISIX (radixtree_host_uri) and Gateway API
precedence do; docs/dataplane.md lists where the stand-in still differs.

This module must never do I/O or import a Kubernetes client: it is unit-tested on
plain data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SANDBOX_DOMAIN = "sandbox"
APISIX_DEFAULT_WEIGHT = 100
"""APISIX's weight for a backend that names none."""
HTTPROUTE_DEFAULT_WEIGHT = 1
"""Gateway API's weight for a backendRef that names none."""

Op = Literal["exact", "regex", "iregex", "in", "not_exact"]


@dataclass(frozen=True)
class ValueMatch:
    """One condition on a request value: a header, a cookie or a query argument."""

    scope: Literal["header", "cookie", "query"]
    name: str
    op: Op
    values: tuple[str, ...]
    """One value, except for ``in`` (any of them)."""


@dataclass(frozen=True)
class RequestMatch:
    """Conditions that must all hold; an empty tuple means "any"."""

    path_prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    """Exact paths; a request matches when its path is in ``paths`` or starts with a prefix."""
    methods: tuple[str, ...] = ()
    values: tuple[ValueMatch, ...] = ()
    remote_addrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightedService:
    """A Service a rule sends traffic to, and its weight."""

    namespace: str
    name: str
    weight: int


@dataclass(frozen=True)
class RouteRule:
    """One rule of one route, ready to become a gateway backend."""

    kind: Literal["ApisixRoute", "HTTPRoute"]
    namespace: str
    route: str
    rule: str
    """The rule's name (APISIX) or index (HTTPRoute)."""
    priority: int
    hosts: tuple[str, ...]
    """Lower-case host names; always includes ``<route>.<namespace>.sandbox``."""
    matches: tuple[RequestMatch, ...]
    """Alternatives: the rule applies when any one matches (one empty match = all)."""
    services: tuple[WeightedService, ...]
    any_host: bool = False
    """The route declares no hosts, so the rule also takes requests for every Host
    (after every rule that names the request's host)."""
    order: int = 0
    """The rule's position in its route: the last tie-break, as in Gateway API."""

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.route}/{self.rule}"


@dataclass(frozen=True)
class RouteProblem:
    """A route (or part of one) the gateway cannot honour, and why."""

    route: str
    message: str


def regex_problem(values: Iterable[ValueMatch]) -> str | None:
    """Why one of the regex conditions cannot be used, or None when all compile."""
    for value in values:
        if value.op not in ("regex", "iregex"):
            continue
        for pattern in value.values:
            try:
                re.compile(pattern)
            except re.error as err:
                return f"regular expression {pattern!r} on {value.name!r} is invalid ({err})"
    return None


def sandbox_host(route: str, namespace: str) -> str:
    """The host that always addresses ``route`` in ``namespace`` through the gateway."""
    return f"{route}.{namespace}.{SANDBOX_DOMAIN}".lower()


def _hosts(route: str, namespace: str, declared: Iterable[Any]) -> tuple[str, ...]:
    hosts = [sandbox_host(route, namespace)]
    hosts += [str(h).lower() for h in declared if isinstance(h, str) and h and "*" not in h]
    return tuple(dict.fromkeys(hosts))


def _declares_hosts(declared: Iterable[Any]) -> bool:
    """Whether a route names any host (a wildcard counts: it must not become "every")."""
    return any(isinstance(h, str) and h for h in declared)


# ------------------------------------------------------------------ APISIX
_APISIX_OPS: dict[str, Op] = {
    "equal": "exact",
    "notequal": "not_exact",
    "regexmatch": "regex",
    "regexmatchcaseinsensitive": "iregex",
    "in": "in",
}


def _apisix_paths(paths: Iterable[Any]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """One (prefixes, exact paths) pair per declared path: APISIX ranks each path of a
    rule on its own (an exact path before any prefix, a longer prefix first)."""
    alternatives: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for path in paths:
        if not isinstance(path, str) or not path:
            continue
        if path.endswith("*"):
            prefix = path[:-1] or "/"
            # "/*" takes every path: no condition at all.
            alternatives.append(((), ()) if prefix == "/" else ((prefix,), ()))
        else:
            alternatives.append(((), (path,)))
    return list(dict.fromkeys(alternatives)) or [((), ())]


def apisix_rules(obj: Mapping[str, Any]) -> tuple[list[RouteRule], list[RouteProblem]]:
    """The rules of one ``ApisixRoute`` object, and what could not be translated."""
    meta = obj.get("metadata", {})
    name, namespace = meta.get("name", ""), meta.get("namespace", "default")
    rules: list[RouteRule] = []
    problems: list[RouteProblem] = []
    where = f"ApisixRoute {namespace}/{name}"
    for index, http in enumerate(obj.get("spec", {}).get("http") or []):
        rule_name = str(http.get("name") or index)
        match = http.get("match") or {}
        values: list[ValueMatch] = []
        skip = False
        for expr in match.get("exprs") or []:
            subject = expr.get("subject") or {}
            scope = str(subject.get("scope", "")).lower()
            op = _APISIX_OPS.get(str(expr.get("op", "")).lower())
            if scope not in ("header", "cookie", "query") or op is None:
                problems.append(
                    RouteProblem(
                        where,
                        f"rule {rule_name}: expression on {subject.get('scope')!r} with op "
                        f"{expr.get('op')!r} is not supported by the sandbox gateway (it "
                        "supports Header/Cookie/Query with Equal, NotEqual, In, RegexMatch, "
                        "RegexMatchCaseInsensitive); the rule is skipped",
                    )
                )
                skip = True
                break
            raw = expr.get("set") if op == "in" else [expr.get("value", "")]
            values.append(
                ValueMatch(
                    scope=scope,  # type: ignore[arg-type]
                    name=str(subject.get("name", "")),
                    op=op,
                    values=tuple(str(v) for v in raw or []),
                )
            )
        invalid = None if skip else regex_problem(values)
        if invalid:
            problems.append(
                RouteProblem(where, f"rule {rule_name}: {invalid}; the rule is skipped")
            )
        if skip or invalid:
            continue
        requests = tuple(
            RequestMatch(
                path_prefixes=prefixes,
                paths=exact,
                methods=tuple(str(m).upper() for m in match.get("methods") or []),
                values=tuple(values),
                remote_addrs=tuple(str(a) for a in match.get("remoteAddrs") or []),
            )
            for prefixes, exact in _apisix_paths(match.get("paths") or [])
        )
        backends = http.get("backends") or []
        services = tuple(
            WeightedService(
                namespace,
                subset_service_name(str(b["serviceName"]), str(b.get("subset") or "")),
                int(b["weight"]) if b.get("weight") is not None else APISIX_DEFAULT_WEIGHT,
            )
            for b in backends
            if b.get("serviceName")
        )
        rules.append(
            RouteRule(
                kind="ApisixRoute",
                namespace=namespace,
                route=name,
                rule=rule_name,
                priority=int(http.get("priority") or 0),
                hosts=_hosts(name, namespace, match.get("hosts") or []),
                matches=requests,
                services=services,
                any_host=not _declares_hosts(match.get("hosts") or []),
                order=index,
            )
        )
    return rules, problems


SUBSET_SEPARATOR = ":"
"""``<service>:<subset>``: a name no real Service can have (``:`` is not a DNS label character)
and HAProxy accepts in a server name."""


def subset_service_name(service: str, subset: str) -> str:
    """The name a backend's endpoints are found under: the Service, or one of its subsets."""
    return f"{service}{SUBSET_SEPARATOR}{subset}" if subset else service


def subset_services(
    services: Iterable[Mapping[str, Any]], upstreams: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """A Service-like object per ``ApisixUpstream`` subset, named ``<service>:<subset>``.

    APISIX takes a subset's nodes from the Service's endpoints whose pods carry the
    subset's labels, so the stand-in's subset selects what the Service's selector and
    the subset's labels both select (share and readiness then follow those pods). An
    upstream without a Service of its name, or a Service without a selector, yields
    nothing: a backend naming such a subset gets no endpoints, as in APISIX.
    """
    by_key = {
        (
            (s.get("metadata") or {}).get("namespace", "default"),
            (s.get("metadata") or {}).get("name"),
        ): s
        for s in services
    }
    out: list[dict[str, Any]] = []
    for upstream in upstreams:
        meta = upstream.get("metadata") or {}
        namespace = meta.get("namespace", "default")
        service = by_key.get((namespace, meta.get("name")))
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        for subset in (upstream.get("spec") or {}).get("subsets") or ():
            name, labels = subset.get("name"), subset.get("labels") or {}
            if not name or not isinstance(labels, Mapping):
                continue
            wanted = {str(k): str(v) for k, v in labels.items()}
            if any(selector.get(k, v) != v for k, v in wanted.items()):
                continue  # no pod can carry both: the subset is empty
            out.append(
                {
                    "metadata": {
                        "namespace": namespace,
                        "name": subset_service_name(str(meta["name"]), str(name)),
                    },
                    "spec": {
                        "selector": {**selector, **{str(k): str(v) for k, v in labels.items()}}
                    },
                }
            )
    return out


# --------------------------------------------------------------- HTTPRoute
def _httproute_match(match: Mapping[str, Any]) -> RequestMatch | str:
    path = match.get("path") or {}
    prefixes: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()
    if path:
        kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
        if kind == "PathPrefix":
            prefixes = () if value == "/" else (value,)
        elif kind == "Exact":
            exact = (value,)
        else:
            return f"path match type {kind!r} is not supported (use PathPrefix or Exact)"
    values: list[ValueMatch] = []
    for scope, key in (("header", "headers"), ("query", "queryParams")):
        for item in match.get(key) or []:
            kind = item.get("type", "Exact")
            if kind not in ("Exact", "RegularExpression"):
                return f"{key} match type {kind!r} is not supported"
            values.append(
                ValueMatch(
                    scope=scope,  # type: ignore[arg-type]
                    name=str(item.get("name", "")),
                    op="exact" if kind == "Exact" else "regex",
                    values=(str(item.get("value", "")),),
                )
            )
    invalid = regex_problem(values)
    if invalid:
        return invalid
    method = match.get("method")
    return RequestMatch(
        path_prefixes=prefixes,
        paths=exact,
        methods=(str(method).upper(),) if method else (),
        values=tuple(values),
    )


def httproute_rules(obj: Mapping[str, Any]) -> tuple[list[RouteRule], list[RouteProblem]]:
    """The rules of one ``HTTPRoute`` object, and what could not be translated."""
    meta = obj.get("metadata", {})
    name, namespace = meta.get("name", ""), meta.get("namespace", "default")
    spec = obj.get("spec", {})
    where = f"HTTPRoute {namespace}/{name}"
    rules: list[RouteRule] = []
    problems: list[RouteProblem] = []
    for index, rule in enumerate(spec.get("rules") or []):
        matches: list[RequestMatch] = []
        for match in rule.get("matches") or [{}]:
            translated = _httproute_match(match)
            if isinstance(translated, str):
                problems.append(RouteProblem(where, f"rule {index}: {translated}; skipped"))
                continue
            matches.append(translated)
        if not matches:
            continue
        services = tuple(
            WeightedService(
                str(ref.get("namespace") or namespace),
                str(ref.get("name", "")),
                int(ref["weight"]) if ref.get("weight") is not None else HTTPROUTE_DEFAULT_WEIGHT,
            )
            for ref in rule.get("backendRefs") or []
            if ref.get("kind", "Service") == "Service" and ref.get("name")
        )
        rules.append(
            RouteRule(
                kind="HTTPRoute",
                namespace=namespace,
                route=name,
                rule=str(rule.get("name") or index),
                priority=0,  # Gateway API has none: dispatch_order ranks by specificity
                hosts=_hosts(name, namespace, spec.get("hostnames") or []),
                matches=tuple(matches),
                services=services,
                any_host=not _declares_hosts(spec.get("hostnames") or []),
                order=index,
            )
        )
    return rules, problems


@dataclass(frozen=True)
class Dispatch:
    """One line of the gateway's dispatch table: a rule's match, on its hosts or on any."""

    rule: RouteRule
    match: int
    """Index into ``rule.matches``."""
    any_host: bool
    """False: only the rule's hosts; True: every Host (for a route that names none)."""


def _precedence(line: Dispatch) -> tuple[Any, ...]:
    """Sort key of a dispatch line; the first line whose conditions hold wins.

    1. A line for the request's named host before every catch-all line (APISIX's
       radixtree_host_uri tries host routes first; Gateway API prefers the most
       specific hostname).
    2. The path: an exact path before any prefix, a longer prefix before a shorter
       (APISIX's radixtree; Gateway API's Exact, then the longest PathPrefix).
    3. ``priority``, higher first (APISIX; below the path, above every other condition).
    4. Gateway API's next ranks: a method match, then more header matches, then more
       query matches; then more conditions of any kind.
    5. Stable last ties: namespace, route name, rule position, match position.
    """
    rule, match = line.rule, line.rule.matches[line.match]
    scopes = [v.scope for v in match.values]
    conditions = len(match.values) + len(match.remote_addrs) + len(match.methods)
    return (
        line.any_host,
        0 if match.paths else 1,
        -max((len(p) for p in match.path_prefixes), default=0),
        -rule.priority,
        -bool(match.methods),
        -(scopes.count("header") + scopes.count("cookie")),
        -scopes.count("query"),
        -conditions,
        rule.kind,
        rule.namespace,
        rule.route,
        rule.order,
        line.match,
    )


def dispatch_order(rules: Iterable[RouteRule]) -> list[Dispatch]:
    """Every (rule, match, hosts) line, in the order the gateway tries them."""
    lines = [
        Dispatch(rule, index, any_host)
        for rule in rules
        for index in range(len(rule.matches))
        for any_host in ((False, True) if rule.any_host else (False,))
    ]
    return sorted(lines, key=_precedence)


def ordered(rules: Iterable[RouteRule]) -> list[RouteRule]:
    """Rules by the rank of their best dispatch line (see ``dispatch_order``)."""
    first: dict[int, RouteRule] = {}
    for line in dispatch_order(rules):
        first.setdefault(id(line.rule), line.rule)
    return list(first.values())
