"""The kubectl-style verbs against the real sandbox and controller, as an SRE types them.

create → ``kubectl canarylab get NAME -o yaml`` (kubectl's own plugin lookup) → set weight
→ abort (kept, Aborted, weight 0, route 100% parent) → resume → promote → delete, with
``--context`` choosing a context whose namespace is the test's (no ``-n`` anywhere),
``get -w`` following along, and kubectl's plugin completion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from canarylab.record.events import ExitCode
from canarylab.sandbox import build
from tests.integration.rollout_kit import (
    PARENT,
    canary_objects,
    deploy_parent,
    exists,
    route_backends,
    route_is_all_parent,
)

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def two_contexts(sandbox: Any, path: Path, namespace: str) -> Path:
    """The sandbox's kubeconfig with a current context ``other`` and a context ``here``."""
    doc = yaml.safe_load(sandbox.kubeconfig.read_text())
    cluster, user = doc["clusters"][0]["name"], doc["users"][0]["name"]
    doc["contexts"] = [
        {"name": "other", "context": {"cluster": cluster, "user": user, "namespace": "default"}},
        {"name": "here", "context": {"cluster": cluster, "user": user, "namespace": namespace}},
    ]
    doc["current-context"] = "other"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_create_get_set_abort_resume_promote_delete(
    controller: Any, sandbox: Any, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    deploy_parent(api_client, namespace, replicas=1)
    env = {
        **os.environ,
        "KUBECONFIG": str(two_contexts(sandbox, tmp_path / "kubeconfig", namespace)),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    kubectl = str(build.ensure_built(["kube"])["kubectl"])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*args], capture_output=True, text=True, env=env, timeout=240, check=False
        )

    def canarylab(*args: str) -> subprocess.CompletedProcess[str]:
        return run(str(BIN / "canarylab"), *args, "--context", "here")

    made = canarylab("create", PARENT, "--version", "v2", "--image", "canarylab/demo:v2")
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"canarydeployment.canarylab.io/{PARENT} created"

    shown = run(kubectl, "canarylab", "get", PARENT, "-o", "yaml", "--context", "here")
    assert shown.returncode == 0, shown.stderr
    obj = yaml.safe_load(shown.stdout)
    assert (obj["kind"], obj["metadata"]["name"]) == ("CanaryDeployment", PARENT)
    assert (obj["metadata"]["namespace"], obj["spec"]["version"]) == (namespace, "v2")
    assert "managedFields" not in obj["metadata"]

    follow = subprocess.Popen(
        [str(BIN / "canarylab"), "get", PARENT, "-w", "--context", "here"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        weighted = canarylab("set", "weight", PARENT, "30")
        assert weighted.returncode == 0, weighted.stderr
        assert "applied 30" in weighted.stdout
        assert f"… {PARENT}: " in weighted.stderr  # the wait shows its progress
        assert route_backends(api_client, namespace)[PARENT] == 70

        wide = canarylab("get", "-o", "wide")
        assert wide.returncode == 0, wide.stderr
        assert wide.stdout.split("\n")[0].split()[-3:] == ["HOLDER", "REASON", "MESSAGE"]
        assert "WeightApplied" in wide.stdout

        aborted = canarylab("abort", PARENT)
        assert aborted.returncode == 0, aborted.stderr
        assert "Aborted" in aborted.stdout
        status = yaml.safe_load(canarylab("get", PARENT, "-o", "yaml").stdout)
        assert status["status"]["phase"] == "Aborted"
        assert status["status"]["weights"] == {"parent": 100, "canary": 0}
        assert status["spec"]["weight"] == 30  # kept for resume
        assert route_is_all_parent(api_client, namespace)
        assert f"CanaryDeployment/{PARENT}" in canary_objects(api_client, namespace)
        columns = run(kubectl, "get", "cdep", "-o", "wide", "-n", namespace, "--context", "here")
        assert columns.returncode == 0, columns.stderr
        assert "Aborted" in columns.stdout.split("\n")[1]

        held = canarylab("status", PARENT, "--wait-for", "Serving", "--timeout", "20")
        assert held.returncode == ExitCode.ROLLED_BACK, held.stderr

        resumed = canarylab("resume", PARENT)
        assert resumed.returncode == 0, resumed.stderr
        assert "applied 30" in resumed.stdout
        assert route_backends(api_client, namespace)[PARENT] == 70
        serving = canarylab("status", PARENT, "--until", "Serving", "--timeout", "30")
        assert serving.returncode == 0, serving.stderr
    finally:
        follow.send_signal(signal.SIGTERM)
        watched, _ = follow.communicate(timeout=30)
    assert follow.returncode == 0
    rows = watched.splitlines()
    assert rows[0].split()[:2] == ["NAME", "PARENT"]
    phases = [r.split()[5] for r in rows[1:] if len(r.split()) == 8]
    assert "Aborted" in phases
    assert phases[-1] == "Serving"

    promoted = canarylab("promote", PARENT)
    assert promoted.returncode == 0, promoted.stderr
    assert "Replaced" in promoted.stdout

    names = run(kubectl, "__complete", "canarylab", "delete", "--context", "here", "")
    assert PARENT in names.stdout.split(), names.stderr  # NAME completes from the cluster

    deleted = canarylab("delete", PARENT)
    assert deleted.returncode == 0, deleted.stderr
    assert not exists(api_client, namespace)
    missing = canarylab("get", PARENT)
    assert missing.returncode == ExitCode.ERROR
    assert "no CanaryDeployment" in missing.stderr

    completed = run(kubectl, "__complete", "canarylab", "se")
    assert completed.returncode == 0, completed.stderr
    assert "set" in completed.stdout.split()
