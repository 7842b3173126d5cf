"""The control panel of one CanaryDeployment: weight slider, buttons, status line, gates.

The panel is a thin skin over rollout primitives (anything with the methods of
:class:`RolloutControls`, normally ``canarylab.rollout.Rollout``). The slider uses
``continuous_update=False`` so a drag sends one patch, on release. Every action
runs with the buttons disabled; when the API refuses it, the error is shown in
the panel and the slider goes back to the weight the resource really has, so the
panel never shows a state the cluster is not in. Under the status line the panel shows
each gate's running state (:meth:`ControlPanel.show_gates`): passes, fails or still
collecting, with its evidence so far and its bound or e-value.

This module must never decide rollout policy (that is the rollout layer's) or
talk to Kubernetes except through the primitives and the Event reader it is given.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as w

from canarylab.plots.verdicts import gates_html

if TYPE_CHECKING:
    from canarylab.gates import Verdict

ACTION_WAIT_S = 10.0
"""How long an action waits for the one before it (or a status read) to finish."""


class RolloutControls(Protocol):
    """What the panel needs from a rollout object."""

    def create_canary(self, *args: Any, **kwargs: Any) -> Any: ...
    def set_weight(self, weight: int, *, wait: bool = ...) -> Any: ...
    def replace(self, *, wait: bool = ...) -> Any: ...
    def abort(self) -> Any: ...
    def delete(self, *, wait: bool = ...) -> Any: ...
    def status(self) -> Any: ...


@dataclass(frozen=True)
class PanelStatus:
    """What the status line shows, read from a rollout's status snapshot."""

    exists: bool
    phase: str = ""
    desired_weight: int | None = None
    applied_weight: int | None = None
    ready_replicas: int | None = None
    replicas: int | None = None
    last_event: str = ""


def _pick(snapshot: Any, *names: str) -> Any:
    for name in names:
        value = (
            snapshot.get(name) if isinstance(snapshot, Mapping) else getattr(snapshot, name, None)
        )
        if value is not None:
            return value
    return None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def describe(snapshot: Any, last_event: str = "") -> PanelStatus:
    """A :class:`PanelStatus` from a status snapshot (a dataclass or a mapping); ``None`` = absent."""
    if snapshot is None or _pick(snapshot, "exists") is False:
        return PanelStatus(exists=False, last_event=last_event)
    return PanelStatus(
        exists=True,
        phase=str(_pick(snapshot, "phase") or ""),
        desired_weight=_int(_pick(snapshot, "desired_weight", "weight_desired", "desired")),
        applied_weight=_int(_pick(snapshot, "applied_weight", "weight_applied", "applied")),
        ready_replicas=_int(_pick(snapshot, "ready_replicas", "ready")),
        replicas=_int(_pick(snapshot, "replicas")),
        last_event=last_event,
    )


def status_line(status: PanelStatus) -> str:
    """The one-line text of the status bar."""
    if not status.exists:
        text = "no canary (press create)"
    else:
        weight = lambda v: "?" if v is None else f"{v}%"  # noqa: E731
        ready = "?" if status.ready_replicas is None else str(status.ready_replicas)
        if status.replicas is not None:
            ready += f"/{status.replicas}"
        text = (
            f"phase {status.phase or '?'} · weight desired {weight(status.desired_weight)}, "
            f"applied {weight(status.applied_weight)} · ready {ready}"
        )
    if status.last_event:
        text += f" · last event: {status.last_event}"
    return text


class ControlPanel:
    """Slider, create/replace/abort/delete buttons, status line and an error box."""

    def __init__(
        self,
        rollout: RolloutControls,
        create: Mapping[str, Any] | None = None,
        last_event: Callable[[], str] | None = None,
        name: str = "canary",
        on_action: Callable[[str, str], None] | None = None,
    ) -> None:
        self.rollout = rollout
        self.create_kwargs = dict(create or {})
        self.last_event = last_event
        self.on_action = on_action
        """Called with (action, result) after each action, e.g. to record it."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._quiet = False
        self.slider = w.IntSlider(
            value=0,
            min=0,
            max=100,
            step=1,
            description="weight %",
            continuous_update=False,
            layout=w.Layout(width="420px"),
        )
        self.buttons = {
            label: w.Button(description=label, button_style=style, layout=w.Layout(width="90px"))
            for label, style in (
                ("create", "success"),
                ("replace", "primary"),
                ("abort", "warning"),
                ("delete", "danger"),
            )
        }
        self.status_html = w.HTML()
        self.error_html = w.HTML()
        self.gates_html = w.HTML()
        """Each gate's running state (:meth:`show_gates`); empty until gates are judged."""
        self.title = w.HTML(f"<b>CanaryDeployment {html.escape(name)}</b>")
        self.slider.observe(self._on_slider, names="value")
        self.buttons["create"].on_click(lambda _b: self.act("create"))
        self.buttons["replace"].on_click(lambda _b: self.act("replace"))
        self.buttons["abort"].on_click(lambda _b: self.act("abort"))
        self.buttons["delete"].on_click(lambda _b: self.act("delete"))
        self.widget = w.VBox(
            [
                self.title,
                w.HBox([self.slider, *self.buttons.values()]),
                self.status_html,
                self.error_html,
                self.gates_html,
            ]
        )
        self.status = PanelStatus(exists=False)
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- state -----------------------------------------------------------------------

    def refresh(self) -> PanelStatus:
        """Re-read the resource and show it; the slider follows the desired weight."""
        try:
            snapshot = self.rollout.status()
            event = self.last_event() if self.last_event else ""
        except Exception as err:
            self.show_error("status", err)
            return self.status
        self.status = describe(snapshot, event)
        self.status_html.value = html.escape(status_line(self.status))
        target = self.status.desired_weight
        if target is None and not self.status.exists:
            target = 0
        if target is not None and self.slider.value != target:
            self._quiet = True
            try:
                self.slider.value = target
            finally:
                self._quiet = False
        self.slider.disabled = not self.status.exists
        return self.status

    def show_error(self, what: str, err: BaseException) -> None:
        message = str(getattr(err, "reason", "") or err)
        body = getattr(err, "body", None)
        if isinstance(body, str | bytes) and body:
            message = f"{message}: {body.decode() if isinstance(body, bytes) else body}"[:600]
        self.error_html.value = (
            f'<span style="color:#b00">{html.escape(what)} failed: '
            f"{html.escape(type(err).__name__)}: {html.escape(message)}</span>"
        )

    def show_gates(self, verdicts: Sequence[Verdict], heading: str = "gates") -> None:
        """Show each gate's state, evidence so far and bound or e-value (failing first)."""
        self.gates_html.value = gates_html(verdicts, heading)

    def watch(self, interval: float = 1.0) -> None:
        """Re-read the status every ``interval`` seconds on a daemon thread until :meth:`stop`."""
        if self._watcher is not None and self._watcher.is_alive():
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                if self._lock.acquire(timeout=interval):
                    try:
                        self.refresh()
                    finally:
                        self._lock.release()

        self._watcher = threading.Thread(target=loop, name="canarylab-panel", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """Stop :meth:`watch`."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
            self._watcher = None

    # -- actions ---------------------------------------------------------------------

    def _on_slider(self, change: Mapping[str, Any]) -> None:
        if self._quiet:
            return
        self.set_weight(int(change["new"]))

    def set_weight(self, weight: int) -> bool:
        """Patch the weight; on failure show why and put the slider back."""
        # wait=False: the patch is the action; the route catching up shows in the status
        # line, and a cell or button is never stuck behind it.
        return self._run(f"weight {weight}", lambda: self.rollout.set_weight(weight, wait=False))

    def act(self, action: str) -> bool:
        """Run one button's action (create, replace, abort, delete)."""
        calls: dict[str, Callable[[], Any]] = {
            "create": lambda: self.rollout.create_canary(**self.create_kwargs),
            "replace": lambda: self.rollout.replace(wait=False),
            "abort": self.rollout.abort,
            "delete": lambda: self.rollout.delete(wait=False),
        }
        if action not in calls:
            raise ValueError(f"unknown action {action!r}; choose one of {', '.join(calls)}")
        return self._run(action, calls[action])

    def _run(self, action: str, call: Callable[[], Any]) -> bool:
        if not self._lock.acquire(timeout=ACTION_WAIT_S):
            self.error_html.value = html.escape(
                f"{action} ignored: another action is still running"
            )
            return False
        for b in self.buttons.values():
            b.disabled = True
        ok = False
        try:
            call()
            self.error_html.value = ""
            ok = True
        except Exception as err:
            self.show_error(action, err)
        finally:
            for b in self.buttons.values():
                b.disabled = False
            self._lock.release()
            self.refresh()
        if self.on_action is not None:
            self.on_action(action, "ok" if ok else self.error_html.value)
        return ok


def kube_last_event(rollout: Any) -> Callable[[], str]:
    """A reader of the newest Kubernetes Event on ``rollout``'s CanaryDeployment.

    ``rollout`` is a ``canarylab.rollout.Rollout`` (it carries a CoreV1Api as ``core``).
    """

    def newest() -> str:
        items = rollout.core.list_namespaced_event(
            rollout.namespace,
            field_selector=f"involvedObject.name={rollout.name},involvedObject.kind=CanaryDeployment",
        ).items
        if not items:
            return ""

        def when(ev: Any) -> Any:
            t = ev.last_timestamp or ev.event_time or ev.first_timestamp
            return t.timestamp() if t is not None else 0.0

        ev = max(items, key=when)
        return f"{ev.reason}: {ev.message}" if ev.reason else str(ev.message or "")

    return newest
