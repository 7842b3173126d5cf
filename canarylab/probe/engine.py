"""The asyncio probe: sends requests, classifies every response, keeps every result.

Two ways to load: a fixed number of ``connections`` each sending back to back (closed
loop), or a target ``rate`` of requests per second (open loop, bounded by
``connections`` requests in flight). Each response is classified by a header (default
``X-Canarylab-Version``) or by a body regex; failures are counted by kind: non-2xx
(``http_error``), ``timeout`` and ``conn_error``. A request times out once
``timeout`` has passed without its complete answer, found at most ``timeout / 10``
(and 0.1 s) late.

``Probe.run()`` returns a ``ProbeResult``; ``Probe.stream()`` yields per-second samples
while it runs (for notebooks). This module must never talk to Kubernetes: it sees only
URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pandas as pd

from canarylab.probe.http1 import Connection, HTTPParseError, build_request
from canarylab.probe.samples import (
    REQUEST_COLUMNS,
    UNKNOWN,
    classify_body,
    requests_frame,
    shares,
    summarize,
    to_samples,
)

DEFAULT_HEADER = "X-Canarylab-Version"
Sender = Callable[[int], Awaitable[None]]
"""Sends one request on connection slot ``index`` and records its result."""


@dataclass(frozen=True)
class ProbeSettings:
    """What to send, how hard, for how long, and how to classify answers."""

    url: str
    duration: float = 10.0
    """Seconds to run (the probe also stops after ``max_requests``)."""
    rate: float | None = None
    """Target requests per second; None sends back to back on ``connections``."""
    connections: int = 20
    """Concurrent connections (with ``rate``: the most requests in flight)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, e.g. ``(("Host", "web.demo.sandbox"),)``."""
    timeout: float = 5.0
    """Seconds before a request counts as a timeout."""
    classify_header: str = DEFAULT_HEADER
    """Response header naming the version."""
    body_regex: str | None = None
    """Classify by body instead: first group of this regex (or the whole match)."""
    max_requests: int | None = None
    """Stop after this many requests (None: run for ``duration``)."""
    client: Literal["fast", "aiohttp"] = "fast"
    """``fast``: canarylab's own HTTP/1.1 keep-alive client (``probe.http1``), several
    times cheaper per request; ``aiohttp`` otherwise. ``https://`` always uses aiohttp."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"probe URL {self.url!r} must start with http:// or https://")
        if self.duration <= 0:
            raise ValueError("the probe's duration must be positive")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("the probe's rate must be positive (or None for closed loop)")
        if self.connections < 1:
            raise ValueError("the probe needs at least one connection")
        if self.body_regex is not None:
            re.compile(self.body_regex)
        if self.client not in ("fast", "aiohttp"):
            raise ValueError(f"unknown probe client {self.client!r}: use 'fast' or 'aiohttp'")


@dataclass
class ProbeResult:
    """Every request's result, with the per-second samples and summary derived from it."""

    requests: pd.DataFrame
    """One row per request: t, version, status, latency_ms, error."""
    elapsed: float
    """Seconds from the first request sent to the last answer."""

    def completed_per_second(self) -> pd.Series:
        """Requests completed in each whole second of the run (first and last partial
        seconds left out): what the server actually took."""
        counts = self.samples.groupby("second")["requests"].sum()
        return counts.iloc[1:-1] if len(counts) > 2 else counts

    @property
    def samples(self) -> pd.DataFrame:
        return to_samples(self.requests)

    def summary(self) -> dict[str, Any]:
        return summarize(self.requests, self.elapsed)

    def shares(self) -> dict[str, float]:
        return shares(self.requests)

    @property
    def failed(self) -> int:
        return int(self.requests["error"].notna().sum())

    def write(self, path: str | Path) -> Path:
        """Write the samples to ``.parquet`` or ``.csv`` (and requests beside them)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        requests_path = path.with_name(path.stem + ".requests" + path.suffix)
        if path.suffix == ".parquet":
            self.samples.to_parquet(path, index=False)
            self.requests.to_parquet(requests_path, index=False)
        elif path.suffix == ".csv":
            self.samples.to_csv(path, index=False)
            self.requests.to_csv(requests_path, index=False)
        else:
            raise ValueError(f"cannot write {path}: use a .parquet or .csv file name")
        return path


@dataclass
class _Recorder:
    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {name: [] for name in REQUEST_COLUMNS}
    )

    def add(
        self, t: float, version: str, status: int, latency_ms: float, error: str | None
    ) -> None:
        c = self.columns
        c["t"].append(t)
        c["version"].append(version)
        c["status"].append(status)
        c["latency_ms"].append(latency_ms)
        c["error"].append(error)

    def __len__(self) -> int:
        return len(self.columns["t"])

    def frame(self, start: int = 0, stop: int | None = None) -> pd.DataFrame:
        return requests_frame({k: v[start:stop] for k, v in self.columns.items()})


class Probe:
    """An asyncio load generator; ``await Probe(settings).run()``."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self._recorder = _Recorder()
        self._pattern = re.compile(settings.body_regex) if settings.body_regex else None
        self._started = 0.0
        self._done = asyncio.Event()
        self._stopping = False
        self._issued = 0
        self._t0 = 0.0
        self._host, self._port, self._request = "", 0, b""
        self._header = b""
        self.result: ProbeResult | None = None
        """Set when ``run()`` (or ``stream()``) has finished."""

    async def _one(self, session: aiohttp.ClientSession) -> None:
        s = self.settings
        begin = time.perf_counter()
        version, status, error = UNKNOWN, 0, None
        try:
            async with session.get(s.url) as response:
                status = response.status
                if self._pattern is not None:
                    version = classify_body(self._pattern, await response.text())
                else:
                    await response.read()
                    version = response.headers.get(s.classify_header) or UNKNOWN
                if not 200 <= status < 300:
                    error = "http_error"
        except TimeoutError:
            error = "timeout"
        except (aiohttp.ClientError, OSError):
            error = "conn_error"
        now = time.perf_counter()
        self._recorder.add(
            self._started + (now - self._t0), version, status, (now - begin) * 1000, error
        )

    async def _one_fast(self, slot: list[Connection | None]) -> None:
        """One request on the slot's kept-alive connection (opened when needed).

        No timer per request: the request carries its deadline and ``_expire`` fails
        it once the deadline has passed (an ``asyncio.timeout`` each cost a third of the
        probe's CPU per request on the loopback benchmark)."""
        s = self.settings
        begin = time.perf_counter()
        deadline = begin + s.timeout
        version, status, error = UNKNOWN, 0, None
        try:
            conn = slot[0]
            reused = conn is not None and not conn.closed and conn.reusable
            if conn is None or not reused:
                if conn is not None:
                    conn.close()
                conn = slot[0] = await self._connect(deadline)
            try:
                response = await conn.request(self._request, deadline)
            except ConnectionError:
                if not reused:
                    raise
                # The server closed an idle kept-alive connection as we sent on it:
                # what any client does, send once more on a fresh one.
                conn.close()
                conn = slot[0] = await self._connect(deadline)
                response = await conn.request(self._request, deadline)
            status = response.status
            if self._pattern is not None:
                version = classify_body(self._pattern, response.body.decode("utf-8", "replace"))
            else:
                version = response.version or UNKNOWN
            if not 200 <= status < 300:
                error = "http_error"
        except TimeoutError:
            error = "timeout"
            self._drop(slot)
        except (OSError, HTTPParseError):
            error = "conn_error"
            self._drop(slot)
        now = time.perf_counter()
        self._recorder.add(
            self._started + (now - self._t0), version, status, (now - begin) * 1000, error
        )

    async def _connect(self, deadline: float) -> Connection:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("no time left to connect")
        return await asyncio.wait_for(
            Connection.open(
                self._host, self._port, self._header, keep_body=self._pattern is not None
            ),
            left,
        )

    async def _expire(self, slots: list[list[Connection | None]]) -> None:
        """Fail every request past its deadline, checking a few times per timeout."""
        tick = min(0.1, self.settings.timeout / 10)
        while True:
            await asyncio.sleep(tick)
            now = time.perf_counter()
            for slot in slots:
                conn = slot[0]
                if conn is not None:
                    conn.expire(now)

    @staticmethod
    def _drop(slot: list[Connection | None]) -> None:
        if slot[0] is not None:
            slot[0].close()
            slot[0] = None

    def _budget_left(self) -> bool:
        limit = self.settings.max_requests
        return limit is None or self._issued < limit

    async def _closed_loop(self, send: Sender, deadline: float) -> None:
        async def worker(index: int) -> None:
            while time.perf_counter() < deadline and self._budget_left():
                if self._stopping:
                    return
                self._issued += 1
                await send(index)

        await asyncio.gather(*(worker(i) for i in range(self.settings.connections)))

    async def _open_loop(self, send: Sender, deadline: float) -> None:
        rate = float(self.settings.rate or 1)
        free: asyncio.Queue[int] = asyncio.Queue()
        for index in range(self.settings.connections):
            free.put_nowait(index)
        tasks: set[asyncio.Task[None]] = set()
        # At most one second of requests (or two per connection) may wait for a free
        # connection; beyond that a slot is dropped, so a stalled server lowers the
        # achieved rate (visible in the samples) instead of growing memory without end.
        backlog = max(2 * self.settings.connections, int(rate))
        scheduled = 0

        async def guarded() -> None:
            index = await free.get()
            try:
                await send(index)
            finally:
                free.put_nowait(index)

        while (now := time.perf_counter()) < deadline and self._budget_left():
            if self._stopping:
                break
            due = int((now - self._t0) * rate) + 1 - scheduled
            scheduled += max(0, due)
            for _ in range(min(due, backlog - len(tasks))):
                if not self._budget_left():
                    break
                self._issued += 1
                task = asyncio.create_task(guarded())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(min(0.005, 1 / rate))
        if tasks:
            await asyncio.gather(*tasks)

    async def _load(self, send: Sender, deadline: float) -> None:
        if self.settings.rate is None:
            await self._closed_loop(send, deadline)
        else:
            await self._open_loop(send, deadline)

    def stop(self) -> None:
        """End the run early: no new request starts; those in flight finish."""
        self._stopping = True

    async def run(self) -> ProbeResult:
        """Send load for the configured duration; return every result."""
        s = self.settings
        self._issued = 0
        self._started = time.time()
        self._t0 = time.perf_counter()
        deadline = self._t0 + s.duration
        fast = s.client == "fast" and s.url.startswith("http://")
        try:
            if fast:
                self._host, self._port, self._request = build_request(s.url, s.headers)
                self._header = s.classify_header.lower().encode("latin-1")
                slots: list[list[Connection | None]] = [[None] for _ in range(s.connections)]

                expiry = asyncio.create_task(self._expire(slots))
                try:
                    await self._load(lambda index: self._one_fast(slots[index]), deadline)
                finally:
                    expiry.cancel()
                    for slot in slots:
                        self._drop(slot)
            else:
                connector = aiohttp.TCPConnector(limit=s.connections, ttl_dns_cache=300)
                async with aiohttp.ClientSession(
                    connector=connector,
                    timeout=aiohttp.ClientTimeout(total=s.timeout),
                    headers=dict(s.headers),
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent",),
                ) as session:

                    async def send_aiohttp(index: int) -> None:
                        await self._one(session)

                    await self._load(send_aiohttp, deadline)
        finally:
            self._done.set()
        elapsed = time.perf_counter() - self._t0
        self.result = ProbeResult(self._recorder.frame(), elapsed)
        return self.result

    async def stream(self) -> AsyncIterator[pd.DataFrame]:
        """Run the probe and yield each completed second's samples as it closes.

        The last item covers the seconds still open when the probe finished.
        """
        task = asyncio.create_task(self.run())
        seen = 0
        try:
            while not self._done.is_set():
                await asyncio.wait({task}, timeout=1.0)
                cut = len(self._recorder)
                if self._done.is_set():
                    break
                # Hold back the second still in progress.
                frame = self._recorder.frame(seen, cut)
                if frame.empty:
                    continue
                current = int(time.time())
                closed = frame[frame["t"] < current]
                if not closed.empty:
                    seen += len(closed)
                    yield to_samples(closed)
            await task
            rest = self._recorder.frame(seen)
            if not rest.empty:
                yield to_samples(rest)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def probe(url: str, **settings: Any) -> ProbeResult:
    """``await probe("http://…", duration=5, rate=200)``: run one probe."""
    return await Probe(ProbeSettings(url=url, **settings)).run()


def header_pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((headers or {}).items())
