"""The component pins are consistent: one Kubernetes release everywhere."""

from __future__ import annotations

import re

from canarylab.sandbox import build


def test_versions_are_read_from_go_mod():
    versions = build.pinned_versions()
    assert re.fullmatch(r"v1\.\d+\.\d+", versions["kube"])
    assert re.fullmatch(r"v3\.[56]\.\d+", versions["etcd"]), "etcd must be 3.5.x or 3.6.x"
    assert re.fullmatch(r"v0\.\d+\.\d+", versions["kwok"])


def test_every_staging_module_is_replaced_by_the_same_release():
    kube = build.COMPONENTS["kube"]
    minor_patch = kube.version().removeprefix("v1.")
    gomod = (kube.path / "go.mod").read_text()
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", gomod, re.M)
    assert len(replaced) >= 30
    for module, target, version in replaced:
        assert module == target
        assert version == f"v0.{minor_patch}", f"{module} is replaced by {version}"


def test_cache_directory_names_version_and_fingerprint(monkeypatch, tmp_path):
    monkeypatch.setenv("CANARYLAB_CACHE_DIR", str(tmp_path))
    directory = build.binary_dir("kube")
    assert directory.parent == tmp_path / "bin"
    assert directory.name.startswith(f"kube-{build.COMPONENTS['kube'].version()}-")
    assert not build.is_built("kube")


def test_traefik_is_pinned_and_built_on_demand_only():
    traefik = build.GATEWAYS["traefik"]
    assert traefik.version() == "v3.6.12"  # v3.7.x does not build from the module proxy
    assert "traefik" not in build.COMPONENTS  # make sandbox-build stays the control plane
    gomod = (traefik.path / "go.mod").read_text()
    # Traefik's own replace lines, without which its module does not build.
    for module in ("github.com/abbot/go-http-auth", "github.com/gorilla/mux"):
        assert re.search(rf"^\s*{re.escape(module)} => ", gomod, re.M), module
    assert re.search(r"^\s*sigs\.k8s\.io/gateway-api v1\.\d+\.\d+", gomod, re.M)
    (flags,) = [traefik.ldflags(traefik.version())]
    assert flags == ["-X github.com/traefik/traefik/v3/pkg/version.Version=v3.6.12"]


def test_traefik_listens_on_loopback_and_maps_the_gateway_listener_to_its_port():
    from canarylab.sandbox import traefik

    argv = traefik.argv(build.binary_dir("kube") / "traefik", 40555)
    assert "--entryPoints.web.address=127.0.0.1:40555" in argv
    assert "--providers.kubernetesgateway=true" in argv
    assert not any("0.0.0.0" in arg or "api.insecure" in arg for arg in argv)
    (_, gateway_class), (_, gateway) = traefik.gateway_objects(40555)
    assert gateway_class["spec"]["controllerName"] == traefik.CONTROLLER_NAME
    (listener,) = gateway["spec"]["listeners"]
    assert listener["port"] == 40555  # Traefik maps a listener to the entryPoint of that port
    assert traefik.parent_ref()["name"] == gateway["metadata"]["name"]
