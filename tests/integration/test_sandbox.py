"""Acceptance of the sandbox: the real control plane does what Kubernetes does."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from canarylab.sandbox import Sandbox
from canarylab.sandbox import procs as sandbox_procs
from tests.helpers import deployment, install_crds, wait_for

pytestmark = pytest.mark.integration


def test_deployment_becomes_ready_on_kwok_nodes(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=3))

    def ready() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.ready_replicas == 3

    wait_for(ready, timeout=60, what="3 ready replicas")
    nodes = {n.metadata.name: n for n in core.list_node().items}
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.spec.node_name in nodes
        assert nodes[pod.spec.node_name].metadata.annotations["kwok.x-k8s.io/node"] == "fake"
        assert pod.status.phase == "Running"
        assert not pod.spec.tolerations or all(
            t.key != "kwok.x-k8s.io/node" for t in pod.spec.tolerations
        )


def test_garbage_collector_deletes_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [ref]}}
    )
    core.delete_namespaced_config_map("owner", namespace)

    def collected() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(collected, timeout=60, what="the garbage collector to delete the dependent")


def test_cel_validation_rejects_with_rule_message(api_client, tmp_path: Path):
    group = f"t{uuid.uuid4().hex[:6]}.canarylab.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "low": {"type": "integer"},
                                        "high": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.low <= self.high",
                                            "message": "low must not exceed high",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    import yaml

    file = tmp_path / "crd.yaml"
    file.write_text(yaml.safe_dump(crd))
    install_crds(api_client, [file])
    custom = client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{group}/v1",
        "kind": "Range",
        "metadata": {"name": "ok"},
        "spec": {"low": 1, "high": 2},
    }
    custom.create_namespaced_custom_object(group, "v1", "default", "ranges", body)
    bad = {**body, "metadata": {"name": "bad"}, "spec": {"low": 3, "high": 2}}
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(group, "v1", "default", "ranges", bad)
    assert err.value.status == 422
    assert "low must not exceed high" in err.value.body


def _apisix_route(name: str, backends: list[dict[str, object]]) -> dict[str, object]:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": name},
        "spec": {"http": [{"name": "main", "match": {"paths": ["/*"]}, "backends": backends}]},
    }


def test_real_apisix_and_gateway_crds_validate(api_client, namespace, shared_crds):
    files = sorted((shared_crds / "apisix").glob("*.yaml")) + sorted(
        (shared_crds / "gateway-api").glob("*.yaml")
    )
    names = install_crds(api_client, files)
    assert "apisixroutes.apisix.apache.org" in names
    assert "httproutes.gateway.networking.k8s.io" in names
    custom = client.CustomObjectsApi(api_client)
    good = _apisix_route(
        "weighted",
        [
            {"serviceName": "web", "servicePort": 80, "weight": 95},
            {"serviceName": "web-canary", "servicePort": 80, "weight": 5},
        ],
    )
    created = custom.create_namespaced_custom_object(
        "apisix.apache.org", "v2", namespace, "apisixroutes", good
    )
    assert [b["weight"] for b in created["spec"]["http"][0]["backends"]] == [95, 5]
    # The schema says backends need a serviceName; a backend without one is refused.
    bad = _apisix_route("broken", [{"servicePort": 80, "weight": 5}])
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            "apisix.apache.org", "v2", namespace, "apisixroutes", bad
        )
    assert err.value.status == 422
    assert "serviceName" in err.value.body


def test_down_leaves_no_process_and_frees_ports(tmp_path: Path):
    sb = Sandbox(tmp_path / "second", nodes=1)
    sb.up()
    state = sb.state()
    records = list(state.processes)
    ports = list(state.ports.values())
    assert records
    assert all(r.alive() for r in records)
    sb.down()
    for record in records:
        assert not record.alive(), f"{record.name} (pid {record.pid}) survived sandbox down"
    for port in ports:
        assert not sandbox_procs.port_in_use(port), f"port {port} still in use after down"
    assert sb.status()["components"] == []
