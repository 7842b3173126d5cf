"""Serve the kinds whose CRD is installed after the controller started.

kopf resolves the resources its handlers name when it starts; a CanaryDeployment or
HTTPRoute CRD installed later (a ``kubectl apply -k`` that races the CRD, Gateway API
installed afterwards) would stay unserved until a restart. While any such kind is
unresolved, this re-reads the API server's discovery for its group every ``RECHECK``
seconds and, once the kind is there, hands it to kopf the way kopf's own observer does
after a CRD event, so kopf starts the watch. Discovery is readable by any authenticated
client: no CRD access is needed. It uses kopf's observer functions (private; kopf is
pinned below its next major) and must never do anything once every kind is served.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("canarylab.controller")

RECHECK = 3.0
"""Seconds between discovery reads while a kind is unresolved."""


def new_insights() -> Any:
    """The kopf ``Insights`` to start the operator with (so they can be revised here)."""
    from kopf._cogs.structs.references import Insights

    return Insights()


def unresolved(insights: Any, registry: Any) -> set[str]:
    """API groups named by handlers or indexes that kopf has no resource for yet."""
    selectors = registry._indexing.get_all_selectors() | registry._watching.get_all_selectors()
    have = insights.watched_resources | insights.indexed_resources
    return {s.group for s in selectors if s.group and not any(s.check(r) for r in have)}


async def serve_later_crds(insights: Any, settings: Any, interval: float = RECHECK) -> None:
    """Until every named kind is served: notice new ones in discovery and serve them."""
    import kopf
    from kopf._cogs.clients import scanning
    from kopf._core.reactor import observation

    registry = kopf.get_default_registry()
    await insights.ready_resources.wait()
    while groups := unresolved(insights, registry):
        await asyncio.sleep(interval)
        try:
            resources = await scanning.scan_resources(groups=groups, settings=settings, logger=log)
        except Exception as err:  # discovery hiccups: try again at the next recheck
            log.debug("rechecking discovery for %s failed: %s", sorted(groups), err)
            continue
        for group in sorted(groups):
            found = {r for r in resources if r.group == group}
            if not found:
                continue
            async with insights.revised:
                observation.revise_resources(
                    resources=found, insights=insights, registry=registry, group=group
                )
                await insights.backbone.fill(resources=found)
                insights.revised.notify_all()
            if group not in unresolved(insights, registry):
                log.info("serving %s: its CRD was installed after the controller started", group)
