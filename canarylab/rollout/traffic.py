"""Feeding the probe's traffic to gates and to the record, while a rollout runs.

``ProbeFeed.start(url, ...)`` runs ``canarylab.probe.Probe`` on its own event loop in
a background thread (so it works the same in a plain script, a papermill kernel and a
notebook), and once a second moves the seconds that have closed into the record
(samples and per-request results, one Parquet part each) and into the frames gates
read. ``stop()`` takes the last snapshot *before* cancelling the probe, so requests
cut off by the stop are never counted as failures.

This module must never judge traffic (``canarylab.gates``) or touch the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import pandas as pd

from canarylab.errors import CanarylabError
from canarylab.gates import Traffic


class ProbeError(CanarylabError):
    """The probe could not be started or configured."""


def parse_classifier(spec: str) -> dict[str, Any]:
    """``header:X-Canarylab-Version`` or ``body:hello (\\w+)`` → ProbeSettings fields."""
    kind, _, value = spec.partition(":")
    if kind == "header" and value:
        return {"classify_header": value}
    if kind == "body" and value:
        return {"body_regex": value}
    raise ProbeError(
        f"classifier {spec!r} not understood: use 'header:<Header-Name>' or 'body:<regex>'"
    )


def wait_serving(url: str, headers: dict[str, str], timeout_s: float, in_a_row: int = 3) -> None:
    """Return once ``url`` has answered 2xx ``in_a_row`` times; ProbeError after ``timeout_s``.

    A Deployment counts as ready before its processes behind the gateway answer (in the
    sandbox, kwok's simulated readiness runs ahead of the demo app starting up).
    Requests sent in that gap measure the set-up, not the rollout, so the probe waits.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    streak, last = 0, "no answer yet"
    with httpx.Client(headers=headers, timeout=2.0) as client:
        while streak < in_a_row:
            if time.monotonic() > deadline:
                raise ProbeError(
                    f"{url} did not serve within {timeout_s:.0f}s (last: {last}); is the "
                    "route's backend running, and is this the gateway's URL?"
                )
            try:
                status = client.get(url).status_code
                last = f"HTTP {status}"
            except httpx.HTTPError as err:
                status, last = 0, f"{type(err).__name__}: {err}"
            streak = streak + 1 if 200 <= status < 300 else 0
            if streak < in_a_row:
                time.sleep(0.1)


class ProbeFeed:
    """A running probe whose closed seconds flow into a recorder and into ``traffic()``."""

    def __init__(
        self,
        settings: Any,
        recorder: Any = None,
        flush_every_s: float = 1.0,
        keep_requests_s: float = 3600.0,
    ) -> None:
        from canarylab.probe import Probe

        self.settings = settings
        self.recorder = recorder
        self.flush_every_s = flush_every_s
        self.keep_requests_s = keep_requests_s
        """Per-request results older than this are dropped from memory (the record keeps
        them); per-second samples are small and all kept."""
        self._probe = Probe(settings)
        self._lock = threading.Lock()
        self._samples: list[pd.DataFrame] = []
        self._requests: list[pd.DataFrame] = []
        self._seen = 0
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self._stopping = False
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="canarylab-probe", daemon=True)

    @classmethod
    def start(
        cls,
        url: str,
        *,
        rate: float | None = 200,
        classifier: str = "header:X-Canarylab-Version",
        connections: int = 32,
        headers: dict[str, str] | None = None,
        recorder: Any = None,
        max_duration_s: float = 24 * 3600,
        keep_requests_s: float = 3600.0,
        serving_timeout_s: float = 60.0,
    ) -> ProbeFeed:
        """Start probing ``url`` once it serves (see ``wait_serving``)."""
        from canarylab.probe import ProbeSettings

        try:
            settings = ProbeSettings(
                url=url,
                duration=max_duration_s,
                rate=rate,
                connections=connections,
                headers=tuple((headers or {}).items()),
                **parse_classifier(classifier),
            )
        except ValueError as err:
            raise ProbeError(f"cannot start the probe: {err}") from None
        wait_serving(url, headers or {}, serving_timeout_s)
        feed = cls(settings, recorder, keep_requests_s=keep_requests_s)
        feed._thread.start()
        feed._started.wait(10)
        if recorder is not None:
            recorder.event(
                "probe", state="started", url=url, rate=rate, message=f"probe started against {url}"
            )
        return feed

    # -- reading --------------------------------------------------------------------

    def traffic(self) -> Traffic:
        """Everything this feed has seen, up to the last closed second."""
        with self._lock:
            samples = _concat(self._samples, "samples")
            requests = _concat(self._requests, "requests")
        return Traffic(samples, requests)

    def totals(self) -> dict[str, int]:
        t = self.traffic()
        if not len(t.samples):
            return {"requests": 0, "failed": 0}
        s = t.samples
        failed = int(s["http_errors"].sum() + s["timeouts"].sum() + s["conn_errors"].sum())
        return {"requests": int(s["requests"].sum()), "failed": failed}

    # -- lifecycle -----------------------------------------------------------------

    def stop(self) -> None:
        """Flush what is complete, then cancel the probe and wait for its thread."""
        if self._stopping:
            return
        self._stopping = True
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._final_flush(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._cancel)
        self._thread.join(15)
        if self.recorder is not None:
            totals = self.totals()
            self.recorder.event(
                "probe",
                state="stopped",
                message=f"probe stopped: {totals['requests']} requests, {totals['failed']} failed",
                **totals,
            )

    def __enter__(self) -> ProbeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _cancel(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as err:  # kept for the caller; a probe must not kill a kernel
            self._error = err
        finally:
            self._loop.close()

    async def _run(self) -> None:
        self._task = asyncio.ensure_future(self._probe.run())
        self._started.set()
        try:
            while not self._task.done():
                await asyncio.sleep(self.flush_every_s)
                self._flush(closed_only=True)
        except asyncio.CancelledError:
            pass
        finally:
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _final_flush(self) -> None:
        self._flush(closed_only=False)

    def _flush(self, closed_only: bool) -> None:
        """Move new results (of closed seconds only, unless stopping) to the frames and record."""
        columns = self._probe._recorder.columns  # runs on the probe's loop: no race
        cut = min(len(v) for v in columns.values())
        if cut <= self._seen:
            return
        frame = self._probe._recorder.frame(self._seen, cut)
        if closed_only:
            frame = frame[frame["t"] < float(int(time.time()))]
        if frame.empty:
            return
        self._seen += len(frame)
        from canarylab.probe import to_samples

        samples = to_samples(frame)
        requests = frame.assign(t=pd.to_datetime(frame["t"], unit="s", utc=True))
        with self._lock:
            self._samples.append(samples)
            self._requests.append(requests)
            horizon = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=self.keep_requests_s)
            while len(self._requests) > 1 and self._requests[0]["t"].iloc[-1] < horizon:
                self._requests.pop(0)
        if self.recorder is not None:
            self.recorder.samples(samples)
            self.recorder.requests(requests)


def _concat(frames: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    if not frames:
        from canarylab.probe.samples import empty_requests, empty_samples

        return empty_samples() if kind == "samples" else empty_requests()
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
