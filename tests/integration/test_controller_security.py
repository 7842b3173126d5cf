"""The controller runs as deploy/'s ServiceAccount, whose ClusterRole is least privilege."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

SA = "system:serviceaccount:canarylab-system:canarylab-controller"


@pytest.fixture
def as_controller(controller: Any) -> Any:
    api = config.new_client_from_config(config_file=str(controller.kubeconfig))
    yield api
    api.close()


def test_the_controller_authenticates_with_a_service_account_token(controller: Any) -> None:
    kubeconfig = yaml.safe_load(Path(controller.kubeconfig).read_text())
    user = kubeconfig["users"][0]["user"]
    assert set(user) == {"token"}


def test_it_cannot_read_secrets(as_controller: Any, namespace: str) -> None:
    core = client.CoreV1Api(as_controller)
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_secret(namespace)
    assert caught.value.status == 403
    assert SA in caught.value.body
    with pytest.raises(ApiException) as caught:
        core.list_secret_for_all_namespaces()
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("group", "resource", "verb", "allowed"),
    [
        ("canarylab.io", "canarydeployments", "watch", True),
        ("apps", "deployments", "update", True),
        ("apisix.apache.org", "apisixroutes", "update", True),
        ("gateway.networking.k8s.io", "httproutes", "create", True),
        ("", "secrets", "get", False),
        ("", "configmaps", "get", False),
        ("", "pods", "delete", False),
        ("apiextensions.k8s.io", "customresourcedefinitions", "create", False),
        ("rbac.authorization.k8s.io", "clusterroles", "update", False),
    ],
)
def test_permissions_are_least_privilege(
    api_client: Any, controller: Any, group: str, resource: str, verb: str, allowed: bool
) -> None:
    review = client.AuthorizationV1Api(api_client).create_subject_access_review(
        {
            "spec": {
                "user": SA,
                "groups": ["system:serviceaccounts", "system:serviceaccounts:canarylab-system"],
                "resourceAttributes": {"group": group, "resource": resource, "verb": verb},
            }
        }
    )
    assert review.status.allowed is allowed
