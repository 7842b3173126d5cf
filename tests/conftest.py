"""Fixtures shared by every test layer.

Integration tests share one sandbox per session, started in a private state
directory so a developer's own sandbox (``make demo``) is never touched. Its Go
binaries are built before the first test, never inside one: ``make test`` builds
them as a prerequisite, and a bare ``pytest`` that selects a test needing the
sandbox builds them after collection, with a budget of its own
(``CANARYLAB_BUILD_BUDGET`` seconds) instead of pytest's per-test timeout.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_CRDS = Path(os.environ.get("CANARYLAB_SHARED_CRDS", REPO.parent / "shared" / "crds"))
BUILD_BUDGET = float(os.environ.get("CANARYLAB_BUILD_BUDGET", "2700"))
"""Seconds the sandbox build may take before the session gives up (a cold build is
about 12 minutes on two cores)."""
BUILD_COMMAND = ("-W", "ignore::RuntimeWarning:runpy", "-m", "canarylab.sandbox.build")
"""What ``make sandbox-build`` runs (runpy warns that the package imported the module
first, which is harmless here)."""


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the sandbox's binaries once, before any test, when a selected test needs it.

    Runs ``python -m canarylab.sandbox.build`` (the command ``make sandbox-build``
    runs) in a child process, so its progress bar reaches the terminal and the
    budget can stop it cleanly (SIGTERM: it kills its ``go build`` and cleans up).
    """
    if session.config.option.collectonly:
        return
    if not any("sandbox" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from canarylab.sandbox import build

    if all(component.is_built() for component in build.COMPONENTS.values()):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    shown = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with shown:
        print(f"\nbuilding the sandbox before the tests (once; budget {BUILD_BUDGET:.0f}s)")
        builder = subprocess.Popen([sys.executable, *BUILD_COMMAND])
        try:
            code = builder.wait(timeout=BUILD_BUDGET)
        except subprocess.TimeoutExpired:
            builder.terminate()
            builder.wait()
            pytest.exit(
                f"the sandbox build took longer than {BUILD_BUDGET:.0f}s; raise "
                "CANARYLAB_BUILD_BUDGET or run `make sandbox-build` first (it resumes)",
                returncode=1,
            )
        except BaseException:
            builder.terminate()
            builder.wait()
            raise
    if code != 0:
        pytest.exit(
            f"the sandbox build failed (exit {code}, output above); fix that and run "
            "pytest again, or run only unit tests: pytest tests/unit",
            returncode=1,
        )


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
