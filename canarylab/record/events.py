"""The record's vocabulary: event kinds, their fields, why a rollout stopped, exit codes.

Every writer of ``events.jsonl`` (the runner, the ``Rollout`` primitives, the probe
feed, the lease, the CLI, the notebook widgets) and every reader (the replayer, the
report, ``canarylab run``) takes the names from here, so a kind or a reason is spelled
once. The dataclasses say which fields an event of a kind carries; ``fields()`` turns
one into the keyword arguments of ``Recorder.event``.

``Outcome`` is what a run ended with, ``Reason`` why it stopped before promotion, and
``ExitCode`` the one mapping from an outcome to the exit status of ``canarylab run``
and the rollout verbs (docs/runbooks.md, "Exit codes").

This module must never do I/O; besides the standard library it imports only the pure
model (whose condition reasons a record repeats: ``DriverLost``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

from canarylab.model.decide import DRIVER_LOST


class Kind(StrEnum):
    """The ``kind`` of a record event (docs/record.md lists each kind's fields)."""

    RUN = "run"
    """A plan run started, resumed or finished (with its outcome)."""
    STEP = "step"
    """A plan step started, passed or failed."""
    EXTENSION = "extension"
    """A step's hold was extended because a gate was still collecting evidence."""
    BASELINE = "baseline"
    """The unattributed failure rate measured before the canary took traffic."""
    VERDICT = "verdict"
    """A gate's verdict: every look during a hold that changed it, and the last one."""
    PROBE = "probe"
    """The probe started, stopped, died, stalled or could not reach its target."""
    LEASE = "lease"
    """The driver's lease on the CanaryDeployment was taken, renewed, lost or released."""
    ACTION = "action"
    """An operator action (create, weight, replace, abort, delete)."""
    STATUS = "status"
    """The resource's phase, weights or readiness changed."""
    EVENT = "event"
    """A Kubernetes Event on the CanaryDeployment."""
    CHART = "chart"
    """The live chart reported a problem."""
    METRICS = "metrics"
    """The metric gates' PromQL and the series each look added (``evidence: metrics|both``)."""


class RunState(StrEnum):
    STARTED = "started"
    RESUMED = "resumed"
    FINISHED = "finished"
    ROLLBACK_FAILED = "rollback-failed"


class StepState(StrEnum):
    STARTED = "started"
    PASSED = "passed"
    FAILED = "failed"


class ProbeState(StrEnum):
    STARTED = "started"
    STOPPED = "stopped"
    UNREACHABLE = "unreachable"
    """The target never served 2xx before the rollout began: nothing was changed."""
    LOST = "lost"
    """The probe's thread died."""
    STALLED = "stalled"
    """No closed second for longer than the stall limit."""


class Outcome(StrEnum):
    """How a run ended (``run`` event ``outcome`` and ``metadata.json`` ``outcome``)."""

    SUCCEEDED = "succeeded"
    """Every step passed and the canary was promoted (or the plan had no promotion)."""
    ROLLED_BACK = "rolled-back"
    """Not promoted; the canary is at weight 0 and deleted, or was never created."""
    FAILED = "failed"
    """Not promoted, and the rollback failed or the state is unknown."""


class Reason(StrEnum):
    """Why a run stopped before promotion (``run``/``step`` event ``reason``)."""

    GATE_FAILED = "GateFailed"
    """A gate failed on enough evidence."""
    INSUFFICIENT_EVIDENCE = "InsufficientEvidence"
    """A gate was still collecting at ``max_hold`` (and the step does not opt out)."""
    NO_CANARY_TRAFFIC = "NoCanaryTraffic"
    """The canary had weight > 0 but no (or too few) answers came from it."""
    PROBE_UNREACHABLE = "ProbeUnreachable"
    """The probe's target never served before the rollout began; nothing was changed."""
    PROBE_LOST = "ProbeLost"
    """The probe's thread died during the rollout."""
    PROBE_STALLED = "ProbeStalled"
    """The probe closed no second for longer than its stall limit."""
    DRIVER_LOST = DRIVER_LOST
    """The driver's lease lapsed (the controller paused the canary)."""
    INTERRUPTED = "Interrupted"
    """SIGINT or SIGTERM stopped the driver; it rolled back first."""
    CANARY_NOT_READY = "CanaryNotReady"
    """The canary's pods were not all Ready within the ready timeout (a crash loop, an
    image that never starts): it was rolled back before any traffic was sent to it."""
    ROLLOUT_ERROR = "RolloutError"
    """A rollout action failed (a timeout, an API error); see the message."""


class ExitCode(IntEnum):
    """Exit status of ``canarylab run`` and the rollout verbs (one definition)."""

    OK = 0
    """Promoted, or the verb did what was asked."""
    ERROR = 1
    """An error before anything was changed (no cluster, no such canary)."""
    ROLLED_BACK = 2
    """Not promoted and safe: the canary is at weight 0 (rolled back or never created)."""
    UNSAFE = 3
    """The rollback failed or the state is unknown: look at the canary now."""
    USAGE = 64
    """Bad input: a usage error, a bad parameter or plan (sysexits' EX_USAGE)."""

    @classmethod
    def for_outcome(cls, outcome: str | None) -> ExitCode:
        """The exit code of a run that ended with ``outcome`` (unknown → UNSAFE)."""
        if outcome == Outcome.SUCCEEDED:
            return cls.OK
        if outcome == Outcome.ROLLED_BACK:
            return cls.ROLLED_BACK
        return cls.UNSAFE


EXIT_CODES_HELP = (
    "Exit codes: 0 promoted or done; 2 not promoted, canary at weight 0 (safe); "
    "3 rollback failed or state unknown; 1 an error before anything changed; "
    "64 bad input."
)
"""The exit codes in one line, for ``--help`` epilogs."""


# -- events with their fields ------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of the typed events: ``kind`` plus a human ``message``."""

    KIND: ClassVar[Kind]
    message: str = ""

    def fields(self) -> dict[str, Any]:
        """Keyword arguments for ``Recorder.event(kind, **fields)`` (None values dropped)."""
        return {
            k: str(v) if isinstance(v, StrEnum) else v
            for k, v in asdict(self).items()
            if v is not None
        }

    @property
    def kind(self) -> Kind:
        return self.KIND


@dataclass(frozen=True)
class RunEvent(Event):
    KIND: ClassVar[Kind] = Kind.RUN
    state: RunState = RunState.STARTED
    first_step: int | None = None
    outcome: Outcome | None = None
    reason: Reason | None = None
    step: int | None = None
    """0-based index of the step that stopped the run, when one did."""
    exit_code: int | None = None


@dataclass(frozen=True)
class StepEvent(Event):
    KIND: ClassVar[Kind] = Kind.STEP
    step: int = 0
    weight: int = 0
    state: StepState = StepState.STARTED
    hold_s: float | None = None
    max_hold_s: float | None = None
    since: Any = None
    until: Any = None
    summary: dict[str, Any] | None = None
    reason: Reason | None = None
    settled_s: float | None = None
    """Seconds from the route's weight to the canary's first answers at that share."""


@dataclass(frozen=True)
class ExtensionEvent(Event):
    KIND: ClassVar[Kind] = Kind.EXTENSION
    step: int = 0
    weight: int = 0
    held_s: float = 0.0
    max_hold_s: float = 0.0
    collecting: tuple[str, ...] = ()
    """Gates still ``insufficient`` when the hold was extended."""


@dataclass(frozen=True)
class BaselineEvent(Event):
    KIND: ClassVar[Kind] = Kind.BASELINE
    until: Any = None
    requests: int = 0
    failures: int = 0
    waited_s: float = 0.0


@dataclass(frozen=True)
class ProbeEvent(Event):
    KIND: ClassVar[Kind] = Kind.PROBE
    state: ProbeState = ProbeState.STARTED
    url: str | None = None
    rate: float | None = None
    requests: int | None = None
    failed: int | None = None
    error: str | None = None
    silent_s: float | None = None


def verdict_fields(step: int, verdict: Any, look: int | None = None) -> dict[str, Any]:
    """``Recorder.event(Kind.VERDICT, **verdict_fields(...))`` for a gate's verdict."""
    out: dict[str, Any] = {"step": step, "message": str(verdict), **verdict.as_dict()}
    if look is not None:
        out["look"] = look
    return out
