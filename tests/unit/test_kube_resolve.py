"""Which cluster canarylab talks to, in order: argument, KUBECONFIG, in-cluster, sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from canarylab import kube


@pytest.fixture
def no_cluster(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("CANARYLAB_SANDBOX_DIR", str(tmp_path / "no-sandbox"))
    return tmp_path


def test_explicit_kubeconfig_wins(no_cluster, monkeypatch):
    explicit = no_cluster / "explicit"
    explicit.write_text("{}")
    other = no_cluster / "env"
    other.write_text("{}")
    monkeypatch.setenv("KUBECONFIG", str(other))
    target = kube.resolve(explicit)
    assert (target.kubeconfig, target.source) == (explicit, "argument")


def test_kubeconfig_env_before_sandbox(no_cluster, monkeypatch):
    env = no_cluster / "env"
    env.write_text("{}")
    monkeypatch.setenv("KUBECONFIG", f"{env}:/elsewhere")
    assert kube.resolve().source == "KUBECONFIG"


def test_missing_files_are_named(no_cluster, monkeypatch):
    with pytest.raises(kube.NoClusterError, match="does-not-exist"):
        kube.resolve(no_cluster / "does-not-exist")
    monkeypatch.setenv("KUBECONFIG", str(no_cluster / "gone"))
    with pytest.raises(kube.NoClusterError, match="KUBECONFIG points at"):
        kube.resolve()


def test_in_cluster_uses_the_service_account(no_cluster, monkeypatch):
    token = no_cluster / "token"
    token.write_text("t")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_TOKEN", token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    target = kube.resolve()
    assert (target.kubeconfig, target.source) == (None, "in-cluster")


def test_nothing_running_says_how_to_get_a_cluster(no_cluster):
    with pytest.raises(kube.NoClusterError, match="canarylab sandbox up"):
        kube.resolve()


def test_top_level_exports_are_lazy():
    import subprocess
    import sys

    code = (
        "import sys, canarylab\n"
        "assert 'kubernetes' not in sys.modules, 'import canarylab loaded the client'\n"
        "assert canarylab.Rollout.__name__ == 'Rollout'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
