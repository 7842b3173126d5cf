"""Fixtures shared by every test layer.

Integration tests share one sandbox per session, started in a private state
directory so a developer's own sandbox (``make demo``) is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CRDS = Path(os.environ.get("CANARYLAB_SHARED_CRDS", REPO.parent / "shared" / "crds"))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A running sandbox for the whole session (real etcd, apiserver, kcm, scheduler, kwok)."""
    from canarylab.sandbox import Sandbox

    state = Path(os.environ.get("CANARYLAB_TEST_SANDBOX_DIR") or tmp_path_factory.mktemp("sandbox"))
    sb = Sandbox(state, progress=lambda message: print(f"[sandbox] {message}"))
    sb.up()
    try:
        yield sb
    finally:
        sb.down()


@pytest.fixture(scope="session")
def api_client(sandbox: object):  # type: ignore[no-untyped-def]
    """A ``kubernetes.client.ApiClient`` logged in as the sandbox's admin."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))  # type: ignore[attr-defined]
    yield client
    client.close()


@pytest.fixture
def namespace(api_client):  # type: ignore[no-untyped-def]
    """A fresh namespace per test, deleted afterwards (the namespace controller cleans it)."""
    import uuid

    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def shared_crds() -> Path:
    """The real APISIX and Gateway API CRDs from ``../shared/crds`` (skip when absent)."""
    if not SHARED_CRDS.is_dir():
        pytest.skip(
            f"the real APISIX/Gateway API CRDs are not at {SHARED_CRDS} (a user's clone has no "
            "../shared); set CANARYLAB_SHARED_CRDS to a directory holding apisix/ and gateway-api/"
        )
    return SHARED_CRDS
