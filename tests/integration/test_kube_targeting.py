"""kubectl-style targeting against the real sandbox: two kubeconfigs of it, merged
through KUBECONFIG, a context from the second file, each context's namespace, and the
sandbox's gateway as the probe target."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from canarylab import kube

pytestmark = pytest.mark.integration


def variant(sandbox, path: Path, name: str, namespace: str, current: bool) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(sandbox.kubeconfig.read_text())
    doc["clusters"][0]["name"], doc["users"][0]["name"] = f"c-{name}", f"u-{name}"
    context = {"cluster": f"c-{name}", "user": f"u-{name}", "namespace": namespace}
    doc["contexts"] = [{"name": name, "context": context}]
    doc["current-context"] = name if current else ""
    path.write_text(yaml.safe_dump(doc))
    return path


def test_merged_kubeconfigs_context_and_namespace(sandbox, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    a = variant(sandbox, tmp_path / "a", "a", "kube-system", current=True)
    b = variant(sandbox, tmp_path / "b", "b", "default", current=False)
    monkeypatch.setenv("KUBECONFIG", f"{a}:{tmp_path / 'missing'}:{b}")
    first = kube.resolve()
    assert (first.source, first.context, first.namespace) == ("KUBECONFIG", "a", "kube-system")
    accounts = client.CoreV1Api(first.api_client()).list_namespaced_service_account(first.namespace)
    assert "attachdetach-controller" in {s.metadata.name for s in accounts.items}
    second = kube.resolve(context="b")
    assert (second.context, second.namespace) == ("b", "default")
    accounts = client.CoreV1Api(second.api_client()).list_namespaced_service_account("default")
    assert [s.metadata.name for s in accounts.items] == ["default"]


def test_the_sandbox_kubeconfig_knows_its_gateway(sandbox, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("KUBECONFIG", raising=False)
    target = kube.resolve(sandbox.kubeconfig)
    assert target.gateway == sandbox.status()["gateway"]
    assert target.probe_target().url == target.gateway.rstrip("/") + "/"
    assert target.probe_target("http://127.0.0.1:1/").url == "http://127.0.0.1:1/"
