"""Routers are found through the ``canarylab.routers`` entry-point group, lazily."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from canarylab.routers import registry
from canarylab.routers.apisix import ApisixRouter
from canarylab.routers.gatewayapi import GatewayAPIRouter


class ThirdPartyRouter:
    def __init__(self, api_client: Any, owner: Any, config: Any, parent_services: Any) -> None:
        self.config = config


@pytest.fixture(autouse=True)
def fresh_cache() -> Any:
    registry.load.cache_clear()
    yield
    registry.load.cache_clear()


def test_builtin_routers_are_entry_points() -> None:
    assert {"apisix", "gatewayAPI"} <= set(registry.available())
    assert registry.load("apisix") is ApisixRouter
    assert registry.load("gatewayAPI") is GatewayAPIRouter


def test_unknown_router_says_what_exists() -> None:
    with pytest.raises(registry.UnknownRouter, match=r"installed routers: .*apisix"):
        registry.load("istio")


def test_third_party_router_and_a_broken_one(monkeypatch: pytest.MonkeyPatch) -> None:
    group = registry.GROUP
    points = [
        EntryPoint("nginx", f"{__name__}:ThirdPartyRouter", group),
        EntryPoint("broken", "no_such_module_xyz:Router", group),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    assert registry.load("nginx") is ThirdPartyRouter
    with pytest.raises(registry.UnknownRouter, match="failed to load"):
        registry.load("broken")
