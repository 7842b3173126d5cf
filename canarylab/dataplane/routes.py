"""Route objects → gateway rules: the pure half of programming the sandbox gateway.

``ApisixRoute`` (``apisix.apache.org/v2``) and ``HTTPRoute``
(``gateway.networking.k8s.io/v1``) objects, given as plain dicts, become
``RouteRule`` values: which requests a rule takes (hosts, paths, headers, cookies,
query arguments, source addresses, methods), its priority, and the Services it splits
traffic between with their weights.

Every route also answers on its own host, ``<route>.<namespace>.sandbox``, so routes
in different namespaces never collide (see docs/dataplane.md).

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


# ------------------------------------------------------------------ APISIX
_APISIX_OPS: dict[str, Op] = {
    "equal": "exact",
    "notequal": "not_exact",
    "regexmatch": "regex",
    "regexmatchcaseinsensitive": "iregex",
    "in": "in",
}


def _apisix_paths(paths: Iterable[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    prefixes, exact = [], []
    for path in paths:
        if not isinstance(path, str) or not path:
            continue
        if path.endswith("*"):
            prefixes.append(path[:-1] or "/")
        else:
            exact.append(path)
    if "/" in prefixes:  # "/*" takes every path
        return (), ()
    return tuple(prefixes), tuple(exact)


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
        prefixes, exact = _apisix_paths(match.get("paths") or [])
        request = RequestMatch(
            path_prefixes=prefixes,
            paths=exact,
            methods=tuple(str(m).upper() for m in match.get("methods") or []),
            values=tuple(values),
            remote_addrs=tuple(str(a) for a in match.get("remoteAddrs") or []),
        )
        backends = http.get("backends") or []
        services = tuple(
            WeightedService(
                namespace,
                str(b.get("serviceName", "")),
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
                matches=(request,),
                services=services,
            )
        )
    return rules, problems


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
        # Gateway API ranks more specific matches first; more conditions ≈ more specific.
        specificity = max(len(m.values) + len(m.paths) + len(m.methods) for m in matches)
        rules.append(
            RouteRule(
                kind="HTTPRoute",
                namespace=namespace,
                route=name,
                rule=str(rule.get("name") or index),
                priority=specificity,
                hosts=_hosts(name, namespace, spec.get("hostnames") or []),
                matches=tuple(matches),
                services=services,
            )
        )
    return rules, problems


def ordered(rules: Iterable[RouteRule]) -> list[RouteRule]:
    """Rules in the order the gateway tries them: higher priority first, then the
    rule with more conditions, then by name (stable across runs)."""

    def conditions(rule: RouteRule) -> int:
        return max(
            (len(m.values) + len(m.remote_addrs) + len(m.paths) + len(m.path_prefixes))
            for m in rule.matches
        )

    return sorted(rules, key=lambda r: (-r.priority, -conditions(r), r.key))
