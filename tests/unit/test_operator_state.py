"""The controller keeps its state in one object per running controller, never in modules."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from canarylab.operator import cluster, fleet, handlers, reconcile
from canarylab.routers import apisix, base, gatewayapi, managed


class FakeCluster:
    def __init__(self) -> None:
        self.absent_routes: base.AbsentRoutes = set()


def new_fleet() -> fleet.Fleet:
    memo = handlers.memo_for(FakeCluster())  # type: ignore[arg-type]
    assert isinstance(memo.fleet, fleet.Fleet)
    return memo.fleet


def mutable_globals(module: types.ModuleType) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        # UPPER_CASE names are constants by convention (kwargs like cluster.RAW)
        if isinstance(value, dict | set | list) and not name.startswith("__") and not name.isupper()
    ]


def test_no_module_level_mutable_state_in_the_operator_or_routers() -> None:
    for module in (handlers, fleet, reconcile, cluster, base, managed, apisix, gatewayapi):
        assert mutable_globals(module) == [], module.__name__


def test_two_controllers_never_share_a_fleet() -> None:
    one, two = new_fleet(), new_fleet()
    assert one is not two
    assert one.bodies is not two.bodies
    assert one.handled is not two.handled


def test_a_poke_wakes_only_its_own_controllers_canary() -> None:
    async def scenario() -> tuple[int, int]:
        one, two = new_fleet(), new_fleet()
        one.queue, two.queue = fleet.WorkQueue(), fleet.WorkQueue()
        for each in (one, two):
            each.bodies[("ns", "cd")] = {}
        one.poke("ns", "cd")
        return len(one.queue), len(two.queue)

    assert asyncio.run(scenario()) == (1, 0)


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
