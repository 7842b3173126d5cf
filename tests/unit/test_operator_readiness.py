"""kopf's readiness gate, patched to wake its waiters only when its state flips."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from canarylab.operator import readiness


def test_waiters_wake_once_when_the_last_toggle_goes() -> None:
    assert readiness.install()

    async def scenario() -> tuple[int, list[bool]]:
        gate = aiotoggles.ToggleSet(all)
        toggles = [await gate.make_toggle(name=str(i)) for i in range(50)]
        wakeups = 0
        original = gate._condition.notify_all

        def counted() -> None:
            nonlocal wakeups
            wakeups += 1
            original()

        gate._condition.notify_all = counted  # type: ignore[method-assign]
        waiters = [asyncio.create_task(gate.wait_for(True)) for _ in range(20)]
        await asyncio.sleep(0)
        for toggle in toggles[:-1]:
            await gate.drop_toggle(toggle)
        await asyncio.sleep(0)
        early = [w.done() for w in waiters]
        await gate.drop_toggle(toggles[-1])
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        return wakeups, early

    wakeups, early = asyncio.run(scenario())
    assert wakeups == 1
    assert not any(early)


def test_an_any_set_still_wakes_on_a_toggle_turned_on() -> None:
    readiness.install()

    async def scenario() -> bool:
        paused = aiotoggles.ToggleSet(any)
        toggle = await paused.make_toggle(False)
        waiter = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await toggle.turn_to(True)
        await asyncio.wait_for(waiter, 5)
        await paused.drop_toggle(toggle)
        return paused.is_on()

    assert asyncio.run(scenario()) is False


def test_adding_an_on_toggle_to_an_empty_any_set_wakes_its_waiters() -> None:
    readiness.install()

    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        waiter = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        await paused.make_toggle(True)
        await asyncio.wait_for(waiter, 5)

    asyncio.run(scenario())
