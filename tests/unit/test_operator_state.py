"""The controller keeps its state in one object per running controller, never in modules."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from canarylab.operator import cluster, handlers, reconcile
from canarylab.routers import apisix, base, gatewayapi, managed


class FakeCluster:
    def __init__(self) -> None:
        self.absent_routes: base.AbsentRoutes = set()


def fleet() -> handlers.Fleet:
    memo = handlers.memo_for(FakeCluster())  # type: ignore[arg-type]
    assert isinstance(memo.fleet, handlers.Fleet)
    return memo.fleet


def mutable_globals(module: types.ModuleType) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        # UPPER_CASE names are constants by convention (kwargs like cluster.RAW)
        if isinstance(value, dict | set | list) and not name.startswith("__") and not name.isupper()
    ]


def test_no_module_level_mutable_state_in_the_operator_or_routers() -> None:
    for module in (handlers, reconcile, cluster, base, managed, apisix, gatewayapi):
        assert mutable_globals(module) == [], module.__name__


def test_two_controllers_never_share_a_fleet() -> None:
    one, two = fleet(), fleet()
    assert one is not two
    assert one.pokes is not two.pokes
    assert one.handled is not two.handled


def test_a_poke_wakes_only_its_own_controllers_canary() -> None:
    async def scenario() -> tuple[bool, bool]:
        one, two = fleet(), fleet()
        a = one.pokes.setdefault(("ns", "cd"), asyncio.Event())
        b = two.pokes.setdefault(("ns", "cd"), asyncio.Event())
        one.poke("ns", "cd")
        return a.is_set(), b.is_set()

    assert asyncio.run(scenario()) == (True, False)


def test_routers_share_only_the_absent_cache_they_are_given() -> None:
    owner = base.Owner("cd", "uid-1", "ns")
    shared: base.AbsentRoutes = set()
    config: dict[str, Any] = {"route": "r"}
    first = apisix.ApisixRouter(object(), owner, config, frozenset(), absent=shared)
    second = apisix.ApisixRouter(object(), owner, config, frozenset(), absent=shared)
    private = apisix.ApisixRouter(object(), owner, config, frozenset())
    assert first.routes.absent is shared
    assert second.routes.absent is shared
    assert private.routes.absent is not shared


def test_handlers_without_a_fleet_say_how_to_start_the_controller() -> None:
    with pytest.raises(Exception, match=r"canarylab\.operator\.run"):
        handlers._fleet({"memo": object()})
