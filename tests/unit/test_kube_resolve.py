"""Which cluster canarylab talks to, as kubectl decides: argument, KUBECONFIG (merged),
~/.kube/config, in-cluster, then a running local cluster; the context and its namespace;
and where probe traffic goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from canarylab import kube
from canarylab.dataplane.routes import sandbox_host
from canarylab.sandbox import finder, procs
from canarylab.sandbox.core import CONTROL_PLANE


@pytest.fixture
def no_cluster(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CANARYLAB_SANDBOX_DIR", str(tmp_path / "no-sandbox"))
    return tmp_path


def kubeconfig(path: Path, server: str, contexts: dict[str, str | None], current: str = "") -> Path:
    """A kubeconfig with one cluster and user, and a context per entry (name → namespace)."""
    cluster, user = f"cluster-{path.name}", f"user-{path.name}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": "t"}}],
        "contexts": [
            {
                "name": name,
                "context": {"cluster": cluster, "user": user} | ({"namespace": ns} if ns else {}),
            }
            for name, ns in contexts.items()
        ],
        "current-context": current,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_explicit_kubeconfig_wins(no_cluster, monkeypatch):
    explicit = no_cluster / "explicit"
    explicit.write_text("{}")
    other = no_cluster / "env"
    other.write_text("{}")
    monkeypatch.setenv("KUBECONFIG", str(other))
    target = kube.resolve(explicit, finders=())
    assert (target.kubeconfig, target.source) == (explicit, "argument")


def test_kubeconfig_env_merges_every_file_first_wins(no_cluster, monkeypatch):
    a = kubeconfig(no_cluster / "a", "https://a.example", {"a": "team-a", "dup": "from-a"}, "a")
    b = kubeconfig(no_cluster / "b", "https://b.example", {"b": None, "dup": "from-b"}, "b")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(a), str(no_cluster / "gone"), str(b)]))
    target = kube.resolve(finders=())
    # a missing file in the list is skipped, as kubectl skips it
    assert (target.kubeconfigs, target.source) == ((a, b), "KUBECONFIG")
    assert (target.context, target.namespace) == ("a", "team-a")  # a's current-context
    assert kube.resolve(context="b", finders=()).namespace == "default"  # b sets none
    assert kube.resolve(context="dup", finders=()).namespace == "from-a"
    assert target.kubeconfig_env == f"{a}{os.pathsep}{b}"


def test_api_client_uses_the_merged_files_and_the_context(no_cluster, monkeypatch):
    a = kubeconfig(no_cluster / "a", "https://a.example:6443", {"a": None}, "a")
    b = kubeconfig(no_cluster / "b", "https://b.example:6443", {"b": "ns-b"})
    monkeypatch.setenv("KUBECONFIG", f"{a}{os.pathsep}{b}")
    assert kube.api_client().configuration.host == "https://a.example:6443"
    assert kube.api_client(context="b").configuration.host == "https://b.example:6443"
    explicit = kube.resolve([b, a], context="a", finders=())
    assert explicit.api_client().configuration.host == "https://a.example:6443"


def test_home_kubeconfig_after_the_env(no_cluster, monkeypatch):
    home = no_cluster / "home" / ".kube"
    home.mkdir(parents=True)
    kubeconfig(home / "config", "https://home.example", {"home": "mine"}, "home")
    target = kube.resolve(finders=())
    assert (target.source, target.context, target.namespace) == ("~/.kube/config", "home", "mine")
    env = kubeconfig(no_cluster / "env", "https://env.example", {"env": None}, "env")
    monkeypatch.setenv("KUBECONFIG", str(env))
    assert kube.resolve(finders=()).source == "KUBECONFIG"


def test_an_unknown_context_names_the_known_ones(no_cluster):
    path = kubeconfig(no_cluster / "a", "https://a.example", {"one": None, "two": None}, "one")
    with pytest.raises(kube.NoClusterError, match=r"'three' is not in .*contexts: one, two"):
        kube.resolve(path, context="three", finders=())


def test_missing_files_are_named(no_cluster, monkeypatch):
    with pytest.raises(kube.NoClusterError, match="does-not-exist"):
        kube.resolve(no_cluster / "does-not-exist", finders=())
    monkeypatch.setenv("KUBECONFIG", str(no_cluster / "gone"))
    with pytest.raises(kube.NoClusterError, match="KUBECONFIG points at"):
        kube.resolve(finders=())


def test_in_cluster_uses_the_service_account_and_its_namespace(no_cluster, monkeypatch):
    token = no_cluster / "token"
    token.write_text("t")
    (no_cluster / "namespace").write_text("canarylab-system\n")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_TOKEN", token)
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_NAMESPACE", no_cluster / "namespace")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    target = kube.resolve(finders=())
    assert (target.kubeconfig, target.source) == (None, "in-cluster")
    assert target.namespace == "canarylab-system"
    with pytest.raises(kube.NoClusterError, match="--context x needs a kubeconfig"):
        kube.resolve(context="x", finders=())


def test_nothing_running_says_how_to_get_a_cluster(no_cluster):
    with pytest.raises(kube.NoClusterError, match="canarylab sandbox up"):
        kube.resolve()


def test_a_local_cluster_comes_last_and_names_its_gateway(no_cluster, monkeypatch):
    local = kubeconfig(no_cluster / "kubeconfig", "https://127.0.0.1:1", {"sb": None}, "sb")
    found = kube.LocalCluster(
        "sandbox", local, "http://127.0.0.1:8080", route_host=lambda r, ns: f"{r}.{ns}.test"
    )

    def find(path: Path | None) -> kube.LocalCluster | None:
        return found if path in (None, local) else None

    target = kube.resolve(finders=[find])
    assert (target.source, target.kubeconfig, target.context) == ("sandbox", local, "sb")
    assert target.probe_target() == kube.ProbeTarget("http://127.0.0.1:8080/", {})
    # the gateway routes on Host: the route's, in the context's namespace or the one given
    assert target.probe_target(route="web").headers == {"Host": "web.default.test"}
    assert target.probe_target(route="web", namespace="demo", headers={"X-A": "1"}).headers == {
        "X-A": "1",
        "Host": "web.demo.test",
    }
    assert target.probe_target(route="web", headers={"host": "mine"}).headers == {"host": "mine"}
    # a URL the user gives is used as given, with only the headers given
    given = target.probe_target("http://gw.example", route="web", headers={"X-A": "1"})
    assert given == kube.ProbeTarget("http://gw.example", {"X-A": "1"})
    # the same kubeconfig given explicitly still knows its gateway
    assert kube.resolve(local, finders=[find]).gateway == "http://127.0.0.1:8080"
    # any other cluster has none: the user must say where the route is served
    other = kubeconfig(no_cluster / "other", "https://o.example", {"o": None}, "o")
    elsewhere = kube.resolve(other, finders=[find])
    assert elsewhere.gateway is None
    with pytest.raises(kube.NoClusterError, match="no probe target"):
        elsewhere.probe_target()


def fake_sandbox(state_dir: Path, gateway: str) -> Path:
    """A sandbox state whose control plane is this test process (alive, same start time)."""
    state_dir.mkdir(parents=True)
    me = {"pid": os.getpid(), "start_ticks": procs.process_start_ticks(os.getpid()), "log": ""}
    processes = [{"name": name, **me} for name in CONTROL_PLANE]
    extras = {"gateway": gateway, "prometheus": "http://127.0.0.1:9090"}
    state = {"ports": {"apiserver": 1}, "processes": processes, "extras": extras}
    (state_dir / "state.json").write_text(json.dumps(state))
    return kubeconfig(state_dir / "kubeconfig", "https://127.0.0.1:1", {"sb": None}, "sb")


def test_the_sandbox_finder_is_the_registered_local_cluster(no_cluster, monkeypatch):
    assert finder.find(None) is None
    sandbox_dir = no_cluster / "no-sandbox"
    config = fake_sandbox(sandbox_dir, "http://127.0.0.1:9999")
    assert finder.find(None) == kube.LocalCluster(
        "sandbox", config, "http://127.0.0.1:9999", prometheus="http://127.0.0.1:9090"
    )
    # another sandbox's kubeconfig, found by its own state directory
    second = fake_sandbox(no_cluster / "second", "http://127.0.0.1:7777")
    found = finder.find(second)
    assert found is not None
    assert found.gateway == "http://127.0.0.1:7777"
    assert finder.find(no_cluster / "elsewhere") is None
    # through the entry point, as canarylab.kube finds it
    target = kube.resolve()
    assert (target.source, target.gateway) == ("sandbox", "http://127.0.0.1:9999")
    assert target.prometheus == "http://127.0.0.1:9090"
    # the sandbox's gateway routes on the data plane's host names
    assert target.probe_target(route="web", namespace="demo") == kube.ProbeTarget(
        "http://127.0.0.1:9999/", {"Host": sandbox_host("web", "demo")}
    )


def test_cluster_access_does_not_import_the_sandbox(no_cluster):
    path = kubeconfig(no_cluster / "a", "https://a.example", {"a": None}, "a")
    code = (
        "import sys\n"
        "from canarylab import kube\n"
        f"kube.resolve({str(path)!r}, finders=())\n"
        "loaded = [m for m in sys.modules if m.startswith('canarylab.sandbox')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_top_level_exports_are_lazy():
    code = (
        "import sys, canarylab\n"
        "assert 'kubernetes' not in sys.modules, 'import canarylab loaded the client'\n"
        "assert canarylab.Rollout.__name__ == 'Rollout'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_probe_cli_takes_a_route_target_from_the_cluster(no_cluster):
    import click

    from canarylab.cli.probe import probe_url

    config = fake_sandbox(no_cluster / "no-sandbox", "http://127.0.0.1:9999")
    given = (("X-A", "1"),)
    # a URL is probed as given
    assert probe_url("http://gw.example/", given, "web", "demo", None, None) == (
        "http://gw.example/",
        given,
    )
    # a route: the running sandbox's gateway, with the route's Host
    assert probe_url(None, given, "web", "demo", None, None) == (
        "http://127.0.0.1:9999/",
        (("X-A", "1"), ("Host", sandbox_host("web", "demo"))),
    )
    # the namespace defaults to the context's (here none: default)
    assert probe_url(None, (), "web", None, str(config), None)[1] == (
        ("Host", sandbox_host("web", "default")),
    )
    with pytest.raises(click.UsageError, match="--route"):
        probe_url(None, (), None, None, None, None)
    other = kubeconfig(no_cluster / "other", "https://o.example", {"o": None}, "o")
    with pytest.raises(click.ClickException, match="no probe target"):
        probe_url(None, (), "web", None, str(other), None)
