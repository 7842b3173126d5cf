"""The probe's timeouts: a request without a complete answer fails once its time is up.

The probe keeps no timer per request (``Probe._expire`` checks deadlines a few times per
timeout), so these tests pin down that a silent or half-answering server is still a
``timeout``, not earlier and not much later, and that the probe then opens a fresh
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from canarylab.probe import Probe, ProbeSettings

TIMEOUT = 0.3


@contextlib.asynccontextmanager
async def answering(head: bytes) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that sends ``head`` (maybe nothing) for each request, then stays silent."""
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await writer.drain()
            await reader.read()  # until the probe gives up and closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/", connections


@pytest.mark.parametrize(
    "head",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal", b"HTTP/1.1 200 OK\r\nConte"],
    ids=["silent", "short body", "half a head"],
)
async def test_an_unfinished_answer_is_a_timeout_after_the_timeout(head):
    async with answering(head) as (url, connections):
        settings = ProbeSettings(url=url, max_requests=3, connections=1, timeout=TIMEOUT)
        result = await Probe(settings).run()
    requests = result.requests
    assert list(requests["error"]) == ["timeout"] * 3
    # Not before the timeout; late by at most a tick (timeout / 10) plus a loaded machine.
    assert requests["latency_ms"].min() >= TIMEOUT * 1000 * 0.99
    assert requests["latency_ms"].max() < TIMEOUT * 1000 + 1500
    assert connections[0] == 3  # a timed-out connection is never reused


async def test_a_timeout_mid_run_leaves_other_connections_answering():
    slow_first = [True]
    response = b"HTTP/1.1 200 OK\r\nX-Canarylab-Version: v1\r\nContent-Length: 2\r\n\r\nok"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent, slow_first[0] = slow_first[0], False
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                if silent:
                    await reader.read()
                    return
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        settings = ProbeSettings(url=url, max_requests=200, connections=2, timeout=TIMEOUT)
        result = await Probe(settings).run()
    errors = result.requests["error"]
    assert (errors == "timeout").sum() == 1
    assert errors.isna().sum() == 199
