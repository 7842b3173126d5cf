"""Fixtures of the fault-injection suite (``make chaos``).

The suite kills the one controller of its pytest session on purpose, so it must be
the only suite in that session: with other tests collected too (a bare ``pytest``),
its tests are deselected and ``make chaos`` runs them on their own. It reuses the
integration suite's ``controller`` fixture (the real ``canarylab controller`` process,
logged in as deploy/'s ServiceAccount) and the session sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (  # noqa: F401  (fixtures, re-exported for this suite)
    controller,
    controller_crds,
    controller_kubeconfig,
)
from tests.integration.controller_kit import Kit

CHAOS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [i for i in items if CHAOS_DIR in Path(str(i.path)).parents]
    if not ours or len(ours) == len(items):
        return
    config.hook.pytest_deselected(items=ours)
    items[:] = [i for i in items if i not in ours]
    print(
        f"\n[chaos] {len(ours)} fault-injection tests deselected: they kill the session's "
        "controller, so they run in a session of their own (`make chaos`)."
    )


@pytest.fixture
def gateway(sandbox: Any) -> str:
    url = sandbox.status()["gateway"]
    assert url, "the sandbox did not report a gateway URL"
    return str(url)


@pytest.fixture
def kit(controller: Any, api_client: Any, namespace: str) -> Kit:  # noqa: F811
    """One namespace with the controller running."""
    return Kit(api_client, namespace)
