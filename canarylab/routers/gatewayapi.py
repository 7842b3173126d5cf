"""Gateway API router: weights on an ``HTTPRoute``'s backendRefs (gateway.networking.k8s.io/v1).

Each managed rule's parent backendRef gets ``split.parent`` and the canary backendRef
(added next to it, same port) gets ``split.canary``; a share is weight ÷ the sum.
``match`` becomes a managed HTTPRoute ``<canary>-match`` with the same parents and
hostnames whose rules copy each managed rule's matches plus the extra header matches
(cookies become a regular expression on the ``Cookie`` header). Gateway API has more
header matches win over fewer, so matching requests reach the canary. Source-address
matching does not exist in HTTPRoute and is refused with a clear reason. This module
must never touch fields other than backend weights, the canary backendRef and its own
annotation.
"""

from __future__ import annotations

import copy
import re
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

HTTP_ROUTE = RouteKind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")

Target = tuple[int, dict[str, Any], int]
"""(rule index, the rule, index of the parent backendRef in its backendRefs)."""


def _is_service(ref: Mapping[str, Any]) -> bool:
    return ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"


def find_targets(
    route: Mapping[str, Any], config: Mapping[str, Any], parent_services: frozenset[str]
) -> list[Target]:
    """The rules this canary manages, each with its parent backendRef; RouteProblem otherwise."""
    name = (route.get("metadata") or {}).get("name", "?")
    rules = list((route.get("spec") or {}).get("rules") or ())
    wanted = config.get("rules")
    port = config.get("port")

    def parent_index(rule: Mapping[str, Any]) -> int | None:
        for i, ref in enumerate(rule.get("backendRefs") or ()):
            if (
                _is_service(ref)
                and ref.get("name") in parent_services
                and (port is None or ref.get("port") in (None, port))
            ):
                return i
        return None

    services = ", ".join(sorted(parent_services)) or "no Service selects the parent pods"
    targets: list[Target] = []
    if wanted:
        for index in wanted:
            if not isinstance(index, int) or not 0 <= index < len(rules):
                raise RouteProblem(
                    "RuleNotFound",
                    f"HTTPRoute {name} has {len(rules)} rules; rule index {index!r} does not exist",
                )
            at = parent_index(rules[index])
            if at is None:
                raise RouteProblem(
                    "RuleWithoutParentBackend",
                    f"rule {index} of HTTPRoute {name} has no backendRef for the parent's Service "
                    f"({services}); add one or list other rules in "
                    "spec.trafficRouter.gatewayAPI.rules",
                )
            targets.append((index, rules[index], at))
        return targets
    for index, rule in enumerate(rules):
        at = parent_index(rule)
        if at is not None:
            targets.append((index, rule, at))
    if not targets:
        raise RouteProblem(
            "RuleWithoutParentBackend",
            f"no rule of HTTPRoute {name} has a backendRef for the parent's Service ({services})",
        )
    return targets


def _canary_index(rule: Mapping[str, Any], canary: str) -> int | None:
    for i, ref in enumerate(rule.get("backendRefs") or ()):
        if _is_service(ref) and ref.get("name") == canary:
            return i
    return None


def current_split(targets: list[Target]) -> TrafficSplit | None:
    """The split the managed rules carry now, when they all agree."""
    seen = set()
    for _, rule, index in targets:
        refs = rule.get("backendRefs") or []
        parent = refs[index]
        at = _canary_index(rule, canary_service_name(parent["name"]))
        if at is None:
            seen.add((100, 0))
            continue
        seen.add((parent.get("weight", 1), refs[at].get("weight", 1)))
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
            route, owner, {str(i): copy.deepcopy(r.get("backendRefs") or []) for i, r, _ in targets}
        )
    for _, rule, index in targets:
        refs = rule["backendRefs"]
        parent = refs[index]
        canary = canary_service_name(parent["name"])
        parent["weight"] = split.parent
        at = _canary_index(rule, canary)
        if at is None:
            entry: dict[str, Any] = {"name": canary, "weight": split.canary}
            if "port" in parent:
                entry["port"] = parent["port"]
            refs.insert(index + 1, entry)
        else:
            refs[at]["weight"] = split.canary
    return route


def restored(route: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """``route`` with the recorded backendRefs put back and the record gone; None if unrecorded."""
    original = read_original(route, owner)
    if original is None:
        return None
    route = copy.deepcopy(route)
    for index, rule in enumerate((route.get("spec") or {}).get("rules") or ()):
        if str(index) in original:
            rule["backendRefs"] = original[str(index)]
    drop_original(route, owner)
    return route


def cookie_regex(name: str, value: str, kind: str) -> str:
    """A regular expression on the Cookie header that holds when cookie ``name`` matches."""
    pattern = re.escape(value) if kind == "Exact" else value
    return f"(^|.*;\\s*){re.escape(name)}={pattern}(;.*|$)"


def match_route(
    route: Mapping[str, Any], owner: Owner, targets: list[Target], match: Match
) -> dict[str, Any]:
    """The managed HTTPRoute that sends matching requests to the canary."""
    if match.remote_addrs:
        raise RouteProblem(
            "MatchUnsupported",
            "HTTPRoute cannot match on source addresses: remove spec.match.remoteAddrs "
            "or use the apisix router",
        )
    if len(match.cookies) > 1:
        raise RouteProblem(
            "MatchUnsupported",
            "with the gatewayAPI router spec.match.cookies may hold one cookie "
            "(cookies are matched through the single Cookie header)",
        )
    extra = [{"type": m.type, "name": m.name, "value": m.value} for m in match.headers]
    extra += [
        {
            "type": "RegularExpression",
            "name": "Cookie",
            "value": cookie_regex(m.name, m.value, m.type),
        }
        for m in match.cookies
    ]
    names = {h["name"].lower() for h in extra}
    rules = []
    for _, rule, index in targets:
        parent = rule["backendRefs"][index]
        matches = []
        for m in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
            m = copy.deepcopy(m)
            kept = [
                h for h in m.get("headers") or () if str(h.get("name", "")).lower() not in names
            ]
            m["headers"] = kept + copy.deepcopy(extra)
            matches.append(m)
        ref: dict[str, Any] = {"name": canary_service_name(parent["name"]), "weight": 1}
        if "port" in parent:
            ref["port"] = parent["port"]
        new_rule: dict[str, Any] = {"matches": matches, "backendRefs": [ref]}
        for key in ("filters", "timeouts"):
            if key in rule:
                new_rule[key] = copy.deepcopy(rule[key])
        rules.append(new_rule)
    spec = route.get("spec") or {}
    managed_spec: dict[str, Any] = {"rules": rules}
    for key in ("parentRefs", "hostnames"):
        if key in spec:
            managed_spec[key] = copy.deepcopy(spec[key])
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": {
            "name": managed_route_name(owner),
            "labels": {CANARY_LABEL: owner.name},
            "ownerReferences": [owner.reference()],
        },
        "spec": managed_spec,
    }


class GatewayAPIRouter(RouteRouter):
    """``TrafficRouter`` over one HTTPRoute."""

    route_kind = HTTP_ROUTE
    route_field = "httpRoute"

    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        return find_targets(route, self.config, self.parent_services)

    def parent_service(self, targets: list[Target]) -> str:
        _, rule, index = targets[0]
        return str(rule["backendRefs"][index]["name"])

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
