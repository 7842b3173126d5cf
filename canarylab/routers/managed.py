"""The I/O half every route-editing router shares: read the route, apply an edit, verify.

A provider module (``apisix``, ``gatewayapi``) supplies the pure edits — which rules
are targeted, the split they carry, the route with a new split, the managed match
route, the restored route — by subclassing ``RouteRouter``. This class does the
reading and writing through ``CustomRoutes`` and never interprets a route itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from canarylab.model.spec import Match, TrafficSplit
from canarylab.model.workload import PodSubsets
from canarylab.routers import backends
from canarylab.routers.backends import BackendShape, Target
from canarylab.routers.base import (
    AbsentRoutes,
    CustomRoutes,
    Owner,
    RouteKind,
    RouteProblem,
    RouteView,
    managed_route_name,
)


class RouteRouter:
    """``TrafficRouter`` over one route object; subclasses supply the pure edits."""

    route_kind: ClassVar[RouteKind]
    route_field: ClassVar[str]
    """The key of the router's config that names the route (``route``, ``httpRoute``)."""
    rules_key: ClassVar[str]
    """The key of the route's spec that holds its rules (``http``, ``rules``)."""
    shape: BackendShape
    """How the provider spells a rule's backends (a class default; a mode may swap it)."""

    def __init__(
        self,
        api_client: Any,
        owner: Owner,
        config: Mapping[str, Any],
        parent_services: frozenset[str],
        *,
        absent: AbsentRoutes | None = None,
        pods: PodSubsets | None = None,
    ) -> None:
        """``absent``: the controller's cache of routes known to be gone (private if None).

        ``pods``: the label sets that tell the parent's pods from the canary's, for
        routers that split one Service by subsets (None when the parent is unknown).
        """
        self.pods = pods
        self.owner = owner
        self.config = config
        self.parent_services = parent_services
        self.name = str(config.get(self.route_field, ""))
        self._seen: dict[str, Any] | None = None
        self.routes = CustomRoutes(api_client, self.route_kind, owner.namespace, absent)

    @property
    def route_version(self) -> str | None:
        """The route's resourceVersion as this router last read or wrote it (None: not yet).

        The controller skips the pass its own route write's watch event would cause.
        """
        version = ((self._seen or {}).get("metadata") or {}).get("resourceVersion")
        return None if version is None else str(version)

    # -- the pure edits: per provider where they differ, generic over ``shape`` ---------
    def targets(self, route: Mapping[str, Any]) -> list[Target]:
        """The targeted rules; raises RouteProblem when they cannot carry the canary."""
        raise NotImplementedError

    def rule_key(self, index: int, rule: Mapping[str, Any]) -> str:
        """The key a rule's original backends are recorded under (its name, its index)."""
        raise NotImplementedError

    def match_route(
        self, route: Mapping[str, Any], targets: list[Target], match: Match
    ) -> dict[str, Any]:
        raise NotImplementedError

    def parent_service(self, targets: list[Target]) -> str:
        _, rule, index = targets[0]
        return str(rule[self.shape.list_key][index][self.shape.service_key])

    def split_of(self, targets: list[Target]) -> TrafficSplit | None:
        return self.shape.split_of(targets)

    def with_split(self, route: dict[str, Any], split: TrafficSplit) -> dict[str, Any] | None:
        return backends.with_split(route, self.owner, self.targets, self.shape, split)

    def restored(self, route: dict[str, Any]) -> dict[str, Any] | None:
        return backends.restored(route, self.owner, self.rules_key, self.rule_key, self.shape)

    # -- TrafficRouter ------------------------------------------------------------
    def observe(self) -> RouteView:
        route = self._seen = self.routes.get(self.name)
        if route is None:
            return RouteView(found=False)
        try:
            targets = self.targets(route)
        except RouteProblem as problem:
            return RouteView(found=True, problem=problem)
        return RouteView(
            found=True, parent_service=self.parent_service(targets), split=self.split_of(targets)
        )

    def set_weight(self, split: TrafficSplit) -> None:
        self._seen = self.routes.update(self.name, lambda r: self.with_split(r, split), self._seen)

    def verify_weight(self, split: TrafficSplit) -> bool | None:
        view = self.observe()
        if not view.found or view.problem is not None:
            return None
        return view.split == split

    def set_match_route(self, match: Match) -> None:
        if not match:
            self.routes.delete(managed_route_name(self.owner))
            return
        route = self._seen or self.routes.get(self.name)
        if route is None:
            raise RouteProblem(
                "RouteNotFound", f"{self.route_kind.kind} {self.name} does not exist"
            )
        self.routes.apply(self.match_route(route, self.targets(route), match))

    def remove_managed_routes(self) -> None:
        self.routes.delete(managed_route_name(self.owner))
        self.routes.update(self.name, self.restored)
