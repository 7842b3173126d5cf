"""The driver's lease on a CanaryDeployment (``spec.lease``): the dead-man's switch.

A driver (a runbook, a notebook session, a CLI rollout) writes ``spec.lease`` with its
name, a duration and the time of its last renewal, and renews it every third of the
duration. The controller judges it against its own clock: once ``renewTime +
durationSeconds`` has passed, the driver is presumed lost and ``decide`` pauses the
canary at weight 0. This module is the one definition of the field's shape, of when a
lease has lapsed, and of the spec digest that lets status ignore pure renewals. It
must never read the clock or do any I/O: every moment is passed in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canarylab.errors import CanarylabError

FIELD = "lease"
"""The key under ``spec``."""
MIN_DURATION_S = 5
"""The shortest lease the CRD accepts (``spec.lease.durationSeconds`` minimum)."""
RENEWALS_PER_DURATION = 3
"""A holder renews every ``duration / 3``: two renewals may be lost before it lapses."""


class LeaseError(CanarylabError):
    """A ``spec.lease`` that cannot be read (the CRD schema normally refuses it first)."""


@dataclass(frozen=True)
class LeaseSpec:
    """``spec.lease`` as a value: who holds it, for how long, when it was last renewed."""

    holder: str
    duration_s: int
    renew_time: dt.datetime
    """Timezone-aware (UTC)."""

    @property
    def expires(self) -> dt.datetime:
        """The moment the lease lapses unless it is renewed."""
        return self.renew_time + dt.timedelta(seconds=self.duration_s)

    def lapsed(self, now: dt.datetime) -> bool:
        """The holder has not renewed in time (strictly past ``expires``)."""
        return now > self.expires

    def body(self) -> dict[str, Any]:
        """The camelCase object stored under ``spec.lease``."""
        return {
            "holder": self.holder,
            "durationSeconds": self.duration_s,
            "renewTime": format_time(self.renew_time),
        }


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds (what ``renewTime`` holds)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(raw: Any) -> dt.datetime:
    if isinstance(raw, dt.datetime):
        moment = raw
    else:
        try:
            moment = dt.datetime.fromisoformat(str(raw))
        except ValueError:
            raise LeaseError(
                f"spec.lease.renewTime must be an RFC 3339 date-time, not {raw!r}"
            ) from None
    if moment.tzinfo is None:
        raise LeaseError(f"spec.lease.renewTime needs a time zone (e.g. a trailing Z): {raw!r}")
    return moment.astimezone(dt.UTC)


def parse_lease(raw: Any) -> LeaseSpec | None:
    """``spec.lease`` as a :class:`LeaseSpec`; None when absent (a hand-made canary)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise LeaseError("spec.lease must be an object with holder, durationSeconds, renewTime")
    holder = raw.get("holder")
    duration = raw.get("durationSeconds")
    if not holder:
        raise LeaseError("spec.lease.holder is required: who renews the lease")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < MIN_DURATION_S:
        raise LeaseError(
            f"spec.lease.durationSeconds must be an integer ≥ {MIN_DURATION_S}, not {duration!r}"
        )
    if raw.get("renewTime") is None:
        raise LeaseError("spec.lease.renewTime is required: when the holder last renewed")
    return LeaseSpec(str(holder), duration, _parse_time(raw["renewTime"]))


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A short digest of ``spec`` without the lease: what status says it has observed.

    Renewals change ``metadata.generation`` every few seconds but not this digest, so
    the controller writes no status for them and a client can still tell that the
    status describes the current spec (``status.observedSpecHash``).
    """
    rest = {k: v for k, v in spec.items() if k != FIELD}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=dict)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
