"""Find a traffic router by the key under ``spec.trafficRouter``.

Routers are entry points in the group ``canarylab.routers`` (the built-in ``apisix``
and ``gatewayAPI`` are registered the same way, in pyproject.toml), so a third-party
package adds one without editing canarylab. Entry points are loaded one at a time, on
first use: a broken plugin breaks only the canaries that name it, never import.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from canarylab.errors import CanarylabError
from canarylab.routers.base import RouterFactory

GROUP = "canarylab.routers"


class UnknownRouter(CanarylabError):
    """No router is registered under the requested name, or it failed to load."""


def available() -> list[str]:
    """Names of every registered router (without loading them)."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@cache
def load(name: str) -> RouterFactory:
    """The factory registered as ``name``; UnknownRouter says what exists when it is not."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise UnknownRouter(
            f"no traffic router named {name!r}; installed routers: {', '.join(available())}. "
            f"A third-party router registers an entry point in the group {GROUP!r}"
        )
    try:
        factory: RouterFactory = found[0].load()
    except Exception as err:  # a plugin's import error must not crash the controller
        raise UnknownRouter(f"traffic router {name!r} failed to load: {err}") from err
    return factory
