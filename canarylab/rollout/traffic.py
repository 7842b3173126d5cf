"""Feeding the probe's traffic to gates and to the record, while a rollout runs.

``ProbeFeed.start(url, ...)`` runs ``canarylab.probe.Probe`` on its own event loop in
a background thread (so it works the same in a plain script, a papermill kernel and a
notebook), and once a second moves the seconds that have closed into the record
(samples and per-request results, one Parquet part each) and into the frames gates
read. ``stop()`` takes the last snapshot *before* cancelling the probe, so requests
cut off by the stop are never counted as failures.

``health()`` says whether the probe can still be trusted: its thread's exception (a
probe that died), or how long no second has closed (a probe that stalled). The runner
looks at it on every look and fails the step when it is not ``ok``: a dead probe must
never let a rollout walk on without evidence.

This module must never judge traffic (``canarylab.gates``) or touch the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from canarylab.errors import CanarylabError
from canarylab.gates import Traffic
from canarylab.record.events import Kind, ProbeEvent, ProbeState, Reason

STALL_AFTER_S = 10.0
"""Seconds without a closed second after which a probe counts as stalled: twice the
probe's default request timeout, so a target whose every request times out (results
then arrive 5 s late, but they arrive) is a failing target, not a stalled probe."""


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


@dataclass(frozen=True)
class ProbeHealth:
    """Whether a probe feed still delivers evidence (a pure value; see ``ProbeFeed.health``)."""

    url: str
    alive: bool
    """The probe's thread is running."""
    error: str | None
    """What killed the thread (or failed its last flush), if anything."""
    silent_s: float
    """Seconds since the last closed second arrived (since the start when none has)."""
    stall_after_s: float

    @property
    def stalled(self) -> bool:
        return self.silent_s > self.stall_after_s

    @property
    def ok(self) -> bool:
        return self.alive and self.error is None and not self.stalled

    @property
    def reason(self) -> Reason | None:
        """``ProbeLost`` (dead), ``ProbeStalled`` (silent too long) or None when ok."""
        if not self.alive or self.error is not None:
            return Reason.PROBE_LOST
        if self.stalled:
            return Reason.PROBE_STALLED
        return None

    def describe(self) -> str:
        if not self.alive or self.error is not None:
            return (
                f"the probe of {self.url} died ({self.error or 'its thread ended'}); "
                "no evidence can be gathered"
            )
        if self.stalled:
            return (
                f"the probe of {self.url} closed no second for {self.silent_s:.0f}s "
                f"(limit {self.stall_after_s:g}s); is the machine overloaded?"
            )
        return f"the probe of {self.url} is healthy"


class ProbeFeed:
    """A running probe whose closed seconds flow into a recorder and into ``traffic()``."""

    def __init__(
        self,
        settings: Any,
        recorder: Any = None,
        flush_every_s: float = 1.0,
        keep_requests_s: float = 3600.0,
        stall_after_s: float = STALL_AFTER_S,
    ) -> None:
        from canarylab.probe import Probe

        self.settings = settings
        self.recorder = recorder
        self.flush_every_s = flush_every_s
        self.keep_requests_s = keep_requests_s
        """Per-request results older than this are dropped from memory (the record keeps
        them); per-second samples are small and all kept."""
        self.stall_after_s = stall_after_s
        """No closed second for this long makes ``health()`` report a stall."""
        self._probe = Probe(settings)
        self._last_closed = time.monotonic()
        self._lock = threading.Lock()
        self._samples: list[pd.DataFrame] = []
        self._requests: list[pd.DataFrame] = []
        self._seen = 0
        from canarylab.probe.loop import new_event_loop

        self._loop = new_event_loop()  # uvloop when installed (docs/dataplane.md)
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
        stall_after_s: float = STALL_AFTER_S,
    ) -> ProbeFeed:
        """Start probing ``url`` once it serves (see ``wait_serving``).

        Raises :class:`ProbeError` (recorded as a ``probe`` event ``unreachable``) when
        the target does not serve within ``serving_timeout_s``.
        """
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
        try:
            wait_serving(url, headers or {}, serving_timeout_s)
        except ProbeError as err:
            if recorder is not None:
                ev = ProbeEvent(
                    state=ProbeState.UNREACHABLE,
                    url=url,
                    rate=rate,
                    error=str(err),
                    message=str(err),
                )
                recorder.event(Kind.PROBE, **ev.fields())
            raise
        if rate:  # a slow probe closes a second only every 1/rate seconds
            stall_after_s = max(stall_after_s, 3.0 / rate)
        feed = cls(settings, recorder, keep_requests_s=keep_requests_s, stall_after_s=stall_after_s)
        feed._thread.start()
        feed._started.wait(10)
        if recorder is not None:
            ev = ProbeEvent(url=url, rate=rate, message=f"probe started against {url}")
            recorder.event(Kind.PROBE, **ev.fields())
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

    def health(self, now: float | None = None) -> ProbeHealth:
        """Alive, its error, seconds since a second closed (``now``: a ``time.monotonic``)."""
        error = self._error
        silent = (time.monotonic() if now is None else now) - self._last_closed
        return ProbeHealth(
            url=self.settings.url,
            alive=self._thread.is_alive() or self._stopping,
            error=None if error is None else f"{type(error).__name__}: {error}",
            silent_s=max(0.0, silent),
            stall_after_s=self.stall_after_s,
        )

    # -- lifecycle -----------------------------------------------------------------

    def stop(self) -> ProbeHealth:
        """Flush what is complete, then cancel the probe and wait for its thread.

        Returns the probe's health as it ended; an error of the thread or of the final
        flush is in it and in the ``probe`` event ``stopped`` (never swallowed).
        """
        if self._stopping:
            return self.health()
        self._stopping = True
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._final_flush(), self._loop).result(10)
            except Exception as err:  # kept and reported: the record misses its last second
                self._error = self._error or err
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._cancel)
        self._thread.join(15)
        health = self.health()
        if self.recorder is not None:
            totals = self.totals()
            message = f"probe stopped: {totals['requests']} requests, {totals['failed']} failed"
            if health.error:
                message += f"; the probe failed: {health.error}"
            ev = ProbeEvent(
                state=ProbeState.STOPPED,
                message=message,
                error=health.error,
                requests=totals["requests"],
                failed=totals["failed"],
            )
            self.recorder.event(Kind.PROBE, **ev.fields())
        return health

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
        except BaseException as err:  # kept for health(); a probe must not kill a kernel
            self._error = self._error or err
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
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception as err:  # the probe itself failed: health() reports it
                self._error = self._error or err
            if not self._stopping and self._error is None:
                self._error = ProbeError(
                    f"the probe ended on its own after {self.settings.duration:g}s "
                    "(its max_duration_s)"
                )

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
        self._last_closed = time.monotonic()
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
