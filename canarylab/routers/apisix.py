"""APISIX router: weights on an ``ApisixRoute``'s rule backends (apisix.apache.org/v2).

Each managed rule's parent backend gets ``split.parent`` and the canary backend (added
next to it, same port) gets ``split.canary``; APISIX splits them with its traffic-split
plugin. ``match`` becomes a managed ApisixRoute ``<canary>-match`` holding a copy of
each managed rule at ``priority + 1`` whose match also requires the headers, cookies
and source addresses, with the canary as its only backend. This module must never
touch fields other than backend weights, the canary backend and its own annotation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from canarylab.model.spec import Match
from canarylab.routers import backends
from canarylab.routers.backends import BackendShape, Target
from canarylab.routers.base import (
    Owner,
    RouteKind,
    RouteProblem,
    TrafficSplit,
)
from canarylab.routers.managed import RouteRouter

APISIX_ROUTE = RouteKind("apisix.apache.org", "v2", "apisixroutes", "ApisixRoute")


APISIX_BACKENDS = BackendShape("backends", "serviceName", "servicePort", 100)
"""An ApisixRoute rule's backends, the canary being a Service of its own."""
APISIX_SUBSET_BACKENDS = BackendShape("backends", "serviceName", "servicePort", 100, "subset")
"""The same with ``mode: subset``: the canary is a subset of the parent's Service."""


def find_targets(
    route: Mapping[str, Any],
    config: Mapping[str, Any],
    parent_services: frozenset[str],
    shape: BackendShape = APISIX_BACKENDS,
) -> list[Target]:
    """The rules this canary manages, each with its parent backend; RouteProblem otherwise."""
    name = (route.get("metadata") or {}).get("name", "?")
    rules = [r for r in (route.get("spec") or {}).get("http") or () if isinstance(r, dict)]
    wanted = config.get("rules") or []
    port = config.get("servicePort")
    targets: list[Target] = []
    if wanted:
        by_name = {r.get("name"): r for r in rules}
        for rule_name in wanted:
            rule = by_name.get(rule_name)
            if rule is None:
                raise RouteProblem(
                    "RuleNotFound",
                    f"ApisixRoute {name} has no http rule named {rule_name!r}; "
                    f"its rules are {sorted(str(n) for n in by_name)}",
                )
            index = shape.parent_index(rule, parent_services, port)
            if index is None:
                raise RouteProblem(
                    "RuleWithoutParentBackend",
                    f"rule {rule_name!r} of ApisixRoute {name} has no backend for the parent's "
                    f"Service ({', '.join(sorted(parent_services)) or 'none selects its pods'}); "
                    "add one or name another rule in spec.trafficRouter.apisix.rules",
                )
            targets.append((str(rule_name), rule, index))
        return targets
    for rule in rules:
        index = shape.parent_index(rule, parent_services, port)
        if index is not None:
            targets.append((str(rule.get("name")), rule, index))
    if not targets:
        raise RouteProblem(
            "RuleWithoutParentBackend",
            f"no rule of ApisixRoute {name} has a backend for the parent's Service "
            f"({', '.join(sorted(parent_services)) or 'no Service selects the parent pods'})",
        )
    return targets


def current_split(
    targets: list[Target], shape: BackendShape = APISIX_BACKENDS
) -> TrafficSplit | None:
    """The split the managed rules carry now, when they all agree."""
    return shape.split_of(targets)


def with_split(
    route: dict[str, Any],
    owner: Owner,
    config: Mapping[str, Any],
    parent_services: frozenset[str],
    split: TrafficSplit,
    shape: BackendShape = APISIX_BACKENDS,
) -> dict[str, Any]:
    """``route`` with ``split`` on its managed rules and the original recorded (pure)."""
    return backends.with_split(
        route, owner, lambda r: find_targets(r, config, parent_services, shape), shape, split
    )


def rule_key(_: int, rule: Mapping[str, Any]) -> str:
    """An ApisixRoute rule's original backends are recorded under its name."""
    return str(rule.get("name"))


def restored(route: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """``route`` with the recorded backends put back and the record gone; None if unrecorded."""
    return backends.restored(route, owner, "http", rule_key, APISIX_BACKENDS)


def match_route(
    route: Mapping[str, Any],
    owner: Owner,
    targets: list[Target],
    match: Match,
    shape: BackendShape = APISIX_BACKENDS,
) -> dict[str, Any]:
    """The managed ApisixRoute that sends matching requests to the canary."""
    exprs: list[dict[str, Any]] = []
    for scope, items in (("Header", match.headers), ("Cookie", match.cookies)):
        for m in items:
            op = "Equal" if m.type == "Exact" else "RegexMatch"
            exprs.append({"subject": {"scope": scope, "name": m.name}, "op": op, "value": m.value})
    http = []
    for _, rule, index in targets:
        parent = rule["backends"][index]
        copy_rule = {k: copy.deepcopy(v) for k, v in rule.items() if k not in ("upstreams",)}
        copy_rule["priority"] = int(rule.get("priority") or 0) + 1
        rule_match = copy_rule.setdefault("match", {})
        rule_match["exprs"] = list(rule_match.get("exprs") or []) + exprs
        if match.remote_addrs:
            rule_match["remoteAddrs"] = list(match.remote_addrs)
        copy_rule["backends"] = [shape.canary_only(parent)]
        http.append(copy_rule)
    spec: dict[str, Any] = {"http": http}
    if (route.get("spec") or {}).get("ingressClassName"):
        spec["ingressClassName"] = route["spec"]["ingressClassName"]
    return APISIX_ROUTE.managed(owner, spec)


class ApisixRouter(RouteRouter):
    """``TrafficRouter`` over one ApisixRoute."""

    route_kind = APISIX_ROUTE
    route_field = "route"
    rules_key = "http"
    shape = APISIX_BACKENDS

    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        return find_targets(route, self.config, self.parent_services, self.shape)

    def rule_key(self, index: int, rule: Mapping[str, Any]) -> str:
        return rule_key(index, rule)

    def match_route(
        self, route: Mapping[str, Any], targets: list[Target], match: Match
    ) -> dict[str, Any]:
        return match_route(route, self.owner, targets, match, self.shape)
