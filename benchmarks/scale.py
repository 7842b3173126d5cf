"""The controller at cluster scale: ``python benchmarks/scale.py [--canaries 300] [--namespaces 30]``.

Starts a private sandbox (kwok's default 1 s simulated pod start), installs the real
APISIX CRDs and the CanaryDeployment CRD, spreads N parents across namespaces, each
with its own Service and ApisixRoute, runs ``canarylab controller`` (all namespaces)
as a subprocess, and prints:

- the floor: the time the same sandbox takes to ready N plain parent Deployments;
- the time until all N CanaryDeployments, created at once, are Serving, and its ratio to
  that floor (target ≤ 1.25x);
- the controller's CPU per canary from create to Serving (target ≤ 20 ms), beside the
  API server's CPU for the same interval;
- the time for a weight change applied to all N to be on every route, after the last
  patch was sent (target ≤ 3 s);
- resuming after a restart with N existing resources: the controller is SIGKILLed, all
  N weights are changed while it is down, and it is started again; the time until its
  liveness endpoint answers and until every route carries the new weight (target ≤ 10 s
  after liveness);
- the controller's peak RSS (VmHWM; target ≤ 150 MiB at 300, ≤ 250 MiB at 1,000).

Every figure is printed with the controller's and the API server's CPU seconds over
its interval and the machine's load average (``uptime``) when it was taken.

``--profile DIR`` attaches py-spy (``pip install py-spy``) to the controller while it
starts and while the N canaries go to Serving, writes the collapsed stacks there and
prints the functions with the most samples, to show where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client, config, watch  # noqa: E402

from benchmarks.controller import AR, GROUP, PLURAL, VERSION, canary, cpu_seconds, objects  # noqa: E402
from benchmarks.controller import peak_rss_mib as vm_hwm_mib  # noqa: E402
from canarylab.sandbox import Sandbox, procs  # noqa: E402
from tests.helpers import install_crds, wait_for  # noqa: E402

SHARED = Path(os.environ.get("CANARYLAB_SHARED_CRDS", REPO.parent / "shared" / "crds"))
FLOOR_RATIO_TARGET = 1.25
CPU_PER_CANARY_TARGET_MS = 20.0
SHIFT_TARGET_S = 3.0
RESUME_TARGET_S = 10.0


def rss_target_mib(canaries: int) -> float:
    return 150.0 if canaries <= 300 else 250.0


def load() -> str:
    """The machine's load average, as ``uptime`` prints it."""
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class CpuMeter:
    """CPU seconds of the controller and the API server since ``reset``."""

    def __init__(self, controller: Controller, apiserver: int) -> None:
        self.controller, self.apiserver = controller, apiserver
        self.reset()

    def _read(self) -> tuple[float, float]:
        ours = 0.0
        with contextlib.suppress(OSError, AssertionError):
            ours = cpu_seconds(self.controller.pid())
        return ours, cpu_seconds(self.apiserver)

    def reset(self) -> None:
        self.start = self._read()

    def since(self) -> tuple[float, float]:
        now = self._read()
        return now[0] - self.start[0], now[1] - self.start[1]

    def line(self) -> str:
        ours, theirs = self.since()
        return f"[controller CPU {ours:.1f} s, API server CPU {theirs:.1f} s, {load()}]"


class Controller:
    """``canarylab controller -A`` as a subprocess, optionally under py-spy."""

    def __init__(self, kubeconfig: Path, log: Path, profile: Path | None) -> None:
        self.kubeconfig, self.log, self.profile = kubeconfig, log, profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = procs.free_port()
        self.peak_mib = 0.0
        self.spy: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; seconds until its liveness endpoint answers."""
        argv = [
            str(Path(sys.executable).parent / "canarylab"),
            "controller",
            "--kubeconfig",
            str(self.kubeconfig),
            "--all-namespaces",
            "--liveness",
            f"http://127.0.0.1:{self.port}/healthz",
        ]
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.profile_start(f"start-{time.strftime('%H%M%S')}")

        def alive() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"the controller exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_for(alive, 300, interval=0.05, what="the controller's liveness endpoint")
        self.profile_stop()
        return time.perf_counter() - started

    def profile_start(self, phase: str) -> None:
        """With ``--profile``: attach py-spy to the controller until ``profile_stop``."""
        if self.profile is None or self.proc is None:
            return
        out = self.profile / f"{phase}.txt"
        self.spy = subprocess.Popen(
            [
                *py_spy(),
                "record",
                *("--pid", str(self.proc.pid), "--threads", "--rate", "25", "--nonblocking"),
                *("--format", "raw", "-o", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def profile_stop(self) -> None:
        spy, self.spy = self.spy, None
        if spy is not None and spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample_rss(self) -> None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            self.peak_mib = max(self.peak_mib, vm_hwm_mib(self.pid()))

    def kill(self) -> None:
        self.sample_rss()
        os.kill(self.pid(), signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.sample_rss()
        os.kill(self.pid(), signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def py_spy() -> list[str]:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    return [found]


def top_frames(collapsed: Path, count: int = 20) -> list[str]:
    """The functions with the most samples (own and total) in a py-spy ``raw`` profile."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, hits = line.rpartition(" ")
        if not stack or not hits.isdigit():
            continue
        frames = stack.split(";")
        samples += int(hits)
        own[frames[-1]] = own.get(frames[-1], 0) + int(hits)
        for frame in set(frames[1:]):  # the first frame is the thread
            total[frame] = total.get(frame, 0) + int(hits)
    ranked = sorted(total.items(), key=lambda kv: -kv[1])[:count]
    return [
        f"{100 * hits / max(samples, 1):5.1f}% total {100 * own.get(f, 0) / max(samples, 1):5.1f}% own  {f}"
        for f, hits in ranked
    ]


def namespace_of(i: int, namespaces: int) -> str:
    return f"scale-{i % namespaces:03d}"


def canary_weights(custom: Any) -> dict[tuple[str, str], int | None]:
    """Canary backend weight of every ApisixRoute in the cluster, by (namespace, name)."""
    out: dict[tuple[str, str], int | None] = {}
    for route in custom.list_cluster_custom_object(*AR)["items"]:
        meta = route["metadata"]
        backends = route["spec"]["http"][0]["backends"]
        weight = next(
            (b.get("weight") for b in backends if b["serviceName"].endswith("-canary")), None
        )
        out[(meta["namespace"], meta["name"])] = weight
    return out


class RouteWatch:
    """When each ApisixRoute first carried each canary weight, seen through a watch.

    Polling a list every 0.25 s blurs the figures by that much and loads the API server;
    a watch gives the moment each route changed, so the weight-change figures are a
    distribution per canary (patch sent → route written), not one deadline.
    """

    def __init__(self, custom: Any) -> None:
        self.custom = custom
        self.first: dict[tuple[str, str, int | None], float] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="route-watch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        version = None
        while not self.stopped.is_set():
            try:
                stream = watch.Watch().stream(
                    self.custom.list_cluster_custom_object,
                    *AR,
                    resource_version=version,
                    timeout_seconds=60,
                )
                for event in stream:
                    route = event["object"]
                    meta = route["metadata"]
                    version = meta.get("resourceVersion")
                    backends = route["spec"]["http"][0]["backends"]
                    weight = next(
                        (b.get("weight") for b in backends if b["serviceName"].endswith("-canary")),
                        None,
                    )
                    key = (meta["namespace"], meta["name"], weight)
                    with self.lock:
                        self.first.setdefault(key, time.perf_counter())
            except Exception:  # an expired version or a dropped stream: list again
                version = None
                time.sleep(0.2)

    def when(self, weight: int, names: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        with self.lock:
            return {
                (ns, n): self.first[(ns, n, weight)]
                for ns, n in names
                if (ns, n, weight) in self.first
            }

    def wait(
        self, weight: int, names: list[tuple[str, str]], timeout: float
    ) -> dict[tuple[str, str], float]:
        wait_for(
            lambda: len(self.when(weight, names)) >= len(names),
            timeout,
            interval=0.1,
            what=f"weight {weight} on every route",
        )
        return self.when(weight, names)


def spread(latencies: list[float]) -> str:
    """p50/p99/max of per-canary latencies, in seconds."""
    ordered = sorted(latencies)
    if not ordered:
        return "no samples"
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {ordered[-1]:.2f} s"


def timed(what: str, check: Callable[[], bool], timeout: float) -> float:
    started = time.perf_counter()
    wait_for(check, timeout, interval=0.25, what=what)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--canaries", type=int, default=300)
    parser.add_argument("--namespaces", type=int, default=30)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    parser.add_argument("--keep", type=Path, default=None, help="keep the sandbox here")
    args = parser.parse_args()
    if not (SHARED / "apisix").is_dir():
        sys.exit(f"the real APISIX CRDs are not at {SHARED}; set CANARYLAB_SHARED_CRDS")
    n = args.canaries
    names = [(namespace_of(i, args.namespaces), f"app{i:03d}") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        state = args.keep or Path(tmp) / "sb"
        sb = Sandbox(state)
        sb.up()
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        controller = Controller(sb.kubeconfig, Path(tmp) / "controller.log", args.profile)
        try:
            api = config.new_client_from_config(config_file=str(sb.kubeconfig))
            api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 32
            install_crds(
                api,
                [
                    *sorted((SHARED / "apisix").glob("*.yaml")),
                    REPO / "deploy" / "canarydeployments.canarylab.io.yaml",
                ],
            )
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            for ns in sorted({ns for ns, _ in names}):
                core.create_namespace({"metadata": {"name": ns}})

            def parent(item: tuple[str, str]) -> None:
                ns, name = item
                deploy, svc, route = objects(name)
                apps.create_namespaced_deployment(ns, deploy)
                core.create_namespaced_service(ns, svc)
                custom.create_namespaced_custom_object(*AR[:2], ns, AR[2], route)

            apiserver = next(p.pid for p in sb.state().processes if p.name == "kube-apiserver")
            print(f"start: {load()}")
            started = time.perf_counter()
            api_cpu0 = cpu_seconds(apiserver)
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(parent, names))
            wait_for(
                lambda: (
                    sum(
                        (d.status.ready_replicas or 0) >= 1
                        for d in apps.list_deployment_for_all_namespaces().items
                    )
                    >= n
                ),
                600,
                interval=1,
                what="every parent ready",
            )
            floor = time.perf_counter() - started
            print(
                f"floor: {n} plain parents in {args.namespaces} namespaces ready in {floor:.1f} s "
                f"[API server CPU {cpu_seconds(apiserver) - api_cpu0:.1f} s, {load()}]"
            )
            api_boot = cpu_seconds(apiserver)
            boot = controller.start()
            meter = CpuMeter(controller, apiserver)
            print(
                f"controller up (liveness) in {boot:.1f} s with no canaries [controller CPU "
                f"{cpu_seconds(controller.pid()):.1f} s, API server CPU "
                f"{cpu_seconds(apiserver) - api_boot:.1f} s, {load()}]"
            )

            def phases() -> list[str]:
                items = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
                return [str((i.get("status") or {}).get("phase", "")) for i in items]

            def create(item: tuple[str, str]) -> None:
                ns, name = item
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, canary(name, 20))

            meter.reset()
            t0 = time.perf_counter()
            controller.profile_start("create-to-serving")
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(create, names))
            created = time.perf_counter() - t0
            serving = (
                timed(
                    "every canary Serving",
                    lambda: sum(p == "Serving" for p in phases()) >= n,
                    600,
                )
                + created
            )
            serving_cpu, _ = meter.since()
            serving_line = meter.line()
            weighted = (
                timed(
                    "weight 20 on every route",
                    lambda: list(canary_weights(custom).values()).count(20) >= n,
                    600,
                )
                + serving
            )
            controller.profile_stop()
            controller.sample_rss()
            ratio = serving / floor
            per_canary_ms = 1000 * serving_cpu / n
            print(
                f"{n} canaries created at once (in {created:.1f} s): all Serving after "
                f"{serving:.1f} s = {ratio:.2f}x the floor (target ≤ {FLOOR_RATIO_TARGET}x), "
                f"controller CPU {per_canary_ms:.1f} ms per canary (target ≤ "
                f"{CPU_PER_CANARY_TARGET_MS:.0f}) {serving_line}; weight 20 on every "
                f"route after {weighted:.1f} s"
            )

            def set_weight(weight: int) -> Callable[[tuple[str, str]], None]:
                def patch(item: tuple[str, str]) -> None:
                    ns, name = item
                    custom.patch_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL, name, {"spec": {"weight": weight}}
                    )

                return patch

            routes = RouteWatch(custom)
            sent: dict[tuple[str, str], float] = {}

            def patch_timed(item: tuple[str, str]) -> None:
                set_weight(50)(item)
                sent[item] = time.perf_counter()

            meter.reset()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(patch_timed, names))
            last_patch = max(sent.values())
            patched = last_patch - t0
            seen = routes.wait(50, names, 600)
            after_last = max(seen.values()) - last_patch
            controller.sample_rss()
            print(
                f"weight 20 → 50 on all {n} (patches sent in {patched:.1f} s): on every route "
                f"{after_last:.1f} s after the last patch (target ≤ {SHIFT_TARGET_S:.0f} s), "
                f"{patched + after_last:.1f} s after the first; per canary, patch → route: "
                f"{spread([seen[k] - sent[k] for k in names])} {meter.line()}"
            )

            controller.kill()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(set_weight(70), names))
            restarted = time.perf_counter()
            alive = controller.start()
            live_at = time.perf_counter()
            meter.reset()
            seen = routes.wait(70, names, 600)
            resumed = max(seen.values()) - live_at
            first = min(seen.values()) - live_at
            resume_line = meter.line()
            controller.sample_rss()
            print(
                f"restart with {n} existing canaries: liveness after {alive:.1f} s, the change "
                f"made while it was down on the first route {first:.1f} s and on every route "
                f"{resumed:.1f} s after liveness (target ≤ {RESUME_TARGET_S:.0f} s; "
                f"{resumed + live_at - restarted:.1f} s after the start) {resume_line}"
            )
            routes.stopped.set()
            rss_target = rss_target_mib(n)
            print(
                f"controller peak RSS {controller.peak_mib:.0f} MiB (target ≤ {rss_target:.0f}) "
                f"[{load()}]"
            )
            missed = []
            if ratio > FLOOR_RATIO_TARGET:
                missed.append("Serving vs floor")
            if per_canary_ms > CPU_PER_CANARY_TARGET_MS:
                missed.append("CPU per canary")
            if after_last > SHIFT_TARGET_S:
                missed.append("weight change")
            if resumed > RESUME_TARGET_S:
                missed.append("restart")
            if controller.peak_mib > rss_target:
                missed.append("RSS")
            print("targets: " + (f"MISSED {', '.join(missed)}" if missed else "met"))
        finally:
            controller.stop()
            if args.profile is not None:
                for raw in sorted(args.profile.glob("*.txt")):
                    print(f"py-spy {raw}: where the controller's samples were")
                    for line in top_frames(raw):
                        print(f"  {line}")
            if args.keep is None:
                sb.down()


if __name__ == "__main__":
    main()
