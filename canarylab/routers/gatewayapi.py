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
from canarylab.routers import backends
from canarylab.routers.backends import BackendShape, Target
from canarylab.routers.base import (
    Owner,
    RouteKind,
    RouteProblem,
    TrafficSplit,
)
from canarylab.routers.managed import RouteRouter

HTTP_ROUTE = RouteKind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")


def _is_service(ref: Mapping[str, Any]) -> bool:
    return ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"


HTTPROUTE_BACKENDS = BackendShape("backendRefs", "name", "port", 1, is_service=_is_service)
"""An HTTPRoute rule's backendRefs; only Service refs count."""


def find_targets(
    route: Mapping[str, Any], config: Mapping[str, Any], parent_services: frozenset[str]
) -> list[Target]:
    """The rules this canary manages, each with its parent backendRef; RouteProblem otherwise."""
    name = (route.get("metadata") or {}).get("name", "?")
    rules = list((route.get("spec") or {}).get("rules") or ())
    wanted = config.get("rules")
    port = config.get("port")
    services = ", ".join(sorted(parent_services)) or "no Service selects the parent pods"
    targets: list[Target] = []
    if wanted:
        for index in wanted:
            if not isinstance(index, int) or not 0 <= index < len(rules):
                raise RouteProblem(
                    "RuleNotFound",
                    f"HTTPRoute {name} has {len(rules)} rules; rule index {index!r} does not exist",
                )
            at = HTTPROUTE_BACKENDS.parent_index(rules[index], parent_services, port)
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
        at = HTTPROUTE_BACKENDS.parent_index(rule, parent_services, port)
        if at is not None:
            targets.append((index, rule, at))
    if not targets:
        raise RouteProblem(
            "RuleWithoutParentBackend",
            f"no rule of HTTPRoute {name} has a backendRef for the parent's Service ({services})",
        )
    return targets


def current_split(targets: list[Target]) -> TrafficSplit | None:
    """The split the managed rules carry now, when they all agree."""
    return HTTPROUTE_BACKENDS.split_of(targets)


def with_split(
    route: dict[str, Any],
    owner: Owner,
    config: Mapping[str, Any],
    parent_services: frozenset[str],
    split: TrafficSplit,
) -> dict[str, Any]:
    """``route`` with ``split`` on its managed rules and the original recorded (pure)."""
    return backends.with_split(
        route, owner, lambda r: find_targets(r, config, parent_services), HTTPROUTE_BACKENDS, split
    )


def rule_key(index: int, _: Mapping[str, Any]) -> str:
    """An HTTPRoute rule has no required name: its original is recorded under its index."""
    return str(index)


def restored(route: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """``route`` with the recorded backendRefs put back and the record gone; None if unrecorded."""
    return backends.restored(route, owner, "rules", rule_key, HTTPROUTE_BACKENDS)


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
        new_rule: dict[str, Any] = {
            "matches": matches,
            "backendRefs": [HTTPROUTE_BACKENDS.canary_only(parent)],
        }
        for key in ("filters", "timeouts"):
            if key in rule:
                new_rule[key] = copy.deepcopy(rule[key])
        rules.append(new_rule)
    spec = route.get("spec") or {}
    managed_spec: dict[str, Any] = {"rules": rules}
    for key in ("parentRefs", "hostnames"):
        if key in spec:
            managed_spec[key] = copy.deepcopy(spec[key])
    return HTTP_ROUTE.managed(owner, managed_spec)


class GatewayAPIRouter(RouteRouter):
    """``TrafficRouter`` over one HTTPRoute."""

    route_kind = HTTP_ROUTE
    route_field = "httpRoute"
    rules_key = "rules"
    shape = HTTPROUTE_BACKENDS

    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        return find_targets(route, self.config, self.parent_services)

    def rule_key(self, index: int, rule: Mapping[str, Any]) -> str:
        return rule_key(index, rule)

    def match_route(
        self, route: Mapping[str, Any], targets: list[Target], match: Match
    ) -> dict[str, Any]:
        return match_route(route, self.owner, targets, match)
