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
from canarylab.model.workload import CANARY_LABEL, canary_service_name
from canarylab.routers.base import (
    Owner,
    RouteKind,
    RouteProblem,
    TrafficSplit,
    drop_original,
    managed_route_name,
    read_original,
    write_original,
)
from canarylab.routers.managed import RouteRouter

APISIX_ROUTE = RouteKind("apisix.apache.org", "v2", "apisixroutes", "ApisixRoute")

Target = tuple[str, dict[str, Any], int]
"""(rule name, the rule, index of the parent backend in its backends)."""


def find_targets(
    route: Mapping[str, Any], config: Mapping[str, Any], parent_services: frozenset[str]
) -> list[Target]:
    """The rules this canary manages, each with its parent backend; RouteProblem otherwise."""
    name = (route.get("metadata") or {}).get("name", "?")
    rules = [r for r in (route.get("spec") or {}).get("http") or () if isinstance(r, dict)]
    wanted = config.get("rules") or []
    port = config.get("servicePort")

    def parent_index(rule: Mapping[str, Any]) -> int | None:
        for i, backend in enumerate(rule.get("backends") or ()):
            if backend.get("serviceName") in parent_services and (
                port is None or backend.get("servicePort") in (None, port)
            ):
                return i
        return None

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
            index = parent_index(rule)
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
        index = parent_index(rule)
        if index is not None:
            targets.append((str(rule.get("name")), rule, index))
    if not targets:
        raise RouteProblem(
            "RuleWithoutParentBackend",
            f"no rule of ApisixRoute {name} has a backend for the parent's Service "
            f"({', '.join(sorted(parent_services)) or 'no Service selects the parent pods'})",
        )
    return targets


def _canary_index(rule: Mapping[str, Any], canary: str) -> int | None:
    for i, backend in enumerate(rule.get("backends") or ()):
        if backend.get("serviceName") == canary:
            return i
    return None


def current_split(targets: list[Target]) -> TrafficSplit | None:
    """The split the managed rules carry now, when they all agree."""
    seen = set()
    for _, rule, index in targets:
        backends = rule.get("backends") or []
        parent = backends[index]
        canary_at = _canary_index(rule, canary_service_name(parent["serviceName"]))
        if canary_at is None:
            seen.add((100, 0))
            continue
        seen.add((parent.get("weight", 100), backends[canary_at].get("weight", 100)))
    if len(seen) != 1:
        return None
    parent_w, canary_w = seen.pop()
    return TrafficSplit(int(parent_w), int(canary_w))


def with_split(
    route: dict[str, Any],
    owner: Owner,
    config: Mapping[str, Any],
    parent_services: frozenset[str],
    split: TrafficSplit,
) -> dict[str, Any]:
    """``route`` with ``split`` on its managed rules and the original recorded (pure)."""
    route = copy.deepcopy(route)
    targets = find_targets(route, config, parent_services)
    if read_original(route, owner) is None:
        write_original(
            route, owner, {n: copy.deepcopy(r.get("backends") or []) for n, r, _ in targets}
        )
    for _, rule, index in targets:
        backends = rule["backends"]
        parent = backends[index]
        canary = canary_service_name(parent["serviceName"])
        parent["weight"] = split.parent
        at = _canary_index(rule, canary)
        if at is None:
            entry: dict[str, Any] = {"serviceName": canary, "weight": split.canary}
            if "servicePort" in parent:
                entry["servicePort"] = parent["servicePort"]
            backends.insert(index + 1, entry)
        else:
            backends[at]["weight"] = split.canary
    return route


def restored(route: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """``route`` with the recorded backends put back and the record gone; None if unrecorded."""
    original = read_original(route, owner)
    if original is None:
        return None
    route = copy.deepcopy(route)
    for rule in (route.get("spec") or {}).get("http") or ():
        if rule.get("name") in original:
            rule["backends"] = original[rule["name"]]
    drop_original(route, owner)
    return route


def match_route(
    route: Mapping[str, Any], owner: Owner, targets: list[Target], match: Match
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
        backend: dict[str, Any] = {
            "serviceName": canary_service_name(parent["serviceName"]),
            "weight": 100,
        }
        if "servicePort" in parent:
            backend["servicePort"] = parent["servicePort"]
        copy_rule["backends"] = [backend]
        http.append(copy_rule)
    spec: dict[str, Any] = {"http": http}
    if (route.get("spec") or {}).get("ingressClassName"):
        spec["ingressClassName"] = route["spec"]["ingressClassName"]
    return {
        "apiVersion": APISIX_ROUTE.api_version,
        "kind": APISIX_ROUTE.kind,
        "metadata": {
            "name": managed_route_name(owner),
            "labels": {CANARY_LABEL: owner.name},
            "ownerReferences": [owner.reference()],
        },
        "spec": spec,
    }


class ApisixRouter(RouteRouter):
    """``TrafficRouter`` over one ApisixRoute."""

    route_kind = APISIX_ROUTE
    route_field = "route"

    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        return find_targets(route, self.config, self.parent_services)

    def parent_service(self, targets: list[Target]) -> str:
        _, rule, index = targets[0]
        return str(rule["backends"][index]["serviceName"])

    def split_of(self, targets: list[Target]) -> TrafficSplit | None:
        return current_split(targets)

    def with_split(self, route: dict[str, Any], split: TrafficSplit) -> dict[str, Any] | None:
        return with_split(route, self.owner, self.config, self.parent_services, split)

    def match_route(
        self, route: Mapping[str, Any], targets: list[Target], match: Match
    ) -> dict[str, Any]:
        return match_route(route, self.owner, targets, match)

    def restored(self, route: dict[str, Any]) -> dict[str, Any] | None:
        return restored(route, self.owner)
