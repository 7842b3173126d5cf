"""Kinds whose CRD arrives after the controller started are noticed by group."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kopf._cogs.structs.references import Resource, Selector

from canarylab.operator import crds


@dataclass
class Selectors:
    selectors: set[Selector]

    def get_all_selectors(self) -> set[Selector]:
        return self.selectors


@dataclass
class Registry:
    _indexing: Selectors
    _watching: Selectors


@dataclass
class Insights:
    watched_resources: set[Resource] = field(default_factory=set)
    indexed_resources: set[Resource] = field(default_factory=set)


CD = Selector("canarylab.io", "v1alpha1", "canarydeployments")
ROUTE = Selector("gateway.networking.k8s.io", "v1", "httproutes")
DEPLOYMENTS = Selector("apps", "v1", "deployments")


def registry() -> Any:
    return Registry(Selectors({CD, DEPLOYMENTS}), Selectors({CD, ROUTE, DEPLOYMENTS}))


def resource(group: str, version: str, plural: str) -> Resource:
    return Resource(group, version, plural, namespaced=True)


def test_groups_without_a_served_resource_are_unresolved() -> None:
    insights = Insights(watched_resources={resource("apps", "v1", "deployments")})
    assert crds.unresolved(insights, registry()) == {"canarylab.io", "gateway.networking.k8s.io"}


def test_nothing_is_unresolved_once_every_kind_is_served() -> None:
    served = {
        resource("apps", "v1", "deployments"),
        resource("canarylab.io", "v1alpha1", "canarydeployments"),
        resource("gateway.networking.k8s.io", "v1", "httproutes"),
    }
    assert crds.unresolved(Insights(watched_resources=served), registry()) == set()
