"""API writes and objects created per canary, APISIX service mode vs subset mode.

``python benchmarks/subset.py [--rounds N]``

Starts a private sandbox, installs the real APISIX CRDs and the CanaryDeployment CRD,
runs ``canarylab controller`` as a subprocess and, per mode, takes N canaries through
create → weights 5/25/50 → delete. It reads the API server's own request counter
(``apiserver_request_total``) before and after, keeps the kinds the controller writes
(CanaryDeployment status, Deployments, Services, ApisixRoutes, ApisixUpstreams),
subtracts this script's own writes, and prints writes and created objects per canary.
Events are left out: the kube-controller-manager posts them too.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client, config  # noqa: E402

from canarylab.sandbox import Sandbox  # noqa: E402
from tests.helpers import install_crds, wait_for  # noqa: E402

SHARED = Path(os.environ.get("CANARYLAB_SHARED_CRDS", REPO.parent / "shared" / "crds"))
GROUP, VERSION, PLURAL = "canarylab.io", "v1alpha1", "canarydeployments"
AR = ("apisix.apache.org", "v2", "apisixroutes")
WRITES = ("POST", "PUT", "PATCH", "DELETE")
COUNTED = {
    ("canarydeployments", "status"),
    ("canarydeployments", ""),
    ("deployments", ""),
    ("services", ""),
    ("apisixroutes", ""),
    ("apisixupstreams", ""),
}
"""(resource, subresource) the controller writes; kcm writes Deployment status, pods."""
SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def writes(api: Any) -> Counter[tuple[str, str, str]]:
    """(verb, resource, subresource) → requests so far, for the counted kinds."""
    method, url, headers, _body, _files = api.param_serialize(
        "GET", "/metrics", auth_settings=["BearerToken"]
    )
    text = api.call_api(method, url, header_params=headers).read().decode()
    out: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        key = (labels.get("resource", ""), labels.get("subresource", ""))
        if labels.get("verb") in WRITES and key in COUNTED:
            out[(labels["verb"], *key)] += int(float(m["value"]))
    return out


def parent(api: Any, ns: str, mode: str) -> None:
    labels = {"app": "web"}
    pod_labels = {**labels, "canarylab.io/version": "v1"} if mode == "subset" else labels
    client.AppsV1Api(api).create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:v1"}]},
                },
            },
        },
    )
    client.CoreV1Api(api).create_namespaced_service(
        ns, {"metadata": {"name": "web"}, "spec": {"selector": labels, "ports": [{"port": 80}]}}
    )
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        *AR[:2],
        ns,
        AR[2],
        {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {"name": "web"},
            "spec": {
                "http": [
                    {
                        "name": "main",
                        "match": {"paths": ["/*"]},
                        "backends": [{"serviceName": "web", "servicePort": 80}],
                    }
                ]
            },
        },
    )


def one_canary(api: Any, ns: str, mode: str) -> None:
    """create → 5/25/50 → delete; 5 writes of this script's own (1 POST, 3 PATCH, 1 DELETE)."""
    custom = client.CustomObjectsApi(api)
    router: dict[str, Any] = {"route": "web", **({"mode": "subset"} if mode == "subset" else {})}
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryDeployment",
        "metadata": {"name": "web"},
        "spec": {
            "parentDeployment": "web",
            "version": "v2",
            "weight": 0,
            "template": {
                "metadata": {"labels": {"app": "web", "canarylab.io/version": "v2"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:v2"}]},
            },
            "trafficRouter": {"apisix": router},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def phase() -> str:
        cd = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "web")
        return str((cd.get("status") or {}).get("phase"))

    wait_for(lambda: phase() == "Serving", 90, what=f"{mode} canary Serving")
    for weight in (5, 25, 50):
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "web", {"spec": {"weight": weight}}
        )

        def applied(w: int = weight) -> bool:
            route = custom.get_namespaced_custom_object(*AR[:2], ns, AR[2], "web")
            return sorted(b.get("weight") for b in route["spec"]["http"][0]["backends"]) == sorted(
                [100 - w, w]
            )

        wait_for(applied, 60, what=f"weight {weight}")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "web")

    def restored() -> bool:
        route = custom.get_namespaced_custom_object(*AR[:2], ns, AR[2], "web")
        return route["spec"]["http"][0]["backends"] == [{"serviceName": "web", "servicePort": 80}]

    wait_for(restored, 60, what="route restored")
    wait_for(
        lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"],
        60,
        what="canary gone",
    )
    time.sleep(2)  # the last status/cleanup writes land before the counter is read


OWN = Counter({("POST", "canarydeployments", ""): 1, ("PATCH", "canarydeployments", ""): 3})
OWN[("DELETE", "canarydeployments", "")] = 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sb = Sandbox(Path(tmp) / "sb")
        sb.up()
        controller = None
        try:
            api = config.new_client_from_config(config_file=str(sb.kubeconfig))
            install_crds(
                api,
                [
                    *sorted((SHARED / "apisix").glob("*.yaml")),
                    REPO / "deploy" / "canarydeployments.canarylab.io.yaml",
                ],
            )
            log = open(Path(tmp) / "controller.log", "wb")  # noqa: SIM115
            controller = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "canarylab"),
                    "controller",
                    "--kubeconfig",
                    str(sb.kubeconfig),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            time.sleep(6)  # controller start-up
            for mode in ("service", "subset"):
                ns = f"bench-{mode}"
                client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
                parent(api, ns, mode)
                time.sleep(2)
                before = writes(api)
                for _ in range(args.rounds):
                    one_canary(api, ns, mode)
                delta = writes(api) - before
                for key, own in OWN.items():
                    delta[key] -= own * args.rounds
                total = sum(v for v in delta.values() if v > 0)
                created = {r: v for (verb, r, sub), v in delta.items() if verb == "POST" and v > 0}
                per = {
                    f"{verb} {r}{'/' + s if s else ''}": round(v / args.rounds, 1)
                    for (verb, r, s), v in sorted(delta.items())
                    if v > 0
                }
                print(
                    f"{mode} mode: {total / args.rounds:.1f} controller API writes per canary "
                    f"(create → 5/25/50 → delete, {args.rounds} rounds): {per}; objects created "
                    f"per canary: { {r: v / args.rounds for r, v in created.items()} }; "
                    f"load average {os.getloadavg()[0]:.1f}"
                )
        finally:
            if controller is not None:
                controller.terminate()
                try:
                    controller.wait(20)
                except subprocess.TimeoutExpired:
                    controller.kill()
            sb.down()


if __name__ == "__main__":
    main()
