"""A controller's shard (--selector), and the one write that claims a new canary."""

from __future__ import annotations

import asyncio
from typing import Any

import click
import pytest

from canarylab.cli.controller import parse_selector
from canarylab.operator import fleet, handlers
from canarylab.operator.cluster import Cluster
from canarylab.routers import base


class FakeCluster:
    def __init__(self) -> None:
        self.absent_routes: base.AbsentRoutes = set()


def body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name, "generation": 1}
    if labels is not None:
        meta["labels"] = labels
    return {"metadata": meta, "spec": {}}


def sharded(selector: dict[str, str]) -> fleet.Fleet:
    memo = handlers.memo_for(FakeCluster(), selector=selector)  # type: ignore[arg-type]
    assert isinstance(memo.fleet, fleet.Fleet)
    return memo.fleet


def test_a_shard_queues_only_its_own_canaries() -> None:
    async def scenario() -> tuple[set[Any], int]:
        shard = sharded({"canarylab.io/shard": "a"})
        shard.queue = fleet.WorkQueue()
        shard.seen(body("mine", {"canarylab.io/shard": "a"}), {})
        shard.seen(body("theirs", {"canarylab.io/shard": "b"}), {})
        shard.seen(body("nobodys"), {})
        return set(shard.bodies), len(shard.queue)

    assert asyncio.run(scenario()) == ({("ns", "mine")}, 1)


def test_a_canary_relabelled_away_is_forgotten() -> None:
    async def scenario() -> set[Any]:
        shard = sharded({"canarylab.io/shard": "a"})
        shard.queue = fleet.WorkQueue()
        shard.seen(body("web", {"canarylab.io/shard": "a"}), {})
        shard.seen(body("web", {"canarylab.io/shard": "b"}), {})
        shard.poke_soon("ns", "web")  # a Deployment event afterwards wakes nothing
        return set(shard.bodies) | set(shard._settling)

    assert asyncio.run(scenario()) == set()


def test_without_a_selector_every_canary_is_served() -> None:
    assert sharded({}).serves({"name": "x"})
    assert sharded({}).serves({"name": "x", "labels": {"any": "thing"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("shard=a", {"shard": "a"}),
        (" a=1, b=2 ", {"a": "1", "b": "2"}),
        ("k=", {"k": ""}),
    ],
)
def test_selectors_parse(text: str, expected: dict[str, str]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["shard", "!shard", "shard!=a", "=a", "shard in (a)"])
def test_unsupported_selectors_say_what_is_supported(text: str) -> None:
    with pytest.raises(click.BadParameter, match="key=value"):
        parse_selector(text)


PARENT = {"metadata": {"name": "web", "uid": "p-1"}}


def test_a_new_canary_is_claimed_in_one_write() -> None:
    patch = Cluster.claim_patch({"finalizers": ["other"]}, "canarylab.io/finalizer", PARENT)
    assert patch is not None
    assert patch["finalizers"] == ["other", "canarylab.io/finalizer"]
    assert [r["uid"] for r in patch["ownerReferences"]] == ["p-1"]
    assert patch["ownerReferences"][0]["controller"] is False


def test_a_claimed_canary_needs_no_write() -> None:
    patch = Cluster.claim_patch({"finalizers": ["f"]}, "f", PARENT)
    assert patch is not None
    meta = {"finalizers": ["f"], "ownerReferences": patch["ownerReferences"]}
    assert Cluster.claim_patch(meta, "f", PARENT) is None
    assert Cluster.claim_patch({"finalizers": ["f"]}, "f", None) is None


def test_without_a_parent_only_the_finalizer_is_claimed() -> None:
    assert Cluster.claim_patch({}, "f", None) == {"finalizers": ["f"]}


def test_a_first_pass_trusts_the_index_of_managed_routes_only_for_absence() -> None:
    shard = sharded({})
    shard.indexes = {"apisix_managed_routes": {("ns", "kept-match"): True}}
    for name in ("fresh", "kept"):
        shard._known_absent(("ns", name), {"spec": {"trafficRouter": {"apisix": {"route": "r"}}}})
    assert shard.cluster.absent_routes == {("apisixroutes", "ns", "fresh-match")}


def test_without_the_index_nothing_is_assumed_absent() -> None:
    shard = sharded({})
    shard.indexes = {}
    shard._known_absent(
        ("ns", "a"), {"spec": {"trafficRouter": {"gatewayAPI": {"httpRoute": "r"}}}}
    )
    assert shard.cluster.absent_routes == set()


def test_deletion_asks_the_api_server_whatever_the_absent_cache_says() -> None:
    calls: list[str] = []

    class Recording(FakeCluster):
        def remove_finalizer(self, *args: Any) -> None:
            calls.append("finalizer")

    async def scenario() -> None:
        memo = handlers.memo_for(Recording())  # type: ignore[arg-type]
        one = memo.fleet
        one.cluster.absent_routes.add(("apisixroutes", "ns", "a-match"))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(
                fleet,
                "finalize",
                lambda cluster, ns, name, body: calls.append(
                    f"finalize absent={('apisixroutes', ns, f'{name}-match') in cluster.absent_routes}"
                ),
            )
            await one._finalize(("ns", "a"), {"metadata": {"name": "a", "namespace": "ns"}})

    asyncio.run(scenario())
    assert calls == ["finalize absent=False", "finalizer"]
