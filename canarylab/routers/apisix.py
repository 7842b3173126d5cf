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
from canarylab.model.workload import CANARY_LABEL, CANARY_SUBSET, ORIGINAL_SUBSET, PodSubsets
from canarylab.routers import backends
from canarylab.routers.backends import BackendShape, Target
from canarylab.routers.base import (
    Owner,
    RouteKind,
    RouteProblem,
    TrafficSplit,
    drop_original,
    read_original,
    write_original,
)
from canarylab.routers.managed import RouteRouter

APISIX_ROUTE = RouteKind("apisix.apache.org", "v2", "apisixroutes", "ApisixRoute")
APISIX_UPSTREAM = RouteKind("apisix.apache.org", "v2", "apisixupstreams", "ApisixUpstream")


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


def with_subsets(
    upstream: dict[str, Any] | None, owner: Owner, service: str, subsets: PodSubsets
) -> dict[str, Any]:
    """The parent Service's ApisixUpstream carrying the ``original`` and ``canary`` subsets.

    A missing upstream is created (and recorded as created, so ``upstream_restored``
    deletes it); an existing one keeps every other field and subset, and its
    ``spec.subsets`` as it was is recorded on it before the first change (pure).
    """
    ours = [
        {"name": ORIGINAL_SUBSET, "labels": dict(subsets.original)},
        {"name": CANARY_SUBSET, "labels": dict(subsets.canary)},
    ]
    if upstream is None:
        upstream = {
            "apiVersion": APISIX_UPSTREAM.api_version,
            "kind": APISIX_UPSTREAM.kind,
            "metadata": {"name": service, "labels": {CANARY_LABEL: owner.name}},
            "spec": {},
        }
        write_original(upstream, owner, {"created": True})
    else:
        upstream = copy.deepcopy(upstream)
        if read_original(upstream, owner) is None:
            spec = upstream.get("spec") or {}
            record: dict[str, Any] = {"created": False}
            if "subsets" in spec:
                record["subsets"] = spec["subsets"]
            write_original(upstream, owner, record)
    spec = upstream.setdefault("spec", {})
    others = [
        s
        for s in spec.get("subsets") or ()
        if s.get("name") not in (ORIGINAL_SUBSET, CANARY_SUBSET)
    ]
    spec["subsets"] = others + ours
    return upstream


def upstream_restored(upstream: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    """The upstream as it was before this canary (None: unrecorded, or created: delete it)."""
    record = read_original(upstream, owner)
    if record is None or record.get("created"):
        return None
    upstream = copy.deepcopy(upstream)
    spec = upstream.setdefault("spec", {})
    if "subsets" in record:
        spec["subsets"] = record["subsets"]
    else:
        spec.pop("subsets", None)
    drop_original(upstream, owner)
    return upstream


MODES = ("service", "subset")


class ApisixRouter(RouteRouter):
    """``TrafficRouter`` over one ApisixRoute (and, in subset mode, its ApisixUpstream).

    In subset mode the upstream is written before the route on every shift (a route
    must never name a subset that does not exist yet) and restored after the route.
    """

    route_kind = APISIX_ROUTE
    route_field = "route"
    rules_key = "http"
    shape = APISIX_BACKENDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As ``RouteRouter``; ``mode: subset`` swaps the shape and adds the upstreams."""
        super().__init__(*args, **kwargs)
        self.mode = str(self.config.get("mode") or "service")
        if self.mode == "subset":
            self.shape = APISIX_SUBSET_BACKENDS
        self.upstreams = self.routes.sibling(APISIX_UPSTREAM)

    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        if self.mode not in MODES:
            raise RouteProblem(
                "InvalidMode",
                f"spec.trafficRouter.apisix.mode must be service or subset, not {self.mode!r}",
            )
        if self.mode == "subset" and self.pods is not None and self.pods.problem:
            raise RouteProblem("ParentVersionUnlabelled", self.pods.problem)
        return find_targets(route, self.config, self.parent_services, self.shape)

    def rule_key(self, index: int, rule: Mapping[str, Any]) -> str:
        return rule_key(index, rule)

    def match_route(
        self, route: Mapping[str, Any], targets: list[Target], match: Match
    ) -> dict[str, Any]:
        return match_route(route, self.owner, targets, match, self.shape)

    def set_weight(self, split: TrafficSplit) -> None:
        if self.mode == "subset":
            self._ensure_upstream()
        super().set_weight(split)

    def remove_managed_routes(self) -> None:
        # the route's own backends name every Service this canary may have written an
        # upstream for (a finalizer knows no parent Services); read before restoring
        route = self._seen or self.routes.get(self.name) or {}
        names = (set(self.parent_services) if self.mode == "subset" else set()) | {
            str(b.get("serviceName"))
            for rule in (route.get("spec") or {}).get("http") or ()
            for b in rule.get("backends") or ()
            if b.get("subset")
        }
        super().remove_managed_routes()
        for name in sorted(names):
            self._restore_upstream(name)

    def _ensure_upstream(self) -> None:
        pods = self.pods
        route = self._seen or self.routes.get(self.name)
        if pods is None or route is None:
            raise RouteProblem(
                "RouteNotFound", f"ApisixRoute {self.name} or the parent's pods are not known yet"
            )
        service = self.parent_service(self.targets(route))
        current = self.upstreams.get(service)
        if current is None:
            self.upstreams.apply(with_subsets(None, self.owner, service, pods))
        else:
            self.upstreams.update(
                service, lambda u: with_subsets(u, self.owner, service, pods), current
            )

    def _restore_upstream(self, service: str) -> None:
        current = self.upstreams.get(service)
        if current is None:
            return
        record = read_original(current, self.owner)
        if record is None:
            return
        if record.get("created"):
            self.upstreams.delete(service)
        else:
            self.upstreams.update(service, lambda u: upstream_restored(u, self.owner), current)
