"""The controller's work queue: pokes coalesce, a canary never runs twice at once."""

from __future__ import annotations

import asyncio

from canarylab.operator.fleet import SETTLE, Fleet, WorkQueue


def test_pokes_of_a_waiting_canary_coalesce_into_one_pass() -> None:
    async def scenario() -> list[tuple[str, str]]:
        queue = WorkQueue()
        for _ in range(5):
            queue.poke(("ns", "a"))
        queue.poke(("ns", "b"))
        taken = [await queue.take(), await queue.take()]
        assert len(queue) == 0
        return taken

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "b")]


def test_a_canary_poked_during_its_pass_goes_round_once_more_after_it() -> None:
    async def scenario() -> tuple[int, int, tuple[str, str]]:
        queue = WorkQueue()
        queue.poke(("ns", "a"))
        key = await queue.take()
        queue.poke(key)
        queue.poke(key)
        during = len(queue)  # not queued while it runs: no second worker can take it
        queue.done(key)
        after = len(queue)
        return during, after, await queue.take()

    assert asyncio.run(scenario()) == (0, 1, ("ns", "a"))


def test_workers_never_run_one_canary_twice_at_once() -> None:
    async def scenario() -> int:
        queue = WorkQueue()
        running: set[tuple[str, str]] = set()
        overlaps = 0
        passes = 0
        finished = asyncio.Event()

        async def worker() -> None:
            nonlocal overlaps, passes
            while True:
                key = await queue.take()
                if key in running:
                    overlaps += 1
                running.add(key)
                await asyncio.sleep(0)
                if passes < 50:
                    queue.poke(key)  # an event arriving mid-pass
                passes += 1
                running.discard(key)
                queue.done(key)
                if passes >= 50 and not len(queue) and not running:
                    finished.set()

        tasks = [asyncio.create_task(worker()) for _ in range(4)]
        for i in range(3):
            queue.poke(("ns", f"c{i}"))
        await asyncio.wait_for(finished.wait(), 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return overlaps

    assert asyncio.run(scenario()) == 0


def test_a_burst_of_deployment_events_settles_into_one_poke() -> None:
    async def scenario() -> tuple[int, int]:
        fleet = Fleet(cluster=None, workers=0)  # type: ignore[arg-type]
        fleet.queue = WorkQueue()
        fleet.bodies[("ns", "a")] = {}
        for _ in range(10):
            fleet.poke_soon("ns", "a")
        fleet.poke_soon("ns", "unknown")  # not a canary this controller has seen
        before = len(fleet.queue)
        await asyncio.sleep(SETTLE * 2)
        return before, len(fleet.queue)

    assert asyncio.run(scenario()) == (0, 1)


def test_the_echo_of_a_pass_s_own_route_write_wakes_nobody() -> None:
    async def scenario() -> tuple[int, int]:
        fleet = Fleet(cluster=None, workers=0)  # type: ignore[arg-type]
        fleet.queue = WorkQueue()
        fleet.bodies[("ns", "a")] = {}
        fleet.routes[("ns", "a")] = ("apisix", "web", "41")
        fleet.route_changed("ns", "a", "apisix", "web", "41")  # what the pass wrote
        await asyncio.sleep(SETTLE * 2)
        echo = len(fleet.queue)
        fleet.route_changed("ns", "a", "apisix", "web", "42")  # someone else's edit
        await asyncio.sleep(SETTLE * 2)
        return echo, len(fleet.queue)

    assert asyncio.run(scenario()) == (0, 1)


def test_events_a_pass_already_read_wake_nobody_when_they_settle() -> None:
    async def scenario() -> tuple[int, int]:
        fleet = Fleet(cluster=None, workers=0)  # type: ignore[arg-type]
        fleet.queue = WorkQueue()
        fleet.bodies[("ns", "a")] = {}
        loop = asyncio.get_running_loop()
        fleet.poke_soon("ns", "a")  # e.g. the start-up listing of its Deployment
        fleet._snapped[("ns", "a")] = loop.time() + 1e-6  # its pass read the caches after
        await asyncio.sleep(SETTLE * 2)
        covered = len(fleet.queue)
        fleet.poke_soon("ns", "a")  # a newer event than that pass saw
        await asyncio.sleep(SETTLE * 2)
        return covered, len(fleet.queue)

    assert asyncio.run(scenario()) == (0, 1)
