"""The probe starts measuring only once the target serves, and says so when it never does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from canarylab.rollout.traffic import ProbeError, wait_serving


@pytest.fixture
def server() -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server answering with the statuses queued in the list (then 200)."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", statuses
    httpd.shutdown()


def test_waits_through_503s_until_three_2xx_in_a_row(server):
    url, statuses = server
    statuses.extend([503, 503, 200, 503])
    wait_serving(url, {}, timeout_s=10)
    assert statuses == []  # every queued answer was consumed before it returned


def test_never_serving_is_an_error_naming_the_last_answer(server):
    url, statuses = server
    statuses.extend([503] * 1000)
    with pytest.raises(ProbeError, match=r"did not serve within 1s \(last: HTTP 503\)"):
        wait_serving(url, {}, timeout_s=1)
