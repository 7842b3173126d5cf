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
