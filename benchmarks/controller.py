"""Controller latency and scale: ``python benchmarks/controller.py [--shifts N] [--fleet N]``.

Starts a private sandbox, installs the real APISIX CRDs and the CanaryDeployment CRD,
runs ``canarylab controller`` as a subprocess, and prints:

- weight-shift latency: from patching ``spec.weight`` to the new weights being visible
  in the ApisixRoute (seen through a watch), p50/p99 over N shifts;
- create → Serving time with kwok's 1 s simulated pod start, median over 5 canaries;
- a fleet of N CanaryDeployments created at once: time until all are Serving, and the
  controller's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client, config, watch  # noqa: E402

from canarylab.sandbox import Sandbox  # noqa: E402
from tests.helpers import install_crds, wait_for  # noqa: E402

SHARED = Path(os.environ.get("CANARYLAB_SHARED_CRDS", REPO.parent / "shared" / "crds"))
GROUP, VERSION, PLURAL = "canarylab.io", "v1alpha1", "canarydeployments"
AR = ("apisix.apache.org", "v2", "apisixroutes")


def objects(name: str) -> list[dict[str, Any]]:
    labels = {"app": name}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:v1"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80}]},
        },
        {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {"name": name},
            "spec": {
                "http": [
                    {
                        "name": "main",
                        "match": {"paths": ["/*"]},
                        "backends": [{"serviceName": name, "servicePort": 80}],
                    }
                ]
            },
        },
    ]


def canary(name: str, weight: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryDeployment",
        "metadata": {"name": name},
        "spec": {
            "parentDeployment": name,
            "version": "v2",
            "weight": weight,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:v2"}]},
            },
            "trafficRouter": {"apisix": {"route": name}},
        },
    }


class Bench:
    def __init__(self, api: Any, namespace: str) -> None:
        self.ns = namespace
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def parent(self, name: str) -> None:
        deploy, svc, route = objects(name)
        self.apps.create_namespaced_deployment(self.ns, deploy)
        self.core.create_namespaced_service(self.ns, svc)
        self.custom.create_namespaced_custom_object(*AR[:2], self.ns, AR[2], route)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def phase(self, name: str) -> str:
        cd = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return str((cd.get("status") or {}).get("phase", ""))

    def phases(self) -> list[str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)["items"]
        return [str((i.get("status") or {}).get("phase", "")) for i in items]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def weight_shifts(api: Any, bench: Bench, shifts: int, gap: float) -> list[float]:
    bench.parent("shift")
    bench.create(canary("shift", 0))
    wait_for(lambda: bench.phase("shift") == "Serving", 60, what="shift canary Serving")
    seen: queue.Queue[tuple[float, int]] = queue.Queue()
    stop = threading.Event()
    custom = client.CustomObjectsApi(api)

    def watcher() -> None:
        with contextlib.suppress(Exception):  # the stream ends when the sandbox stops
            follow()

    def follow() -> None:
        w = watch.Watch()
        for event in w.stream(
            custom.list_namespaced_custom_object,
            *AR[:2],
            bench.ns,
            AR[2],
            field_selector="metadata.name=shift",
            timeout_seconds=600,
        ):
            backends = event["object"]["spec"]["http"][0]["backends"]
            weight = next(
                (b.get("weight", 0) for b in backends if b["serviceName"] == "shift-canary"), 0
            )
            seen.put((time.perf_counter(), int(weight)))
            if stop.is_set():
                w.stop()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1)
    latencies = []
    weight = 0
    for _ in range(shifts):
        weight = (weight + 7) % 101 or 1
        t0 = time.perf_counter()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, bench.ns, PLURAL, "shift", {"spec": {"weight": weight}}
        )
        while True:
            at, w = seen.get(timeout=30)
            if w == weight and at >= t0:
                latencies.append((at - t0) * 1000)
                break
        time.sleep(gap)
    stop.set()
    return latencies


def create_to_serving(bench: Bench, runs: int = 5) -> list[float]:
    times = []
    for i in range(runs):
        name = f"cold{i}"
        bench.parent(name)
        wait_for(
            lambda n=name: (
                (bench.apps.read_namespaced_deployment(n, bench.ns).status.ready_replicas or 0) >= 1
            ),
            60,
            what="parent ready",
        )
        t0 = time.perf_counter()
        bench.create(canary(name, 10))
        wait_for(
            lambda n=name: bench.phase(n) == "Serving", 60, interval=0.02, what=f"{name} Serving"
        )
        times.append(time.perf_counter() - t0)
    return times


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (load-independent, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet(api: Any, count: int, pid: int) -> tuple[float, float, float]:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "fleet"}})
    bench = Bench(api, "fleet")
    names = [f"f{i:03d}" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bench.parent, names))
    wait_for(
        lambda: (
            sum(
                (d.status.ready_replicas or 0) >= 1
                for d in bench.apps.list_namespaced_deployment("fleet").items
            )
            >= count
        ),
        300,
        interval=1,
        what="fleet parents ready",
    )
    t0, cpu0 = time.perf_counter(), cpu_seconds(pid)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: bench.create(canary(n, 20)), names))
    wait_for(
        lambda: sum(p == "Serving" for p in bench.phases()) >= count,
        600,
        interval=0.5,
        what="fleet Serving",
    )
    return time.perf_counter() - t0, peak_rss_mib(pid), cpu_seconds(pid) - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shifts", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=300)
    parser.add_argument(
        "--gap",
        type=float,
        default=0.25,
        help="seconds between shifts (a person's pace, not a storm)",
    )
    args = parser.parse_args()
    if not (SHARED / "apisix").is_dir():
        sys.exit(f"the real APISIX CRDs are not at {SHARED}; set CANARYLAB_SHARED_CRDS")
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
            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
            bench = Bench(api, "bench")
            time.sleep(6)  # controller start-up (imports), not part of any figure

            lat = weight_shifts(api, bench, args.shifts, args.gap)
            print(
                f"weight-shift latency over {len(lat)} shifts: p50 {percentile(lat, 50):.0f} ms, "
                f"p99 {percentile(lat, 99):.0f} ms, max {max(lat):.0f} ms (targets: p50 ≤ 100, p99 ≤ 300)"
            )
            serve = create_to_serving(bench)
            print(
                f"create → Serving (1 s simulated pod start): median {statistics.median(serve):.2f} s, "
                f"max {max(serve):.2f} s over {len(serve)} (target ≤ 3 s)"
            )
            if args.fleet:
                took, rss, cpu = fleet(api, args.fleet, controller.pid)
                print(
                    f"{args.fleet} canaries created at once: all Serving after {took:.1f} s (target ≤ 60 s); "
                    f"controller CPU {cpu:.1f} s meanwhile; peak RSS {rss:.0f} MiB (target ≤ 200); "
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
