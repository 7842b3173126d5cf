"""Probe throughput vs wrk, and split accuracy: ``python benchmarks/probe.py [--runs N]``.

Starts a private sandbox (or uses ``--state-dir``'s running one), deploys the demo app
(``web`` v1 ×2, ``web-canary`` v2 ×1) behind an ApisixRoute, and measures through the
sandbox gateway:

1. the asyncio probe's throughput on one core (``taskset -c 0``, closed loop), and wrk's
   throughput (one thread on the same core) in the same run, alternating, ``--runs``
   times each; medians and their ratio (goal: the probe reaches ≥ 25% of wrk). Twice:
   *routed* (through the gateway to the demo app's Python processes) and
   *gateway-only* (a host no route takes, so HAProxy answers the 404 itself: what the
   two clients can do when the backend is not the limit);
2. split accuracy: the observed canary share at route weights 5, 25 and 50 over
   ``--split-requests`` requests each.

Both engines hit the same gateway and the same demo-app processes, so when those are
the bottleneck the ratio says so: the report prints the machine's core count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from canarylab.dataplane.routes import sandbox_host
from canarylab.sandbox import Sandbox


def demo(name: str, tag: str, replicas: int, track: str) -> dict[str, Any]:
    labels = {"app": "web", "track": track}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": f"canarylab/demo:{tag}"}]},
            },
        },
    }


def route(weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {"name": "web"},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "match": {"paths": ["/*"]},
                    "backends": [
                        {"serviceName": "web", "servicePort": 80, "weight": 100 - weight},
                        {"serviceName": "web-canary", "servicePort": 80, "weight": weight},
                    ],
                }
            ]
        },
    }


def wait_weight(sb: Sandbox, namespace: str, weight: int, timeout: float = 60) -> None:
    status = Path(sb.state_dir) / "dataplane" / "status.json"
    rule = f"ApisixRoute/{namespace}/web/main"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            backends = json.loads(status.read_text())["backends"]
        except (OSError, ValueError, KeyError):
            backends = []
        for b in backends:
            servers = b["servers"]
            total = sum(s["weight"] for s in servers)
            close = total and any(abs(s["weight"] / total - weight / 100) < 0.005 for s in servers)
            if b["rule"] == rule and len(servers) == 3 and close:
                return
        time.sleep(0.1)
    raise SystemExit(f"the gateway did not reach weight {weight} within {timeout}s")


def install_apisix_crds(api: client.ApiClient) -> None:
    """The real ApisixRoute CRD ($CANARYLAB_SHARED_CRDS or ../shared/crds), Established."""
    crds = Path(os.environ.get("CANARYLAB_SHARED_CRDS", "../shared/crds")) / "apisix"
    files = sorted(crds.glob("*.yaml"))
    if not files:
        raise SystemExit(f"no APISIX CRDs in {crds}: set CANARYLAB_SHARED_CRDS")
    ext = client.ApiextensionsV1Api(api)
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                with contextlib.suppress(client.ApiException):
                    ext.create_custom_resource_definition(doc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("apisixroutes.apisix.apache.org")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return
        time.sleep(0.2)
    raise SystemExit("the ApisixRoute CRD did not become Established")


def run_json(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def wrk_throughput(url: str, host: str, connections: int, duration: float) -> float:
    argv = pin(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "-H", f"Host: {host}", url]
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])


def pin(argv: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *argv] if shutil.which("taskset") else argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--split-requests", type=int, default=20_000)
    parser.add_argument("--state-dir", type=Path, default=None, help="use this sandbox")
    args = parser.parse_args()

    temp = None if args.state_dir else tempfile.mkdtemp(prefix="canarylab-bench-")
    sb = Sandbox(args.state_dir or temp)
    started_here = not sb.is_running()
    sb.up()
    api = config.new_client_from_config(config_file=str(sb.kubeconfig))
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        install_apisix_crds(api)
        core.create_namespace({"metadata": {"name": namespace}})
        apps.create_namespaced_deployment(namespace, demo("web", "v1", 2, "stable"))
        apps.create_namespaced_deployment(namespace, demo("web-canary", "v2", 1, "canary"))
        for name, track in (("web", "stable"), ("web-canary", "canary")):
            core.create_namespaced_service(
                namespace,
                {
                    "metadata": {"name": name},
                    "spec": {"selector": {"app": "web", "track": track}, "ports": [{"port": 80}]},
                },
            )
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "apisix.apache.org", "v2", namespace, "apisixroutes", route(50)
        )
        wait_weight(sb, namespace, 50)
        url = str(sb.status()["gateway"]) + "/"
        host = sandbox_host("web", namespace)
        cli = [str(Path(sys.executable).parent / "canarylab")]
        common = ["-d", str(args.duration), "-c", str(args.connections), "--json"]

        print(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            f"{args.runs} runs of {args.duration:g}s, {args.connections} connections, "
            "probe and wrk each pinned to core 0"
        )
        # Routed: through the gateway to the demo app (Python processes answer).
        # Unrouted: the gateway's own 404 (HAProxy answers): what the clients can do.
        for label, target in (("routed", host), ("gateway-only", "unrouted.bench.sandbox")):
            probe_rps, wrk_rps = [], []
            for _ in range(args.runs):
                argv = [*cli, "probe", url, "--host", target, *common]
                probe_rps.append(run_json(pin(argv))["rps"])
                wrk_rps.append(wrk_throughput(url, target, args.connections, args.duration))
            p, w = statistics.median(probe_rps), statistics.median(wrk_rps)
            print(
                f"[{label}] asyncio probe: median {p:8.0f} req/s  runs {[round(x) for x in probe_rps]}"
            )
            print(
                f"[{label}] wrk, 1 thread: median {w:8.0f} req/s  runs {[round(x) for x in wrk_rps]}"
            )
            print(f"[{label}] ratio probe/wrk: {100 * p / w:.0f}% (goal >= 25%)")

        print(f"split accuracy over {args.split_requests} requests per weight:")
        for weight in (5, 25, 50):
            body = custom.get_namespaced_custom_object(
                "apisix.apache.org", "v2", namespace, "apisixroutes", "web"
            )
            body["spec"] = route(weight)["spec"]
            custom.replace_namespaced_custom_object(
                "apisix.apache.org", "v2", namespace, "apisixroutes", "web", body
            )
            wait_weight(sb, namespace, weight)
            summary = run_json(
                [
                    *cli,
                    "probe",
                    url,
                    "--host",
                    host,
                    "-d",
                    "600",
                    "-c",
                    "20",
                    "-n",
                    str(args.split_requests),
                    "--json",
                ]
            )
            share = 100 * summary["by_version"].get("v2", 0) / summary["total"]
            print(
                f"  weight {weight:>2}: observed {share:6.2f}%  (error {share - weight:+.2f} pp, "
                f"failed {summary['failed_total']}, {summary['rps']:.0f} req/s)"
            )
    finally:
        try:
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(namespace)
        finally:
            if started_here:
                sb.down(purge=temp is not None)


if __name__ == "__main__":
    main()
