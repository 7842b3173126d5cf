"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, for probe throughput.

aiohttp's client spends most of a probe's CPU on machinery the probe does not need
(cookie jars, redirects, header multidicts). This client sends one pre-built request
per call on a kept-alive connection and keeps only what the probe reads: the status,
one header (the version), and the body when a body regex needs it.

Responses are parsed by llhttp (through httptools), so every framing HTTP/1.1 allows
completes as soon as its last byte arrives: Content-Length, chunked (any spelling,
transfer-coding lists ending in chunked, chunk extensions, trailers), bodies delimited
by the server's close, and the bodiless 1xx, 204, 304 and answers to HEAD. The one
thing done here before llhttp sees the bytes is unfolding obsolete line folding in a
response head (RFC 9112 §5.2 asks a client to read a fold as a space; llhttp refuses
it).

Plain ``http://`` only; the probe uses aiohttp for ``https://``. This module must
never follow redirects, retry, pipeline, or pool across hosts: one connection, one
request at a time.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import NamedTuple
from urllib.parse import urlsplit

import httptools

MAX_HEAD_BYTES = 64 * 1024
"""A response head longer than this is refused (a server that never ends its head)."""

_FOLD = re.compile(rb"\r\n[ \t]+")


class HTTPParseError(ConnectionError):
    """The server's answer was not HTTP/1.x the client understands."""


class Response(NamedTuple):
    """What the probe keeps of one response."""

    status: int
    version: str | None
    """The value of the header the connection classifies by, if the response had it."""
    body: bytes
    """The body, only when the connection keeps bodies (else ``b""``)."""


def build_request(
    url: str, headers: tuple[tuple[str, str], ...], method: str = "GET"
) -> tuple[str, int, bytes]:
    """(host, port, request bytes) for a keep-alive ``method`` (GET or HEAD) of ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the fast HTTP client takes plain http:// URLs, not {url!r}")
    if method not in ("GET", "HEAD"):
        raise ValueError(f"the fast HTTP client sends GET or HEAD, not {method!r}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    names = {name.lower() for name, _ in headers}
    lines = [f"{method} {path} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {parts.netloc}")
    lines += [f"{name}: {value}" for name, value in headers]
    if "user-agent" not in names:
        lines.append("User-Agent: canarylab-probe")
    return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunked(value: bytes) -> bool:
    """Whether a Transfer-Encoding value's last coding is chunked."""
    return value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"


class Connection(asyncio.Protocol):
    """One keep-alive connection; ``await request(data)`` → a :class:`Response`.

    ``classify`` is the lower-case name of the header whose value is the response's
    version; ``keep_body`` keeps bodies (for a body regex), else they are dropped as
    they arrive.
    """

    def __init__(self, classify: bytes, keep_body: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.deadline = math.inf
        """When the request in flight times out (``time.perf_counter()`` seconds)."""
        self._classify = classify
        self._keep_body = keep_body
        self._parser = self._new_parser()
        self._waiter: asyncio.Future[Response] | None = None
        self._head_request = False
        # Raw bytes of a response head not yet complete; None once the final head was fed.
        self._head: bytes | None = None
        self._reset()

    def _new_parser(self) -> httptools.HttpResponseParser:
        parser = httptools.HttpResponseParser(self)
        # RFC 9112 §7.1.1 allows whitespace before a chunk extension's ';'.
        parser.set_dangerous_leniencies(lenient_spaces_after_chunk_size=True)
        return parser

    def _reset(self) -> None:
        """Forget the response in progress (before a request, and after a 1xx)."""
        self._status = 0
        self._version: str | None = None
        self._body: list[bytes] = []
        self._final_head = False
        self._length = False  # Content-Length seen
        self._coding: bytes | None = None  # the last Transfer-Encoding value seen

    @classmethod
    async def open(
        cls, host: str, port: int, classify: bytes, keep_body: bool = False
    ) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: cls(classify, keep_body), host, port)
        return protocol

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as err:
            self._fail(
                HTTPParseError(f"the server's answer is not HTTP/1.1 the probe reads: {err}")
            )
        except HTTPParseError as err:
            self._fail(err)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._final_head and not self._length_known():
            self.reusable = False  # the body ran until the close: it is complete
            self._complete()
        else:
            self._waiter.set_exception(exc or ConnectionResetError("connection closed by server"))

    # -- httptools callbacks -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == self._classify:
            self._version = value.strip().decode("latin-1")
        elif lower == b"content-length":
            self._length = True
        elif lower == b"transfer-encoding":
            self._coding = value

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._final_head = not 100 <= self._status < 200 or self._status == 101
        if self._final_head and self._head_request:
            # A HEAD answer has no body whatever its headers say; llhttp cannot be told,
            # so this parser is done: the next request gets a fresh one.
            self.reusable = self._parser.should_keep_alive()
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self._keep_body:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is None or self._waiter.done():
            if not self._head_request:  # (a HEAD answer completed at its head)
                self.reusable = False  # an answer nobody asked for
            return
        if not self._final_head:  # an interim 1xx: the real answer follows
            self._reset()
            self._head = b""
            return
        self.reusable = self._parser.should_keep_alive()
        self._complete()

    # -- the client ----------------------------------------------------------------

    async def request(self, data: bytes, deadline: float = math.inf) -> Response:
        """Send one request (bytes from :func:`build_request`) and await its response.

        ``deadline`` (``time.perf_counter()`` seconds) is when :meth:`expire` may fail
        the request with ``TimeoutError``; the caller calls it, so that a probe with
        many connections needs one timer, not one per request.
        """
        if self.closed or self.transport is None:
            raise ConnectionResetError("connection is closed")
        self.deadline = deadline
        if self._head_request:
            self._parser = self._new_parser()
        self._head_request = data.startswith(b"HEAD ")
        self._reset()
        self._head = b""
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._waiter

    def expire(self, now: float) -> None:
        """Fail the request in flight with ``TimeoutError`` if ``now`` is past its deadline."""
        if now >= self.deadline and self._waiter is not None and not self._waiter.done():
            self._fail(TimeoutError("no complete answer before the probe's timeout"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _received(self, data: bytes) -> None:
        # Heads are held until complete so that folded lines can be unfolded; a body
        # goes to llhttp as it arrives.
        while self._head is not None:
            buffered = self._head + data if self._head else data
            end = buffered.find(b"\r\n\r\n")
            if end < 0:
                if len(buffered) > MAX_HEAD_BYTES:
                    raise HTTPParseError(f"response head longer than {MAX_HEAD_BYTES} bytes")
                self._head = buffered
                return
            end += 4
            self._head = None
            folded = buffered.find(b"\r\n ", 0, end) >= 0 or buffered.find(b"\r\n\t", 0, end) >= 0
            if buffered[9:10] != b"1":  # "HTTP/1.1 1xx": an interim head, another follows
                if folded:
                    buffered = _FOLD.sub(b" ", buffered[:end]) + buffered[end:]
                self._parser.feed_data(buffered)
                return
            head, data = buffered[:end], buffered[end:]
            self._parser.feed_data(_FOLD.sub(b" ", head) if folded else head)
            # on_message_complete of the interim answer set self._head again.
        if data:
            self._parser.feed_data(data)

    def _length_known(self) -> bool:
        """Whether the response said how long its body is (else it ends at the close)."""
        if self._coding is not None:
            return _chunked(self._coding)
        return self._length

    def _complete(self) -> None:
        assert self._waiter is not None
        self._head = None
        self._waiter.set_result(Response(self._status, self._version, b"".join(self._body)))

    def _fail(self, err: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(err)
        self.close()
