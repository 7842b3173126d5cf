"""The one backend edit every route-editing router makes, driven by a ``BackendShape``.

APISIX rules hold ``backends[]{serviceName, servicePort, weight, subset}``; HTTPRoute
rules hold ``backendRefs[]{name, port, weight}``. The edit is the same for both: find
the parent's backend, put the parent weight on it, and put the canary weight on the
canary backend next to it (adding that backend, same port, when it is missing). The
shape says which keys to use, the weight a backend without one has, and whether the
canary is a Service of its own (``<parent>-canary``) or a subset of the parent's
Service. This module must never do I/O, and never touch any other field of a rule.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.model.spec import TrafficSplit
from canarylab.model.workload import CANARY_SUBSET, ORIGINAL_SUBSET, canary_service_name
from canarylab.routers.base import Owner, drop_original, read_original, write_original


def _any_backend(_: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class BackendShape:
    """How one provider spells a rule's backends."""

    list_key: str
    """The rule's key holding the backends (``backends``, ``backendRefs``)."""
    service_key: str
    """A backend's key naming its Service (``serviceName``, ``name``)."""
    port_key: str
    """A backend's key naming the Service port (``servicePort``, ``port``)."""
    default_weight: int
    """The weight of a backend that names none (APISIX 100, Gateway API 1)."""
    subset_key: str = ""
    """Non-empty: the canary is the ``canary`` subset of the parent's Service, named
    under this key, and the parent backend gets the ``original`` subset."""
    is_service: Callable[[Mapping[str, Any]], bool] = _any_backend
    """Whether a backend refers to a Service at all (HTTPRoute refs may name other kinds)."""

    def canary_of(self, parent: Mapping[str, Any]) -> dict[str, Any]:
        """The fields that identify the canary backend beside ``parent`` (port included)."""
        service = str(parent[self.service_key])
        if self.subset_key:
            ref: dict[str, Any] = {self.service_key: service, self.subset_key: CANARY_SUBSET}
        else:
            ref = {self.service_key: canary_service_name(service)}
        if self.port_key in parent:
            ref[self.port_key] = parent[self.port_key]
        return ref

    def is_parent(
        self, backend: Mapping[str, Any], services: frozenset[str], port: Any = None
    ) -> bool:
        """``backend`` is the parent's: one of its Services, the configured port, no canary."""
        if not self.is_service(backend) or backend.get(self.service_key) not in services:
            return False
        if port is not None and backend.get(self.port_key) not in (None, port):
            return False
        if self.subset_key:
            return backend.get(self.subset_key) in (None, ORIGINAL_SUBSET)
        return True

    def _is_canary(self, backend: Mapping[str, Any], canary: Mapping[str, Any]) -> bool:
        keys = [self.service_key, *([self.subset_key] if self.subset_key else [])]
        return self.is_service(backend) and all(backend.get(k) == canary[k] for k in keys)

    def parent_index(
        self, rule: Mapping[str, Any], services: frozenset[str], port: Any
    ) -> int | None:
        """Where the parent's backend is in ``rule``, if it has one."""
        for i, backend in enumerate(rule.get(self.list_key) or ()):
            if self.is_parent(backend, services, port):
                return i
        return None

    def canary_index(self, rule: Mapping[str, Any], parent_at: int) -> int | None:
        """Where the canary backend beside the parent's backend is, if there is one."""
        backends = rule.get(self.list_key) or []
        canary = self.canary_of(backends[parent_at])
        for i, backend in enumerate(backends):
            if i != parent_at and self._is_canary(backend, canary):
                return i
        return None

    def split_of(
        self, targets: Iterable[tuple[Any, Mapping[str, Any], int]]
    ) -> TrafficSplit | None:
        """The split the targeted rules carry now, when they all agree."""
        seen = set()
        for _, rule, index in targets:
            backends = rule.get(self.list_key) or []
            at = self.canary_index(rule, index)
            if at is None:
                seen.add((100, 0))
                continue
            seen.add(
                (
                    backends[index].get("weight", self.default_weight),
                    backends[at].get("weight", self.default_weight),
                )
            )
        if len(seen) != 1:
            return None
        parent_w, canary_w = seen.pop()
        return TrafficSplit(int(parent_w), int(canary_w))

    def put_split(self, rule: dict[str, Any], index: int, split: TrafficSplit) -> None:
        """Put ``split`` on the parent and canary backends of ``rule`` (in place)."""
        backends = rule[self.list_key]
        parent = backends[index]
        parent["weight"] = split.parent
        if self.subset_key:
            parent[self.subset_key] = ORIGINAL_SUBSET
        at = self.canary_index(rule, index)
        if at is None:
            backends.insert(index + 1, {**self.canary_of(parent), "weight": split.canary})
        else:
            backends[at]["weight"] = split.canary

    def canary_only(self, parent: Mapping[str, Any]) -> dict[str, Any]:
        """The single backend of a match rule: the canary, at the provider's default weight."""
        return {**self.canary_of(parent), "weight": self.default_weight}


Target = tuple[Any, dict[str, Any], int]
"""(the rule's key in the route's record, the rule, index of the parent backend)."""


def with_split(
    route: dict[str, Any],
    owner: Owner,
    targets_of: Callable[[Mapping[str, Any]], list[Target]],
    shape: BackendShape,
    split: TrafficSplit,
) -> dict[str, Any]:
    """``route`` with ``split`` on the rules ``targets_of`` picks, the original recorded first.

    The record (``read_original``) holds each targeted rule's backends as they were
    before this canary touched them, keyed by the rule's key, so ``restored`` can put
    them back exactly. It is written once, in the same write as the first weights.
    """
    route = copy.deepcopy(route)
    targets = targets_of(route)
    if read_original(route, owner) is None:
        record = {
            str(key): copy.deepcopy(rule.get(shape.list_key) or []) for key, rule, _ in targets
        }
        write_original(route, owner, record)
    for _, rule, index in targets:
        shape.put_split(rule, index, split)
    return route


def restored(
    route: dict[str, Any],
    owner: Owner,
    rules_key: str,
    rule_key: Callable[[int, Mapping[str, Any]], str],
    shape: BackendShape,
) -> dict[str, Any] | None:
    """``route`` with the recorded backends put back and the record gone; None if unrecorded."""
    original = read_original(route, owner)
    if original is None:
        return None
    route = copy.deepcopy(route)
    for index, rule in enumerate((route.get("spec") or {}).get(rules_key) or ()):
        key = rule_key(index, rule)
        if key in original:
            rule[shape.list_key] = original[key]
    drop_original(route, owner)
    return route
