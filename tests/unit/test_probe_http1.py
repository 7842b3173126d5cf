"""The probe's HTTP/1.1 client against a real TCP server on 127.0.0.1.

Each framing HTTP/1.1 allows must complete when its last byte arrives, whole or one
byte per segment. The probe's timeout is set to 30 s: a response the parser cannot
frame would show as a ``timeout`` (the bug these tests guard against), never as a
slow pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from canarylab.probe import Probe, ProbeSettings
from canarylab.probe.http1 import Connection, HTTPParseError, build_request

VERSION = b"X-Canarylab-Version: v2\r\n"
TIMEOUT = 30.0


@dataclass
class ScriptedServer:
    """Answers every request with ``response``; closes after it when ``close``."""

    response: bytes
    split: bool = False
    """Send one byte per write (each its own TCP segment: asyncio sets TCP_NODELAY)."""
    close: bool = False
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                if self.split:
                    for i in range(len(self.response)):
                        writer.write(self.response[i : i + 1])
                        await writer.drain()
                        await asyncio.sleep(0.0005)  # pacing, so segments stay apart
                else:
                    writer.write(self.response)
                    await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@contextlib.asynccontextmanager
async def serving(response: bytes, **options: bool) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(response, **options)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in server.handlers:
            task.cancel()
        await asyncio.gather(*server.handlers, return_exceptions=True)


async def run_probe(url: str, requests: int, body_regex: str | None = None) -> Probe:
    settings = ProbeSettings(
        url=url, max_requests=requests, connections=1, timeout=TIMEOUT, body_regex=body_regex
    )
    probe = Probe(settings)
    await probe.run()
    return probe


def chunked(coding: bytes, body: bytes = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + VERSION + coding + b"\r\n\r\n" + body


# Keep-alive framings: several requests must share one connection.
KEPT_ALIVE = {
    "content-length": b"HTTP/1.1 200 OK\r\n" + VERSION + b"Content-Length: 5\r\n\r\nhello",
    "chunked": chunked(b"Transfer-Encoding: chunked"),
    "chunked, no space": chunked(b"Transfer-Encoding:chunked"),
    "gzip, chunked": chunked(b"Transfer-Encoding: gzip, chunked"),
    "odd whitespace": chunked(b"Transfer-Encoding: gzip ,\t chunked  "),
    "upper case": chunked(b"TRANSFER-ENCODING: CHUNKED"),
    "two header lines": chunked(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"),
    "folded list": chunked(b"Transfer-Encoding: gzip,\r\n chunked"),
    "folded, empty first line": chunked(b"Transfer-Encoding:\r\n\tchunked"),
    "chunk extensions": chunked(
        b"Transfer-Encoding: chunked",
        b'3;name=value;q="a; b"\r\nabc\r\n2 ;x\r\nde\r\n0;last\r\n\r\n',
    ),
    "trailers": chunked(
        b"Transfer-Encoding: chunked", b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n"
    ),
    "interim 100 and 103": b"HTTP/1.1 100 Continue\r\n\r\n"
    + b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    + b"HTTP/1.1 200 OK\r\n"
    + VERSION
    + b"Content-Length: 2\r\n\r\nok",
    "204": b"HTTP/1.1 204 No Content\r\n" + VERSION + b"\r\n",
}


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", list(KEPT_ALIVE))
async def test_kept_alive_framings_complete_on_one_connection(name, split):
    async with serving(KEPT_ALIVE[name], split=split) as server:
        probe = await run_probe(server.url, requests=3)
    assert probe.result is not None
    summary = probe.result.summary()
    assert summary["failed"] == {"http_errors": 0, "timeouts": 0, "conn_errors": 0}
    assert summary["by_version"] == {"v2": 3}
    assert set(probe.result.requests["status"]) == {204 if name == "204" else 200}
    assert len(server.requests) == 3
    assert server.connections == 1  # kept alive: the parser knew where each answer ended


async def test_304_with_a_content_length_has_no_body():
    response = b"HTTP/1.1 304 Not Modified\r\n" + VERSION + b"Content-Length: 120\r\n\r\n"
    async with serving(response) as server:
        probe = await run_probe(server.url, requests=3)
    assert probe.result is not None
    requests = probe.result.requests
    assert list(requests["status"]) == [304] * 3
    assert list(requests["error"]) == ["http_error"] * 3  # non-2xx, answered: not a timeout
    assert list(requests["version"]) == ["v2"] * 3
    assert server.connections == 1


CLOSE_DELIMITED = {
    "no length": b"HTTP/1.1 200 OK\r\n" + VERSION + b"\r\nhello v2 until close",
    "coding not chunked": b"HTTP/1.1 200 OK\r\n"
    + VERSION
    + b"Transfer-Encoding: gzip\r\n\r\nhello v2 until close",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\n" + VERSION + b"\r\nhello v2 until close",
}


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
@pytest.mark.parametrize("name", list(CLOSE_DELIMITED))
async def test_bodies_delimited_by_the_close_are_read_whole(name, split):
    async with serving(CLOSE_DELIMITED[name], split=split, close=True) as server:
        probe = await run_probe(server.url, requests=3, body_regex=r"hello (\w+) until close")
    assert probe.result is not None
    summary = probe.result.summary()
    assert summary["failed_total"] == 0
    assert summary["by_version"] == {"v2": 3}  # the regex saw the whole body
    assert server.connections == 3  # never reused after a close-delimited body


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
async def test_connection_close_with_a_length_completes_and_reconnects(split):
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + VERSION + b"Content-Length: 2\r\n\r\nok"
    )
    async with serving(response, split=split, close=True) as server:
        probe = await run_probe(server.url, requests=3)
    assert probe.result is not None
    assert probe.result.summary()["by_version"] == {"v2": 3}
    assert probe.result.failed == 0
    assert server.connections == 3


@pytest.mark.parametrize("split", [False, True], ids=["whole", "byte-by-byte"])
async def test_body_regex_reads_a_chunked_body_in_pieces(split):
    body = b"6\r\nhello \r\n1;ext\r\nH\r\n5\r\nongbo\r\n0\r\n\r\n"
    async with serving(chunked(b"Transfer-Encoding: gzip, chunked", body), split=split) as server:
        probe = await run_probe(server.url, requests=2, body_regex=r"hello (\w+)")
    assert probe.result is not None
    assert probe.result.summary()["by_version"] == {"Hongbo": 2}
    assert server.connections == 1


async def test_folded_version_header_reads_as_one_value():
    response = (
        b"HTTP/1.1 200 OK\r\nX-Canarylab-Version: v2\r\n  canary\r\nContent-Length: 0\r\n\r\n"
    )
    async with serving(response) as server:
        probe = await run_probe(server.url, requests=1)
    assert probe.result is not None
    assert probe.result.summary()["by_version"] == {"v2 canary": 1}


async def test_head_answers_have_no_body_whatever_their_length_says():
    response = b"HTTP/1.1 200 OK\r\n" + VERSION + b"Content-Length: 1000\r\n\r\n"
    async with serving(response) as server:
        host, port, head = build_request(server.url, (), method="HEAD")
        conn = await Connection.open(host, port, b"x-canarylab-version")
        try:
            for _ in range(3):
                answer = await asyncio.wait_for(conn.request(head), TIMEOUT)
                assert (answer.status, answer.version, answer.body) == (200, "v2", b"")
                assert conn.reusable
        finally:
            conn.close()
    assert server.connections == 1


@pytest.mark.parametrize(
    "response",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not http", "length and chunked", "bad chunk size"],
)
async def test_malformed_answers_are_conn_errors_at_once(response):
    async with serving(response) as server:
        probe = await run_probe(server.url, requests=2)
    assert probe.result is not None
    assert list(probe.result.requests["error"]) == ["conn_error"] * 2
    assert list(probe.result.requests["status"]) == [0, 0]


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["short body", "unfinished chunk", "unfinished head"],
)
async def test_a_close_before_the_answer_ends_is_a_conn_error(response):
    async with serving(response, close=True) as server:
        probe = await run_probe(server.url, requests=2)
    assert probe.result is not None
    assert list(probe.result.requests["error"]) == ["conn_error"] * 2


async def test_parse_error_fails_the_request_without_waiting():
    async with serving(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n") as server:
        host, port, get = build_request(server.url, ())
        conn = await Connection.open(host, port, b"x-canarylab-version")
        with pytest.raises(HTTPParseError, match=r"not HTTP/1\.1 the probe reads"):
            await asyncio.wait_for(conn.request(get), TIMEOUT)
        assert conn.closed


def test_request_bytes_carry_host_path_and_headers():
    host, port, data = build_request("http://127.0.0.1:8080/a/b?x=1", (("X-Canary", "yes"),))
    assert (host, port) == ("127.0.0.1", 8080)
    assert data.startswith(b"GET /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Canary: yes\r\n")
    assert data.endswith(b"\r\n\r\n")
    _, _, overridden = build_request("http://gw/", (("Host", "web.demo.sandbox"),))
    assert b"Host: gw" not in overridden
    assert b"Host: web.demo.sandbox" in overridden


def test_only_plain_http_get_or_head():
    with pytest.raises(ValueError, match="plain http"):
        build_request("https://example.org/", ())
    with pytest.raises(ValueError, match="GET or HEAD"):
        build_request("http://example.org/", (), method="POST")
