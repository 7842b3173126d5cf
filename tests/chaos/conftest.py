"""Fixtures of the fault-injection suite (``make chaos``).

The suite kills the one controller of its pytest session, and restarts etcd and the
API server, on purpose, so it must be the only suite in that session: with other
tests collected too (a bare ``pytest``, i.e. ``make test``), its sandbox tests are
deselected and ``make chaos`` runs them on their own. Its pure tests run everywhere. It reuses the
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
    chaos = [i for i in items if CHAOS_DIR in Path(str(i.path)).parents]
    if len(chaos) == len(items):
        return
    # Only the tests that run something against the sandbox; pure ones stay.
    ours = [i for i in chaos if "sandbox" in getattr(i, "fixturenames", ())]
    if not ours:
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
