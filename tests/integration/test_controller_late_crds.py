"""A controller started before the CanaryDeployment CRD serves it once it is installed.

A ``kubectl apply -k`` that races its CRD, or Gateway API installed afterwards, must not
leave the controller blind until a restart (canarylab/operator/crds.py). This needs a
cluster without the CRD, so it brings up a sandbox of its own rather than the session's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.helpers import install_crds, wait_for
from tests.integration.conftest import DEPLOY, ControllerProcess
from tests.integration.controller_kit import Kit, canary

pytestmark = pytest.mark.integration

SERVED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def bare_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sandbox of its own: no CanaryDeployment CRD until the test installs it."""
    from canarylab.sandbox import Sandbox

    sb = Sandbox(tmp_path_factory.mktemp("bare-sandbox"))
    sb.up()
    api = config.new_client_from_config(config_file=str(sb.kubeconfig))
    try:
        yield sb, api
    finally:
        api.close()
        sb.down()


def test_a_canary_is_served_within_10s_of_its_crd_being_installed(
    bare_cluster: Any, shared_crds: Path, tmp_path: Path
) -> None:
    sb, api = bare_cluster
    install_crds(api, sorted((shared_crds / "apisix").glob("*.yaml")))
    client.CoreV1Api(api).create_namespace({"metadata": {"name": "late"}})
    kit = Kit(api, "late")
    kit.parent()
    kit.route("apisix")
    ctl = ControllerProcess(Path(sb.kubeconfig), tmp_path / "controller.log")
    ctl.start()
    try:
        install_crds(api, [DEPLOY / "canarydeployments.canarylab.io.yaml"])
        established = time.monotonic()
        kit.create(canary("web", "web", "apisix", "web", weight=20))
        wait_for(
            lambda: kit.status().get("phase"),
            SERVED_WITHIN_S - (time.monotonic() - established),
            what=f"the controller acting on the canary (log:\n{ctl.tail()})",
        )
        acted = time.monotonic() - established
        kit.wait_phase("Serving", timeout=60)
        kit.wait_weights("apisix", {"web": 80, "web-canary": 20})
        print(f"status written {acted:.1f} s after the CRD was Established")
    finally:
        ctl.stop()
