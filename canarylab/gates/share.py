"""The traffic-share gate: does the canary get the traffic its weight says?

"The route says 25%, the canary got 0%" means every other gate judges nothing (or an
empty canary side): a route that was not applied, a classifier that does not see the
canary's version, a canary that hangs before it answers. This gate tests the observed
canary share (canary-labelled requests plus attributed unversioned failures, over all
requests) against ``weight × (1 − tolerance)``: it fails when the share is
significantly below (``NoCanaryTraffic``), passes when it is significantly above, and
keeps collecting in between. The first ``settle_s`` seconds of a step are not judged:
the gateway takes a moment to apply a new weight.

This module must never do I/O or read a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .evidence import log_e_above, log_e_below, lower_bound, upper_bound
from .verdict import Outcome, Verdict
from .window import ATTRIBUTION_SHARE, Traffic, Window, per_second, with_attribution

NO_CANARY_TRAFFIC = "NoCanaryTraffic"
"""The reason a step fails when the canary gets far less than its weight."""


@dataclass(frozen=True)
class TrafficShare:
    """The canary's share of requests must be at least ``weight × (1 − tolerance)``."""

    tolerance: float = 0.5
    """0.5: fail a canary that gets less than half its weight."""
    alpha: float = 0.01
    pass_alpha: float = 0.01
    settle_s: float = 3.0
    """Seconds at the start of a step left out while the gateway applies the weight."""
    name: str = "traffic-share"

    def judge(self, traffic: Traffic, window: Window) -> Verdict:
        if window.weight is None:
            return Verdict(
                self.name,
                "insufficient",
                "the canary's applied weight is not known, so its share cannot be checked",
                {"weight": None},
            )
        start = window.since
        if start is not None:
            start = start + pd.Timedelta(seconds=self.settle_s)
        counts, extra = with_attribution(traffic, window, start, self.alpha)
        canary = np.cumsum(counts.canary_requests + extra)
        total = np.cumsum(counts.all_requests)
        target = window.weight / 100 * (1 - self.tolerance)
        test_alpha = self.alpha * (1 - ATTRIBUTION_SHARE)
        k = int(canary[-1]) if canary.size else 0
        n = int(total[-1]) if total.size else 0
        if window.weight <= 0:
            outcome: Outcome = "pass"
            log_fail = log_pass = 0.0
        else:
            log_fail = float(np.max(log_e_below(canary, total, target))) if n else 0.0
            log_pass = float(log_e_above(k, n, target)) if n else 0.0
            if log_fail >= math.log(1 / test_alpha):
                outcome = "fail"
            elif log_pass >= math.log(1 / self.pass_alpha):
                outcome = "pass"
            else:
                outcome = "insufficient"
        lower, upper = lower_bound(k, n, self.pass_alpha), upper_bound(k, n, test_alpha)
        share = k / n if n else math.nan
        numbers: dict[str, float | int | str | None] = {
            "canary_requests": k,
            "attributed_requests": int(extra.sum()),
            "requests": n,
            "canary_share": share,
            "weight": window.weight,
            "expected_at_least": target,
            "lower_bound": lower,
            "upper_bound": upper,
            "e_value": math.exp(min(log_fail, 700.0)),
            "threshold": 1 / test_alpha,
            "pass_e_value": math.exp(min(log_pass, 700.0)),
            "alpha": test_alpha,
            "pass_alpha": self.pass_alpha,
        }
        seen = f"canary share {share:.2%} of {n} requests" if n else "no requests yet"
        if outcome == "fail":
            numbers["problem"] = NO_CANARY_TRAFFIC
            reason = (
                f"{NO_CANARY_TRAFFIC}: {seen} while its applied weight is {window.weight}%; "
                f"the upper bound {upper:.2%} is below {target:.2%} — is the route applied, "
                "does the classifier see the canary's version, does the canary answer?"
            )
        elif outcome == "pass":
            reason = f"{seen} at weight {window.weight}%, lower bound {lower:.2%} ≥ {target:.2%}"
        else:
            reason = f"{seen} at weight {window.weight}%; still collecting"
        return Verdict(self.name, outcome, reason, numbers)


def route_took_effect(traffic: Traffic, window: Window, tolerance: float = 0.5) -> bool:
    """True once a closed second since ``window.since`` gave the canary's own answers at
    least ``weight × (1 − tolerance)`` of its requests: the gateway applies the weight.

    Not a verdict: the runner waits on this (for a bounded time) before a step's window
    starts, so a data plane that is slow to program its backends is not judged as a
    canary without traffic. A canary that never answers never makes it true.
    """
    if window.weight is None or window.weight <= 0:
        return True
    counts = per_second(traffic, window, window.since)
    if not counts.all_requests.size:
        return False
    share = counts.canary_requests / np.maximum(counts.all_requests, 1)
    return bool(np.any(share >= window.weight / 100 * (1 - tolerance)))
