"""deploy/ is what a real cluster gets: its kustomize output is accepted by the API
server, and the controller's pod spec runs the command the tests run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from canarylab.cli.controller import controller as controller_command
from canarylab.sandbox import build
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def kubectl() -> str:
    return str(build.ensure_built(["kube"])["kubectl"])


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def controller_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "canarylab-controller"
    )


def test_kustomize_output_is_accepted_by_the_api_server(rendered, sandbox, api_client):
    kinds = sorted({d["kind"] for d in rendered})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Namespace",
        "Service",
        "ServiceAccount",
    ]
    result = subprocess.run(
        [kubectl(), "apply", "--server-side", "--force-conflicts", "-k", str(DEPLOY)],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)},
    )
    assert result.returncode == 0, result.stderr
    apps = client.AppsV1Api(api_client)

    def available() -> bool:
        status = apps.read_namespaced_deployment_status(
            "canarylab-controller", "canarylab-system"
        ).status
        return (status.available_replicas or 0) == 1

    # The pod schedules on the sandbox's (kwok) nodes like any pod would.
    wait_for(available, timeout=60, what="the controller Deployment to be available")
    apps.delete_namespaced_deployment("canarylab-controller", "canarylab-system")


def test_pod_spec_runs_the_tested_controller_command(rendered):
    deployment = controller_deployment(rendered)
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "canarylab-controller"
    container = spec["containers"][0]
    assert container["command"] == ["canarylab", "controller"]
    # The flags parse with the very click command the tests start as a process.
    ctx = controller_command.make_context("controller", list(container["args"]))
    liveness = ctx.params["liveness"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (
        liveness
        == f"http://0.0.0.0:{ports['health']}{container['livenessProbe']['httpGet']['path']}"
    )
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert container["readinessProbe"]["httpGet"]["port"] == "health"
    assert ctx.params["metrics_port"] == ports["metrics"]


def test_deploy_rbac_is_the_one_the_controller_tests_use(rendered):
    # The integration fixtures run the controller as this ServiceAccount, with this role.
    account = next(d for d in rendered if d["kind"] == "ServiceAccount")
    binding = next(d for d in rendered if d["kind"] == "ClusterRoleBinding")
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]
    role = next(d for d in rendered if d["kind"] == "ClusterRole")
    assert not any("secrets" in rule.get("resources", []) for rule in role["rules"])
