"""kopf's start-up readiness gate without its quadratic wake-ups.

While kopf lists the watched kinds at start-up, every listed object of an indexed kind
(every Deployment, Service and CanaryDeployment here) holds a toggle in one
``ToggleSet``, and every object's first event waits on that set until all of them are
indexed. kopf wakes *every* waiter each time one toggle is dropped, so N objects cost
about N²/2 wake-ups. In isolation (the gate alone, N objects dropping and waiting on the
standard loop) that is 0.25 CPU-s for 1,800 objects (300 canaries) and 2.2 CPU-s for
6,000 (1,000 canaries), against 0.11 and 0.74 CPU-s with this change: a part of a
restart's CPU that grows with the square of the fleet, not the whole of it.

A waiter only waits for the set's overall state (``all``/``any`` of its toggles), and
adding or dropping a toggle changes no toggle's own state, so waking the waiters is
needed only when the overall state flips. ``install`` makes ``make_toggle`` and
``drop_toggle`` notify just then; everything else in kopf is unchanged. It is applied
once, by ``canarylab.operator.run`` (the controller's process), and must never be applied
by library code running in someone else's process. kopf is pinned below its next major;
if the class no longer has the shape this relies on, ``install`` leaves it alone.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("canarylab.controller")

_MARK = "_canarylab_quiet_notify"


def install() -> bool:
    """Patch kopf's ``ToggleSet`` in this process; False if its shape is not the known one."""
    from kopf._cogs.aiokits import aiotoggles

    cls: Any = aiotoggles.ToggleSet
    if getattr(cls, _MARK, False):
        return True
    probe = cls(all)
    if not all(hasattr(probe, a) for a in ("_condition", "_toggles", "is_on")):
        log.warning("kopf's ToggleSet changed shape; start-up wake-ups stay quadratic")
        return False

    async def make_toggle(
        self: Any, __val: bool = False, *, name: str | None = None
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self: Any, toggle: aiotoggles.Toggle) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.discard(toggle)
            if self.is_on() != before:
                self._condition.notify_all()

    async def drop_toggles(self: Any, toggles: Any) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()

    cls.make_toggle = make_toggle
    cls.drop_toggle = drop_toggle
    cls.drop_toggles = drop_toggles
    setattr(cls, _MARK, True)
    return True
