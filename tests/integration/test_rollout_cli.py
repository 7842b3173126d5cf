"""`canarylab status | weight | abort` (the old name of `set weight` kept) and `canarylab run`
as a user runs them: real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from canarylab.record.events import EXIT_CODES_HELP, ExitCode
from canarylab.rollout import Rollout
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    route_backends,
    route_is_all_parent,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def canarylab(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "canarylab"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=REPO, timeout=180)


def test_shell_verbs_and_the_abort_runbook(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace, replicas=1)
    Rollout(namespace, PARENT, kube=api_client).create_canary(
        image="canarylab/demo:v2", version="v2"
    )
    where = ["-n", namespace, "--kubeconfig", str(sandbox.kubeconfig)]

    done = canarylab("weight", PARENT, "40", *where, "--record", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    assert "applied 40" in done.stdout
    assert route_backends(api_client, namespace)[PARENT] == 60

    shown = canarylab("status", *where, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    (item,) = json.loads(shown.stdout)["items"]
    weights = (item["spec"]["weight"], item["status"]["weights"]["canary"])
    assert (item["metadata"]["name"], *weights) == (PARENT, 40, 40)

    bad = canarylab("weight", PARENT, "140", *where)
    assert bad.returncode == ExitCode.USAGE  # not click's 2, which reads "rolled back"
    assert "140 is not in the range 0<=x<=100" in bad.stderr

    helped = canarylab("weight", "--help")
    assert helped.returncode == 0
    assert " ".join(EXIT_CODES_HELP.split()) in " ".join(helped.stdout.split())

    out = tmp_path / "abort.ipynb"
    ran = canarylab(
        "run",
        "abort",
        "-p",
        "namespace",
        namespace,
        "-p",
        "name",
        PARENT,
        "-p",
        "kubeconfig",
        str(sandbox.kubeconfig),
        "-p",
        "record_dir",
        str(tmp_path / "rec"),
        "-o",
        str(out),
        "--quiet",
    )
    assert ran.returncode == 0, ran.stderr
    assert f"executed notebook: {out}" in ran.stdout
    assert canary_objects(api_client, namespace) == []
    assert route_is_all_parent(api_client, namespace)
    assert "after: hello: absent" in out.read_text()

    again = canarylab("abort", PARENT, *where)
    assert again.returncode == 0, again.stderr  # nothing left to abort is not an error

    gone = canarylab("weight", PARENT, "10", *where)
    assert gone.returncode == ExitCode.ERROR, gone.stderr  # no canary: nothing changed
    assert "nothing was changed" in gone.stderr

    failing = canarylab(
        "run",
        "canary-rollout",
        "-p",
        "namespace",
        namespace,
        "-p",
        "steps",
        "[50, 20]",
        "-p",
        "kubeconfig",
        str(sandbox.kubeconfig),
        "-o",
        str(tmp_path / "bad.ipynb"),
        "--quiet",
    )
    assert failing.returncode == ExitCode.USAGE, failing.stderr  # a bad plan, nothing changed
    assert "weights must increase" in failing.stderr

    typo = canarylab("run", "canary-rollout", "-p", "stpes", "[5]", "--quiet")
    assert typo.returncode == ExitCode.USAGE
    assert "no parameter 'stpes'" in typo.stderr


def test_the_cronjob_example_is_valid_for_the_api_server(api_client: Any, namespace: str) -> None:
    """Server-side dry run of every object in deploy/examples/cronjob-runbook.yaml."""
    from kubernetes import client

    docs = list(yaml.safe_load_all((REPO / "deploy/examples/cronjob-runbook.yaml").read_text()))
    assert [d["kind"] for d in docs] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
        "CronJob",
    ]
    core, rbac, batch = (
        client.CoreV1Api(api_client),
        client.RbacAuthorizationV1Api(api_client),
        client.BatchV1Api(api_client),
    )
    create = {
        "ServiceAccount": core.create_namespaced_service_account,
        "Role": rbac.create_namespaced_role,
        "RoleBinding": rbac.create_namespaced_role_binding,
        "PersistentVolumeClaim": core.create_namespaced_persistent_volume_claim,
        "CronJob": batch.create_namespaced_cron_job,
    }
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
        create[doc["kind"]](namespace, doc, dry_run="All")
    command = docs[-1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][
        0
    ]
    assert "canarylab run /runbooks/canary-rollout.ipynb" in command
