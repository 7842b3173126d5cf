"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, for probe throughput.

aiohttp's client spends most of a probe's CPU on machinery the probe does not need
(cookie jars, redirects, header multidicts). This client sends one pre-built GET
request per call on a kept-alive connection and parses only what the probe reads:
the status, one header, and the body (Content-Length, chunked, or until close).

Plain ``http://`` only; the probe uses aiohttp for ``https://``. This module must
never follow redirects, retry, or pool across hosts: one connection, one request at
a time.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HTTPParseError(ConnectionError):
    """The server's answer was not HTTP/1.x the client understands."""


def build_request(url: str, headers: tuple[tuple[str, str], ...]) -> tuple[str, int, bytes]:
    """(host, port, request bytes) for a keep-alive GET of ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the fast HTTP client takes plain http:// URLs, not {url!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    names = {name.lower() for name, _ in headers}
    lines = [f"GET {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {parts.netloc}")
    lines += [f"{name}: {value}" for name, value in headers]
    if "user-agent" not in names:
        lines.append("User-Agent: canarylab-probe")
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def header_value(head: bytes, name: bytes) -> str | None:
    """The value of header ``name`` (lower-case bytes) in a response head, else None."""
    lower = head.lower()
    start = lower.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


def _chunked_end(buf: bytearray, start: int) -> tuple[int, bytes] | None:
    """(end offset, body) of a complete chunked body starting at ``start``, else None."""
    body = bytearray()
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
        except ValueError:
            raise HTTPParseError("bad chunk size in a chunked response") from None
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", line_end)
            if buf[line_end : line_end + 4] == b"\r\n\r\n":
                return line_end + 4, bytes(body)
            if trailer_end < 0:
                return None
            return trailer_end + 4, bytes(body)
        chunk_start = line_end + 2
        if len(buf) < chunk_start + size + 2:
            return None
        body += buf[chunk_start : chunk_start + size]
        pos = chunk_start + size + 2


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``await request(data)`` → (status, head, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.closed = False
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                self._complete(eof=False)
            except HTTPParseError as err:
                self.waiter.set_exception(err)
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            try:
                if self._complete(eof=True):
                    return
            except HTTPParseError as err:
                self.waiter.set_exception(err)
                return
            self.waiter.set_exception(exc or ConnectionResetError("connection closed by server"))

    def _complete(self, eof: bool) -> bool:
        buf = self.buffer
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(buf[:head_end])
        if not head.startswith(b"HTTP/1."):
            raise HTTPParseError(f"not an HTTP/1.x response: {head[:40]!r}")
        try:
            status = int(head[9:12])
        except ValueError:
            raise HTTPParseError(f"bad status line: {head[:40]!r}") from None
        body_start = head_end + 4
        if 100 <= status < 200:  # an interim answer: drop it, wait for the real one
            del buf[:body_start]
            return self._complete(eof)
        lower = head.lower()
        if b"\r\nconnection: close" in lower:
            self.reusable = False
        if status in (204, 304):
            end, body = body_start, b""
        elif b"\r\ntransfer-encoding: chunked" in lower:
            found = _chunked_end(buf, body_start)
            if found is None:
                return False
            end, body = found
        else:
            length = header_value(head, b"content-length")
            if length is None:  # body runs until the server closes
                if not eof:
                    return False
                self.reusable = False
                end, body = len(buf), bytes(buf[body_start:])
            else:
                end = body_start + int(length)
                if len(buf) < end:
                    return False
                body = bytes(buf[body_start:end])
        del buf[:end]
        assert self.waiter is not None
        self.waiter.set_result((status, head, body))
        return True

    async def request(self, data: bytes) -> tuple[int, bytes, bytes]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
