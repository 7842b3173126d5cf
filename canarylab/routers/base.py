"""The traffic-router contract, and the custom-object plumbing routers share.

A router owns exactly two things in a cluster: the weights of the parent and canary
backends on the rules it was pointed at (with a record of their pre-canary shape), and
the managed match route it creates. It must never change any other field of a route,
and it must never decide *what* the weights should be: that is ``canarylab.model``'s job.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from canarylab.errors import CanarylabError
from canarylab.model.spec import Match, TrafficSplit
from canarylab.model.workload import CANARY_LABEL

ORIGINAL_PREFIX = "original.canarylab.io/"
"""Route annotation ``original.canarylab.io/<canary>``: the rules' pre-canary backends."""


@dataclass(frozen=True)
class Owner:
    """The CanaryDeployment a router acts for."""

    name: str
    uid: str
    namespace: str

    @property
    def annotation(self) -> str:
        """The route annotation where this canary records the original backends."""
        return ORIGINAL_PREFIX + self.name

    def reference(self) -> dict[str, Any]:
        """A controller ownerReference, so managed routes go when the canary goes."""
        return {
            "apiVersion": "canarylab.io/v1alpha1",
            "kind": "CanaryDeployment",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


class RouteProblem(CanarylabError):
    """The route cannot carry this canary; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RouteView:
    """What a router sees on its route, before it changes anything."""

    found: bool
    parent_service: str = ""
    """The Service that the parent backend names (the canary Service copies its ports)."""
    split: TrafficSplit | None = None
    """The weights now on the managed rules; None when they disagree or none are set."""
    problem: RouteProblem | None = None


class TrafficRouter(Protocol):
    """What the controller needs from a traffic router (one implementation per provider)."""

    def observe(self) -> RouteView:
        """Read the route: does it exist, which Service is the parent's, what weights."""

    def set_weight(self, split: TrafficSplit) -> None:
        """Put ``split`` on the managed rules, recording their original shape first."""

    def verify_weight(self, split: TrafficSplit) -> bool | None:
        """True/False when the route does/does not carry ``split``; None when it cannot tell."""

    def set_match_route(self, match: Match) -> None:
        """Create or update the managed match route; an empty match removes it."""

    def remove_managed_routes(self) -> None:
        """Restore the managed rules to their recorded shape and delete the match route."""


__all__ = [
    "AbsentRoutes",
    "CustomRoutes",
    "Owner",
    "RouteKind",
    "RouteProblem",
    "RouteView",
    "RouterFactory",
    "TrafficRouter",
    "TrafficSplit",
]

RouterFactory = Callable[[Any, Owner, Mapping[str, Any], frozenset[str]], TrafficRouter]
"""``factory(api_client, owner, config, parent_services)``: how the registry builds routers."""


@dataclass(frozen=True)
class RouteKind:
    """Where a route type lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def managed(self, owner: Owner, spec: dict[str, Any]) -> dict[str, Any]:
        """A route of this kind that ``owner`` manages (its match route): labelled, owned."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {
                "name": managed_route_name(owner),
                "labels": {CANARY_LABEL: owner.name},
                "ownerReferences": [owner.reference()],
            },
            "spec": spec,
        }


AbsentRoutes = set[tuple[str, str, str]]
"""(plural, namespace, name) of routes a controller deleted or found missing; a pure
cache to skip repeated DELETEs of a managed route that is already gone (a restart
forgets it, which costs one DELETE answered 404). The controller owns one and hands
it to its routers; it is never process-wide."""


class CustomRoutes:
    """Read, replace, create and delete one kind of route through CustomObjectsApi."""

    def __init__(
        self,
        api_client: Any,
        kind: RouteKind,
        namespace: str,
        absent: AbsentRoutes | None = None,
    ) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self.kind = kind
        self.namespace = namespace
        self.absent: AbsentRoutes = set() if absent is None else absent

    def sibling(self, kind: RouteKind) -> CustomRoutes:
        """Another kind in the same namespace, through the same client and cache."""
        routes = copy.copy(self)
        routes.kind = kind
        return routes

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        k = self.kind
        try:
            obj = self._api.get_namespaced_custom_object(
                k.group, k.version, self.namespace, k.plural, name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return dict(obj)

    def update(
        self,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Read-modify-write with optimistic locking, retried on conflicts.

        ``change`` returns the new object, or None when nothing needs writing.
        ``current``, when given, is a just-read copy used for the first attempt (a
        stale one only costs a 409 and a re-read). Returns the object as stored
        (None when the route does not exist).
        """
        from kubernetes.client.rest import ApiException

        k = self.kind
        for _ in range(10):
            if current is None:
                current = self.get(name)
            if current is None:
                return None
            new = change(copy.deepcopy(current))
            if new is None or new == current:
                return current
            try:
                return dict(
                    self._api.replace_namespaced_custom_object(
                        k.group, k.version, self.namespace, k.plural, name, new
                    )
                )
            except ApiException as err:
                if err.status != 409:
                    raise
                current = None
        raise CanarylabError(f"{k.kind} {self.namespace}/{name} kept changing under us; retrying")

    def apply(self, obj: dict[str, Any]) -> None:
        """Create ``obj``, or replace its spec when it already exists."""
        from kubernetes.client.rest import ApiException

        k = self.kind
        name = obj["metadata"]["name"]
        self.absent.discard((k.plural, self.namespace, name))
        try:
            self._api.create_namespaced_custom_object(
                k.group, k.version, self.namespace, k.plural, obj
            )
            return
        except ApiException as err:
            if err.status != 409:
                raise

        def change(current: dict[str, Any]) -> dict[str, Any]:
            current["spec"] = obj["spec"]
            meta = current["metadata"]
            meta.setdefault("labels", {}).update(obj["metadata"].get("labels") or {})
            if obj["metadata"].get("ownerReferences"):
                meta["ownerReferences"] = obj["metadata"]["ownerReferences"]
            return current

        self.update(name, change)

    def delete(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        k = self.kind
        key = (k.plural, self.namespace, name)
        if key in self.absent:
            return
        try:
            self._api.delete_namespaced_custom_object(
                k.group, k.version, self.namespace, k.plural, name
            )
        except ApiException as err:
            if err.status != 404:
                raise
        self.absent.add(key)


def read_original(route: Mapping[str, Any], owner: Owner) -> dict[str, Any] | None:
    """The recorded pre-canary backends of this canary's rules, if recorded."""
    raw = ((route.get("metadata") or {}).get("annotations") or {}).get(owner.annotation)
    if not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def write_original(route: dict[str, Any], owner: Owner, original: Mapping[str, Any]) -> None:
    """Record the pre-canary backends on the route itself (one atomic write with the weights)."""
    meta = route.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    annotations[owner.annotation] = json.dumps(original, sort_keys=True, separators=(",", ":"))
    meta["annotations"] = annotations


def drop_original(route: dict[str, Any], owner: Owner) -> None:
    """Forget the record; an emptied annotations map goes too, as it was before."""
    meta = route.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    annotations.pop(owner.annotation, None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)


def managed_route_name(owner: Owner) -> str:
    """The name of the match route a canary manages."""
    return f"{owner.name}-match"
