"""Applying a ``GatewayPlan`` to a running HAProxy: runtime API first, reload last.

Weight changes and added or removed servers go through HAProxy's runtime API (the
admin stats socket): no reload, no dropped connection. A removed server is first put
in maintenance, so it takes no new request while its in-flight ones finish, and is
deleted once HAProxy holds no connection to it. Only a change of structure (a new or
removed rule, a changed match) writes a new configuration, checks it with
``haproxy -c`` and reloads the master-worker HAProxy through its master socket.

This module must never decide what the plan is (see ``haproxy.plan``) and never stop
HAProxy: the sandbox owns that process.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from canarylab.dataplane.haproxy import CHECK, GatewayPlan, Server, render

log = logging.getLogger("canarylab.dataplane.runtime")


class GatewayError(RuntimeError):
    """HAProxy refused a configuration or a runtime command."""


async def socket_command(path: Path, command: str, limit: float = 5.0) -> str:
    """Send one command to an HAProxy CLI socket and return its whole answer."""
    async with asyncio.timeout(limit):
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
    return data.decode(errors="replace")


async def worker_pid(admin_socket: Path) -> int | None:
    """The current worker's pid, or None while HAProxy does not answer."""
    try:
        info = await socket_command(admin_socket, "show info", limit=1.0)
    except (OSError, TimeoutError):
        return None
    found = re.search(r"^Pid: (\d+)", info, re.MULTILINE)
    return int(found.group(1)) if found else None


@dataclass
class GatewayApplier:
    """Keeps one HAProxy in step with successive plans."""

    config_path: Path
    admin_socket: Path
    master_socket: Path
    port: int
    haproxy_binary: str = "haproxy"
    metrics_port: int | None = None
    """HAProxy's Prometheus exporter port on 127.0.0.1 (``haproxy.metrics_frontend``)."""
    structure: str | None = None
    """The structure HAProxy runs now (None: unknown, reload on the next apply)."""
    servers: dict[str, dict[str, Server]] = field(default_factory=dict)
    draining: set[tuple[str, str]] = field(default_factory=set)
    """(backend, server) pairs in maintenance, waiting to be deleted."""
    reloads: int = 0

    async def apply(self, plan: GatewayPlan) -> None:
        text = render(plan, self.port, self.admin_socket, metrics_port=self.metrics_port)
        structure = render(
            plan, self.port, self.admin_socket, servers=False, metrics_port=self.metrics_port
        )
        if structure != self.structure:
            await self._reload(text)
            self.structure = structure
            self.servers = plan.weights()
            self.draining.clear()
            return
        self._write(text)
        await self._update_servers(plan.weights())
        await self._delete_drained()

    # ------------------------------------------------------------ runtime
    async def _cli(self, command: str) -> str:
        answer = (await socket_command(self.admin_socket, command)).strip()
        return answer

    async def _update_servers(self, desired: dict[str, dict[str, Server]]) -> None:
        for backend, servers in desired.items():
            current = self.servers.setdefault(backend, {})
            for name, server in servers.items():
                old = current.get(name)
                if old is None:
                    answer = await self._cli(
                        f"add server {backend}/{name} {server.address}:{server.port} "
                        f"weight {server.weight} {CHECK}"
                    )
                    if "registered" not in answer.lower():
                        raise GatewayError(f"add server {backend}/{name}: {answer}")
                    await self._cli(f"enable health {backend}/{name}")
                    await self._cli(f"enable server {backend}/{name}")
                elif (backend, name) in self.draining:
                    self.draining.discard((backend, name))
                    await self._cli(f"set server {backend}/{name} weight {server.weight}")
                    await self._cli(f"set server {backend}/{name} state ready")
                elif old.weight != server.weight:
                    answer = await self._cli(f"set server {backend}/{name} weight {server.weight}")
                    if answer:
                        raise GatewayError(f"set weight {backend}/{name}: {answer}")
                current[name] = server
            for name in list(current):
                if name not in servers and (backend, name) not in self.draining:
                    await self._cli(f"set server {backend}/{name} state maint")
                    self.draining.add((backend, name))

    async def _delete_drained(self) -> None:
        for backend, name in sorted(self.draining):
            answer = await self._cli(f"del server {backend}/{name}")
            if "deleted" in answer.lower():
                self.draining.discard((backend, name))
                self.servers.get(backend, {}).pop(name, None)
            # Otherwise HAProxy still holds a connection to it: try again next time.

    def drained(self, endpoint: tuple[str, int]) -> bool:
        """Whether no backend would still send a new request to ``endpoint``."""
        return not any(
            (server.address, server.port) == endpoint and (backend, name) not in self.draining
            for backend, servers in self.servers.items()
            for name, server in servers.items()
        )

    # ------------------------------------------------------------- reload
    def _write(self, text: str) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config_path)

    async def _reload(self, text: str) -> None:
        candidate = self.config_path.with_suffix(".candidate")
        candidate.write_text(text)
        check = await asyncio.create_subprocess_exec(
            self.haproxy_binary,
            "-c",
            "-q",
            "-f",
            str(candidate),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await check.communicate()
        if check.returncode != 0:
            raise GatewayError(
                f"HAProxy rejected the generated configuration ({candidate}):\n"
                + output.decode(errors="replace")
            )
        candidate.replace(self.config_path)
        before = await worker_pid(self.admin_socket)
        try:
            await socket_command(self.master_socket, "reload", limit=5.0)
        except (OSError, TimeoutError) as err:
            raise GatewayError(f"could not reach HAProxy's master socket: {err}") from err
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline:
            pid = await worker_pid(self.admin_socket)
            if pid is not None and pid != before:
                self.reloads += 1
                log.info("reloaded HAProxy (worker %s)", pid)
                return
            await asyncio.sleep(0.05)
        raise GatewayError("HAProxy did not start a new worker within 15 s after a reload")
