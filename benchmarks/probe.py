"""Probe throughput vs wrk, and split accuracy: ``python benchmarks/probe.py [--runs N]``.

Measures through a gateway the probe's request rate against wrk's, in the same run:

- default: a private sandbox (or ``--state-dir``'s running one), the demo app (``web``
  v1 ×2, ``web-canary`` v2 ×1) behind an ApisixRoute, through the sandbox gateway; then
  split accuracy (the observed canary share at route weights 5, 25 and 50 over
  ``--split-requests`` requests each);
- ``--local``: no sandbox; an HAProxy with the sandbox gateway's settings, on loopback,
  in front of two demo-app processes (v1, v2) on loopback. Quick, and what a developer
  can run anywhere HAProxy and wrk are installed.

For each target the clients take turns, round after round (the probe on uvloop, the
probe on asyncio's loop, wrk, in an order that rotates each round), so noise from the
shared machine hits every client; ``--runs`` rounds, medians and every run printed, and
each probe/wrk ratio (goal: the probe reaches ≥ 25% of wrk). Every client runs closed
loop on one core (``taskset -c 0``; wrk with one thread) with the same connections.
Two targets: *routed* (through the gateway to the demo app's Python processes) and
*gateway-only* (a host no route takes, so HAProxy answers the 404 itself: what the
clients can do when the backend is not the limit). ``uptime`` is printed before and
after each target: compare figures only with the load they were measured under.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

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


def run_json(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pin(argv: list[str]) -> list[str]:
    return ["taskset", "-c", "0", *argv] if shutil.which("taskset") else argv


def uptime() -> str:
    if shutil.which("uptime"):
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Run(NamedTuple):
    rps: float
    """Requests completed per second (any status)."""
    cpu_us: float
    """The client's CPU (user + system) per request, in microseconds: what the shared
    machine's load disturbs least."""


def probe_throughput(loop: str, url: str, host: str, connections: int, duration: float) -> Run:
    """The probe's achieved request rate, in a fresh process pinned to core 0."""
    argv = [sys.executable, __file__, "--child-probe", loop, url, host]
    argv += [str(connections), str(duration)]
    out = run_json(pin(argv))
    return Run(float(out["rps"]), float(out["cpu_us"]))


def wrk_throughput(url: str, host: str, connections: int, duration: float) -> Run:
    argv = pin(
        ["wrk", "-t1", f"-c{connections}", f"-d{int(duration)}s", "-H", f"Host: {host}", url]
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = out.splitlines()
    rps = float(next(line for line in lines if "Requests/sec" in line).split()[1])
    total = int(next(line for line in lines if "requests in" in line).split()[0])
    return Run(rps, 1e6 * cpu / max(total, 1))


def loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        print("uvloop is not installed: measuring the probe on asyncio's loop only")
        return ["asyncio"]
    return ["uvloop", "asyncio"]


def compare(label: str, url: str, host: str, args: argparse.Namespace) -> None:
    """Rounds of probe (each loop) and wrk against one target; medians and ratios."""
    clients = [f"probe/{loop}" for loop in loops()] + ["wrk"]
    runs: dict[str, list[Run]] = {name: [] for name in clients}
    print(f"[{label}] before: {uptime()}")
    for round_ in range(args.runs):
        shift = round_ % len(clients)
        for name in clients[shift:] + clients[:shift]:
            if name == "wrk":
                run = wrk_throughput(url, host, args.connections, args.duration)
            else:
                loop = name.split("/")[1]
                run = probe_throughput(loop, url, host, args.connections, args.duration)
            runs[name].append(run)
    rps = {name: statistics.median(r.rps for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r.cpu_us for r in rs) for name, rs in runs.items()}
    for name in clients:
        print(
            f"[{label}] {name:<14} median {rps[name]:8.0f} req/s, {cpu[name]:5.1f} us CPU/req"
            f"  runs {[round(r.rps) for r in runs[name]]}"
        )
    for name in clients[:-1]:
        ratio = 100 * rps[name] / rps["wrk"]
        print(
            f"[{label}] ratio {name}/wrk: {ratio:.0f}% of the rate (goal >= 25%), "
            f"{cpu[name] / cpu['wrk']:.1f}x the CPU per request"
        )
    if "probe/uvloop" in rps:
        gain = 100 * (rps["probe/uvloop"] / rps["probe/asyncio"] - 1)
        saved = 100 * (1 - cpu["probe/uvloop"] / cpu["probe/asyncio"])
        print(f"[{label}] uvloop vs asyncio: rate {gain:+.0f}%, CPU per request {-saved:+.0f}%")
    print(f"[{label}] after:  {uptime()}")


def header(args: argparse.Namespace, gateway: str) -> None:
    print(
        f"machine: {os.cpu_count()} cores; gateway {gateway}; {args.runs} rounds of "
        f"{args.duration:g}s, {args.connections} connections, closed loop, each client "
        "pinned to core 0 (wrk: 1 thread)"
    )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_answering(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


LOCAL_HOST = "web.bench.sandbox"


def local_config(port: int, servers: list[int]) -> str:
    """HAProxy with the sandbox gateway's settings (canarylab.dataplane.haproxy)."""
    from canarylab.dataplane.haproxy import settings

    lines = [
        *settings(),
        "frontend gateway",
        f"  bind 127.0.0.1:{port}",
        f"  acl web req.hdr(host),lower,field(1,:) -m str {LOCAL_HOST}",
        "  use_backend web if web",
        "  default_backend no_route",
        "backend no_route",
        '  http-request return status 404 content-type text/plain string "no route"',
        "backend web",
        *(f"  server s{i} 127.0.0.1:{p} weight 256" for i, p in enumerate(servers)),
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def local_gateway(workdir: Path) -> Iterator[str]:
    """An HAProxy on loopback in front of demo-app v1 and v2; yields its URL."""
    if not shutil.which("haproxy"):
        raise SystemExit("--local needs haproxy: apt-get install -y haproxy")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for version in ("v1", "v2"):
            port = free_port()
            env = {**os.environ, "DEMO_VERSION": version}
            argv = [str(Path(sys.executable).parent / "canarylab"), "demo-app"]
            log = (workdir / f"demo-{version}.log").open("wb")
            procs.append(
                subprocess.Popen([*argv, "--port", str(port)], env=env, stdout=log, stderr=log)
            )
            ports.append(port)
        gateway = free_port()
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(local_config(gateway, ports))
        log = (workdir / "haproxy.log").open("wb")
        procs.append(subprocess.Popen(["haproxy", "-f", str(cfg)], stdout=log, stderr=log))
        for port in [*ports, gateway]:
            wait_answering(port)
        yield f"http://127.0.0.1:{gateway}/"
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_local(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="canarylab-bench-") as temp,
        local_gateway(Path(temp)) as url,
    ):
        header(args, f"local HAProxy {url} (demo-app v1 + v2 behind it)")
        compare("routed", url, LOCAL_HOST, args)
        compare("gateway-only", url, "unrouted.bench.sandbox", args)


def run_sandbox(args: argparse.Namespace) -> None:
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

        header(args, f"sandbox {url}")
        # Routed: through the gateway to the demo app (Python processes answer).
        # Unrouted: the gateway's own 404 (HAProxy answers): what the clients can do.
        compare("routed", url, host, args)
        compare("gateway-only", url, "unrouted.bench.sandbox", args)

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


def child_probe(argv: list[str]) -> None:
    """``--child-probe LOOP URL HOST CONNECTIONS DURATION``: one probe run, JSON out."""
    from canarylab.probe import Probe, ProbeSettings
    from canarylab.probe.loop import run

    loop, url, host, connections, duration = argv
    settings = ProbeSettings(
        url=url, duration=float(duration), connections=int(connections), headers=(("Host", host),)
    )
    start = time.process_time()
    result = run(Probe(settings).run(), name=loop)
    cpu = time.process_time() - start
    total = max(len(result.requests), 1)
    summary = {"loop": loop, "rps": result.summary()["rps"], "failed": result.failed}
    print(json.dumps({**summary, "cpu_us": 1e6 * cpu / total}))


def main() -> None:
    if sys.argv[1:2] == ["--child-probe"]:
        child_probe(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="rounds (each client once per round)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--split-requests", type=int, default=20_000)
    parser.add_argument("--state-dir", type=Path, default=None, help="use this sandbox")
    parser.add_argument(
        "--local", action="store_true", help="a local HAProxy + demo app instead of a sandbox"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("benchmarks/probe.py needs wrk: apt-get install -y wrk")
    if args.local:
        run_local(args)
    else:
        run_sandbox(args)


if __name__ == "__main__":
    main()
