"""The CanaryDeployment CRD: the deploy/ copy is identical, and its shape is as documented."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGED = REPO / "canarylab" / "crds" / "canarydeployments.canarylab.io.yaml"
DEPLOYED = REPO / "deploy" / "canarydeployments.canarylab.io.yaml"


def test_deploy_copy_equals_the_packaged_crd() -> None:
    assert DEPLOYED.read_bytes() == PACKAGED.read_bytes(), (
        "deploy/ holds a stale CRD: cp canarylab/crds/canarydeployments.canarylab.io.yaml deploy/"
    )


def test_crd_shape() -> None:
    crd = yaml.safe_load(PACKAGED.read_text())
    assert crd["spec"]["names"]["shortNames"] == ["cdep"]  # `canary` is Flagger's
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == [
        *["Parent", "Version", "Weight", "Applied", "Phase", "Ready", "Age"],
        *["Holder", "Reason", "Message"],  # -o wide
    ]
    assert (
        "Paused"
        in version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"][
            "enum"
        ]
    )
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["required"]) == {"parentDeployment", "version", "template", "trafficRouter"}
    props = spec["properties"]
    assert (props["weight"]["minimum"], props["weight"]["maximum"]) == (0, 100)
    assert props["replicas"]["default"] == 1
    assert props["replace"]["default"] is False
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"phase", "observedGeneration", "canary", "weights", "conditions"} <= set(status)


def test_crd_is_shipped_as_package_data() -> None:
    from canarylab.cli.controller import crd_files

    assert PACKAGED in crd_files()


def test_lease_field_is_documented_and_validated() -> None:
    crd = yaml.safe_load(PACKAGED.read_text())
    version = crd["spec"]["versions"][0]
    lease = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["lease"]
    assert set(lease["required"]) == {"holder", "durationSeconds", "renewTime"}
    assert lease["properties"]["durationSeconds"]["minimum"] == 5
    assert lease["properties"]["renewTime"]["format"] == "date-time"
    assert "DriverLost" in lease["description"]
    assert all(p.get("description") for p in lease["properties"].values())  # kubectl explain
    wide = {c["name"]: c for c in version["additionalPrinterColumns"] if c.get("priority")}
    assert wide["Holder"]["jsonPath"] == ".spec.lease.holder"


def test_every_status_field_is_described_for_kubectl_explain() -> None:
    from canarylab.model.decide import PHASES

    crd = yaml.safe_load(PACKAGED.read_text())
    version = crd["spec"]["versions"][0]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]

    def undescribed(schema: dict[str, object], where: str) -> list[str]:
        missing = [] if schema.get("description") else [where]
        props = schema.get("properties") or {}
        items = schema.get("items")
        if isinstance(items, dict):
            props = {**props, **(items.get("properties") or {})}  # type: ignore[dict-item]
        for key, sub in props.items():  # type: ignore[union-attr]
            missing += undescribed(sub, f"{where}.{key}")
        return missing

    assert status["description"]
    assert undescribed(status, "status") == []
    assert tuple(status["properties"]["phase"]["enum"]) == PHASES
    wide = {c["name"]: c for c in version["additionalPrinterColumns"] if c.get("priority")}
    assert (wide["Reason"]["jsonPath"], wide["Message"]["jsonPath"]) == (
        ".status.reason",
        ".status.message",
    )
    assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["aborted"]
