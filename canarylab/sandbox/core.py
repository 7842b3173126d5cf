"""The local sandbox: a real Kubernetes control plane on loopback, nodes by kwok.

``Sandbox`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok as detached processes, remembers each by pid in ``state.json`` in its
state directory, and stops exactly those. Everything a sandbox writes (PKI,
kubeconfigs, etcd data, logs) lives in that one directory.

This module talks to the API server only to bootstrap (readiness, nodes); it is
not a Kubernetes client for the rest of canarylab.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from canarylab.errors import SandboxError
from canarylab.sandbox import build, commands, gateway, pki, procs, prometheus, traefik
from canarylab.sandbox.commands import Component, LaunchContext
from canarylab.sandbox.kubeconfig import write_kubeconfig

CONTEXT = "canarylab-sandbox"
CONTROL_PLANE = commands.NAMES
"""The control plane's components in start order (``commands.CONTROL_PLANE``)."""


def default_state_dir() -> Path:
    """``$CANARYLAB_SANDBOX_DIR``, or ``$XDG_STATE_HOME/canarylab/sandbox``."""
    env = os.environ.get("CANARYLAB_SANDBOX_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "canarylab" / "sandbox"


@dataclass
class SandboxState:
    """What ``state.json`` holds between commands."""

    ports: dict[str, int] = field(default_factory=dict)
    processes: list[procs.ProcessRecord] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    """Facts added by later layers (the data plane's gateway URL, for example)."""

    @classmethod
    def load(cls, path: Path) -> SandboxState:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            return cls(
                ports={k: int(v) for k, v in raw.get("ports", {}).items()},
                processes=[procs.ProcessRecord(**p) for p in raw.get("processes", [])],
                extras=dict(raw.get("extras", {})),
            )
        except (ValueError, TypeError, KeyError) as err:
            raise SandboxError(
                f"the sandbox state file {path} is unreadable ({err}). Stop any sandbox "
                f"processes by hand and run `canarylab sandbox down --purge` to start clean."
            ) from err

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        data = {
            "ports": self.ports,
            "processes": [asdict(p) for p in self.processes],
            "extras": self.extras,
        }
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)


class Sandbox:
    """A local Kubernetes control plane; ``with Sandbox() as sb:`` brings it up.

    Used as a context manager it stops on exit only what it started itself: a
    sandbox that was already running (``make demo`` left up, say) stays up.
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        nodes: int = 2,
        pod_ready_delay_ms: int = 1000,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.nodes = nodes
        self.pod_ready_delay_ms = pod_ready_delay_ms
        self._progress = progress or (lambda message: None)
        self._started_here = False

    # ----------------------------------------------------------------- paths
    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (``system:masters``); exists once the sandbox is up."""
        return self.state_dir / "kubeconfig"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def server(self) -> str:
        port = self.state().ports.get("apiserver")
        if not port:
            raise SandboxError(f"no sandbox has been started in {self.state_dir}")
        return f"https://127.0.0.1:{port}"

    def state(self) -> SandboxState:
        return SandboxState.load(self._state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._progress("waiting for another canarylab command on this sandbox…")
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- status
    def is_running(self) -> bool:
        """True when every recorded control-plane process is alive."""
        state = self.state()
        names = {p.name for p in state.processes if p.alive()}
        return all(name in names for name in CONTROL_PLANE)

    def status(self) -> dict[str, Any]:
        """The sandbox as one JSON-ready object (``canarylab sandbox status --json``)."""
        state = self.state()
        port = state.ports.get("apiserver")
        components = [
            {"name": p.name, "pid": p.pid, "alive": p.alive(), "log": p.log}
            for p in state.processes
        ]
        return {
            "state_dir": str(self.state_dir),
            "running": bool(components) and all(c["alive"] for c in components),
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
            "server": f"https://127.0.0.1:{port}" if port else None,
            "components": components,
            "gateway": state.extras.get("gateway"),
            "gateway_api": state.extras.get("gateway_api"),
            "prometheus": state.extras.get("prometheus"),
            "controller_metrics_port": state.ports.get("controller-metrics"),
            "versions": build.pinned_versions(),
        }

    # -------------------------------------------------------------------- up
    def up(self) -> Sandbox:
        """Start the sandbox unless it is already running; wait until nodes are Ready."""
        with self._locked():
            state = self.state()
            alive = [p for p in state.processes if p.alive()]
            dead = [p for p in state.processes if not p.alive()]
            if state.processes and not dead:
                self._progress(f"sandbox already running at {self.server}")
                self._wait_api(state, timeout=30)
                return self
            if alive:
                names = ", ".join(p.name for p in dead)
                tails = "\n".join(
                    f"--- {p.name} ({p.log}):\n{procs.log_tail(p.log, 8)}" for p in dead
                )
                raise SandboxError(
                    f"the sandbox in {self.state_dir} is only partly running: {names} exited.\n"
                    f"{tails}\nRun `canarylab sandbox down` and then `canarylab sandbox up`."
                )
            if dead:
                self._progress(
                    "found the state of a sandbox whose processes are gone; restarting it"
                )
            self._start(state)
            self._started_here = True
            return self

    def _start(self, state: SandboxState) -> None:
        binaries = build.ensure_built(progress=build.ProgressLines(self._progress))
        pki.ensure_pki(self.pki_dir)
        state.processes = []
        state.ports = self._choose_ports(state.ports)
        state.save(self._state_file)
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        for stem in ("admin", "controller-manager", "scheduler", "kwok"):
            write_kubeconfig(
                self.state_dir / "kubeconfigs" / f"{stem}.kubeconfig",
                server,
                self.pki_dir,
                stem,
                CONTEXT,
            )
        started = time.monotonic()
        try:
            for component in commands.CONTROL_PLANE:
                record = self._launch(component, state, binaries)
                state.processes.append(record)
                state.save(self._state_file)
                self._progress(f"started {component.name} (pid {record.pid})")
                self._wait_ready(component, record, state)
            self._ensure_nodes(state)
            self._wait_nodes_ready(state, timeout=60)
            self._start_dataplane(state, server)
        except BaseException:
            self._stop_all(state)
            raise
        # Publish the admin kubeconfig last, so its presence means "usable".
        shutil.copyfile(self.state_dir / "kubeconfigs" / "admin.kubeconfig", self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        self._progress(f"sandbox up in {time.monotonic() - started:.1f}s at {server}")

    def _start_dataplane(self, state: SandboxState, server: str) -> None:
        """HAProxy and the data-plane process (``canarylab.dataplane``), after the API."""

        def record(process: procs.ProcessRecord) -> None:
            state.processes.append(process)
            state.save(self._state_file)

        plane = gateway.start(
            self.state_dir,
            self.log_dir,
            server,
            self.pki_dir,
            state.ports["gateway"],
            self._progress,
            record,
            metrics_port=state.ports["gateway-metrics"],
        )
        state.extras["gateway"] = plane.gateway
        state.save(self._state_file)
        self._start_prometheus(state)
        if traefik.wanted():
            self._start_traefik(state, server)

    def _start_prometheus(self, state: SandboxState) -> None:
        """Prometheus scraping the gateway and the controller (``status()["prometheus"]``)."""
        port = state.ports["prometheus"]
        record = prometheus.start(
            self.state_dir,
            self.log_dir,
            port,
            state.ports["gateway-metrics"],
            state.ports["controller-metrics"],
            self._progress,
        )
        if record is not None:
            state.processes.append(record)
            state.extras["prometheus"] = f"http://127.0.0.1:{port}"
            state.save(self._state_file)

    def _start_traefik(self, state: SandboxState, server: str) -> None:
        """The real Gateway API gateway (``CANARYLAB_SANDBOX_GATEWAY=traefik``), built on
        first use; its URL is ``status()["gateway_api"]``."""
        kubeconfig = self.state_dir / "kubeconfigs" / "admin.kubeconfig"
        port = state.ports["gateway-api"]
        record = traefik.start(
            server=server,
            pki_dir=self.pki_dir,
            kubeconfig=kubeconfig,
            log_dir=self.log_dir,
            port=port,
            progress=self._progress,
        )
        state.processes.append(record)
        state.extras["gateway_api"] = f"http://127.0.0.1:{port}"
        state.save(self._state_file)

    def _choose_ports(self, previous: dict[str, int]) -> dict[str, int]:
        """Reuse last run's ports where free (kubeconfigs stay valid), else pick new ones."""
        ports: dict[str, int] = {}
        pinned = os.environ.get("CANARYLAB_SANDBOX_PORT")
        for name in (
            "apiserver",
            "etcd",
            "etcd-peer",
            "kwok",
            "gateway",
            "gateway-api",
            "gateway-metrics",
            "prometheus",
            "controller-metrics",
        ):
            if name == "apiserver" and pinned:
                port = int(pinned)
                if procs.port_in_use(port):
                    raise SandboxError(
                        f"port {port} (CANARYLAB_SANDBOX_PORT) is already in use on 127.0.0.1; "
                        "free it or choose another port."
                    )
            elif previous.get(name) and not procs.port_in_use(previous[name]):
                port = previous[name]
            else:
                port = procs.free_port()
            while port in ports.values():
                port = procs.free_port()
            ports[name] = port
        return ports

    def _context(self, binaries: dict[str, Path], ports: dict[str, int]) -> LaunchContext:
        return LaunchContext(self.state_dir, self.pki_dir, binaries, ports, self.pod_ready_delay_ms)

    def _launch(
        self, component: Component, state: SandboxState, binaries: dict[str, Path]
    ) -> procs.ProcessRecord:
        """Start one control-plane component (``_wait_ready`` waits for it)."""
        argv = component.argv(self._context(binaries, state.ports))
        return procs.spawn(component.name, argv, self.log_dir / f"{component.name}.log")

    def _wait_ready(
        self, component: Component, record: procs.ProcessRecord, state: SandboxState
    ) -> None:
        if component.ready == "port":
            self._wait_port(record, state.ports[component.name], timeout=30)
        elif component.ready == "api":
            self._wait_api(state, timeout=90)

    # ------------------------------------------------------------ bootstrap
    def _client(self, state: SandboxState) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return httpx.Client(
            base_url=f"https://127.0.0.1:{state.ports['apiserver']}", verify=ctx, timeout=5
        )

    def _check_alive(self, state: SandboxState) -> None:
        for record in state.processes:
            if not record.alive():
                raise SandboxError(
                    f"sandbox component {record.name} exited during start-up. "
                    f"Last lines of {record.log}:\n{procs.log_tail(record.log)}"
                )

    def _wait_until(
        self, state: SandboxState, what: str, timeout: float, check: Callable[[], bool]
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(state)
            if check():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"  {p.name}: {p.log}" for p in state.processes)
                raise SandboxError(
                    f"timed out after {timeout:.0f}s waiting for {what}. Logs:\n{logs}"
                )
            time.sleep(0.1)

    def _wait_port(self, record: procs.ProcessRecord, port: int, timeout: float) -> None:
        state = SandboxState(processes=[record])
        self._wait_until(
            state,
            f"{record.name} to listen on port {port}",
            timeout,
            lambda: procs.port_in_use(port),
        )

    def _wait_api(self, state: SandboxState, timeout: float) -> None:
        with self._client(state) as client:

            def ready() -> bool:
                try:
                    return client.get("/readyz").status_code == 200
                except httpx.HTTPError:
                    return False

            self._wait_until(state, "kube-apiserver /readyz", timeout, ready)

    def _ensure_nodes(self, state: SandboxState) -> None:
        with self._client(state) as client:
            for index in range(self.nodes):
                name = f"canarylab-node-{index}"
                node = {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            "kwok.x-k8s.io/node": "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                    },
                }
                response = client.post("/api/v1/nodes", json=node)
                if response.status_code not in (201, 409):
                    raise SandboxError(f"could not create node {name}: {response.text}")

    def _wait_nodes_ready(self, state: SandboxState, timeout: float) -> None:
        with self._client(state) as client:

            def ready() -> bool:
                try:
                    items = client.get("/api/v1/nodes").json().get("items", [])
                except (httpx.HTTPError, ValueError):
                    return False
                ready_nodes = [
                    n
                    for n in items
                    if any(
                        c.get("type") == "Ready" and c.get("status") == "True"
                        for c in n.get("status", {}).get("conditions", [])
                    )
                ]
                return len(ready_nodes) >= self.nodes

            self._wait_until(state, f"{self.nodes} kwok nodes to be Ready", timeout, ready)

    # ------------------------------------------------------------------ down
    def down(self, purge: bool = False) -> None:
        """Stop every process this sandbox recorded; with ``purge``, delete its state."""
        with self._locked():
            state = self.state()
            self._stop_all(state)
            self.kubeconfig.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def restart(
        self, component: str, *, pause: float = 0.0, grace: float = 10.0
    ) -> procs.ProcessRecord:
        """Stop one control-plane component and start it again on the same ports.

        Meant for fault injection: clients see their connections and watches drop and
        come back. ``grace`` is how long SIGTERM may take before SIGKILL (0: a crash);
        ``pause`` keeps the component stopped that many seconds. Returns once the API
        server answers ``/readyz`` again.
        """
        if component not in CONTROL_PLANE:
            raise SandboxError(
                f"cannot restart {component!r}: choose one of {', '.join(CONTROL_PLANE)}"
            )
        with self._locked():
            state = self.state()
            at = next((i for i, p in enumerate(state.processes) if p.name == component), None)
            if at is None:
                raise SandboxError(
                    f"no {component} runs in the sandbox at {self.state_dir}; "
                    "run `canarylab sandbox up` first"
                )
            procs.stop(state.processes[at], grace=grace)
            time.sleep(pause)
            row = commands.component(component)
            record = self._launch(row, state, build.ensure_built())
            state.processes[at] = record
            state.save(self._state_file)
            self._wait_ready(row, record, state)
            self._wait_api(state, timeout=90)
            return record

    def _stop_all(self, state: SandboxState) -> None:
        for record in reversed(state.processes):
            procs.stop(record)
        state.processes = []
        state.extras.pop("gateway", None)
        state.extras.pop("gateway_api", None)
        state.extras.pop("prometheus", None)
        if self._state_file.parent.exists():
            state.save(self._state_file)

    # -------------------------------------------------------- context manager
    def __enter__(self) -> Sandbox:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.down()
