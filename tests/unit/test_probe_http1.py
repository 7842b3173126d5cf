"""The probe's minimal HTTP/1.1 client: request bytes and response parsing."""

from __future__ import annotations

import asyncio

import pytest

from canarylab.probe.http1 import Connection, HTTPParseError, build_request, header_value


def test_request_bytes_carry_host_path_and_headers():
    host, port, data = build_request("http://127.0.0.1:8080/a/b?x=1", (("X-Canary", "yes"),))
    assert (host, port) == ("127.0.0.1", 8080)
    assert data.startswith(b"GET /a/b?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Canary: yes\r\n")
    assert data.endswith(b"\r\n\r\n")
    _, _, overridden = build_request("http://gw/", (("Host", "web.demo.sandbox"),))
    assert b"Host: gw" not in overridden
    assert b"Host: web.demo.sandbox" in overridden


def test_only_plain_http():
    with pytest.raises(ValueError, match="plain http"):
        build_request("https://example.org/", ())


def test_header_value_is_case_insensitive():
    head = b"HTTP/1.1 200 OK\r\nx-canarylab-version:  v2 \r\nContent-Length: 3"
    assert header_value(head, b"x-canarylab-version") == "v2"
    assert header_value(head, b"content-length") == "3"
    assert header_value(head, b"missing") is None


def feed(*chunks: bytes, eof: bool = False) -> tuple[Connection, asyncio.Future]:
    loop = asyncio.new_event_loop()
    conn = Connection()
    conn.waiter = loop.create_future()
    for chunk in chunks:
        conn.data_received(chunk)
    if eof:
        conn.connection_lost(None)
    return conn, conn.waiter


def test_content_length_body_split_across_packets():
    conn, done = feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"loHTTP/1.1")
    assert done.result()[0] == 200
    assert done.result()[2] == b"hello"
    assert conn.buffer == b"HTTP/1.1"  # the next response's start stays buffered
    assert conn.reusable


def test_chunked_body():
    _, done = feed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    )
    assert done.result()[2] == b"hello"


def test_interim_response_is_skipped():
    _, done = feed(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    )
    assert done.result()[0] == 404


def test_body_until_close_and_connection_close():
    conn, done = feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye", eof=True)
    assert done.result()[2] == b"bye"
    assert not conn.reusable


def test_garbage_and_early_close_are_errors():
    _, done = feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(HTTPParseError):
        done.result()
    _, done = feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    with pytest.raises(ConnectionError):
        done.result()
