"""Exit codes of ``canarylab run`` and the rollout verbs, and the help that lists them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import nbformat
import pytest
from click.testing import CliRunner

from canarylab.cli import cli
from canarylab.cli.parameters import check_parameters
from canarylab.cli.rollout import Watch, drive, verb_exit_code
from canarylab.cli.run import (
    Execution,
    RecordMark,
    Seen,
    changed_something,
    exit_code,
    record_dir,
)
from canarylab.record import Recorder
from canarylab.record.events import (
    EXIT_CODES_HELP,
    ExitCode,
    Kind,
    Outcome,
    Reason,
    RunEvent,
    RunState,
)
from canarylab.rollout.manifest import RolloutError
from tests.helpers import wait_for

FAILED = Execution(error="RolloutStopped: ...", ename="RolloutStopped", cells_started=3)
FINISHED = Execution(cells_started=3)


def run_event(state: RunState, outcome: Outcome | None = None, **extra: Any) -> dict[str, Any]:
    fields = RunEvent(state=state, outcome=outcome, **extra).fields()
    return {"t": "2026-12-02T12:00:00+00:00", "kind": str(Kind.RUN), **fields}


def action(result: str) -> dict[str, Any]:
    return {"kind": str(Kind.ACTION), "what": "set_weight", "result": result}


# -- canarylab run: the record decides -------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Outcome.SUCCEEDED, ExitCode.OK),
        (Outcome.ROLLED_BACK, ExitCode.ROLLED_BACK),
        (Outcome.FAILED, ExitCode.UNSAFE),
    ],
)
def test_the_last_finished_run_event_decides(outcome: Outcome, code: ExitCode) -> None:
    events = [
        run_event(RunState.STARTED),
        action("requested"),
        run_event(RunState.FINISHED, outcome, reason=Reason.GATE_FAILED),
    ]
    done = FINISHED if outcome == Outcome.SUCCEEDED else FAILED
    assert exit_code(done, Seen(events))[0] == code


def test_an_interrupted_run_that_rolled_back_exits_2() -> None:
    events = [
        run_event(RunState.STARTED),
        run_event(RunState.FINISHED, Outcome.ROLLED_BACK, reason=Reason.INTERRUPTED, step=1),
    ]
    done = Execution(error="RolloutStopped: Interrupted", ename="RolloutStopped", interrupted=1)
    code, why = exit_code(done, Seen(events))
    assert code == ExitCode.ROLLED_BACK
    assert "Interrupted" in why


def test_metadata_decides_when_no_run_event_finished_the_run() -> None:
    """ProbeUnreachable: the session writes the outcome to metadata.json only."""
    meta = {"outcome": "rolled-back", "reason": "ProbeUnreachable", "exit_code": 2}
    assert exit_code(FAILED, Seen([], meta))[0] == ExitCode.ROLLED_BACK
    meta = {"outcome": "failed", "reason": "ProbeUnreachable", "exit_code": 3}
    assert exit_code(FAILED, Seen([action("requested")], meta))[0] == ExitCode.UNSAFE


def test_a_failed_outcome_before_any_change_is_an_error() -> None:
    """E.g. "rolls out version v3, not v2": refused before the run event, nothing changed."""
    meta = {"outcome": "failed", "reason": "RolloutError"}
    assert exit_code(FAILED, Seen([action("unchanged")], meta))[0] == ExitCode.ERROR


def test_no_outcome_failed_after_a_change_is_unsafe() -> None:
    """A killed kernel mid-step: the run started, nothing finished it."""
    events = [run_event(RunState.STARTED), action("requested")]
    assert exit_code(FAILED, Seen(events))[0] == ExitCode.UNSAFE


def test_no_outcome_failed_before_a_change_is_an_error_or_usage() -> None:
    assert exit_code(FAILED, Seen())[0] == ExitCode.ERROR
    plan = Execution(error="PlanError: weights must increase", ename="PlanError", cells_started=2)
    assert exit_code(plan, Seen())[0] == ExitCode.USAGE
    assert exit_code(plan, Seen([run_event(RunState.STARTED)]))[0] == ExitCode.UNSAFE


def test_without_a_record() -> None:
    assert exit_code(FINISHED, None)[0] == ExitCode.OK  # a dry run, the abort runbook
    assert exit_code(FAILED, None)[0] == ExitCode.UNSAFE  # cannot tell what it changed
    never = Execution(error="NoSuchKernel: x", ename="NoSuchKernel", cells_started=0)
    assert exit_code(never, None)[0] == ExitCode.ERROR


def test_changed_something() -> None:
    assert not changed_something([])
    assert not changed_something([action("unchanged"), {"kind": str(Kind.LEASE)}])
    assert changed_something([action("requested")])
    assert changed_something([{"kind": str(Kind.STEP), "state": "started"}])


def test_only_this_runs_writes_count(tmp_path: Path) -> None:
    """A re-run into the same record: the earlier run's outcome is not this run's."""
    rec = tmp_path / "record"
    with Recorder(rec) as old:
        old.event(Kind.RUN, **RunEvent(state=RunState.STARTED).fields())
        old.event(Kind.RUN, **RunEvent(state=RunState.FINISHED, outcome=Outcome.SUCCEEDED).fields())
        old.update_metadata(outcome="succeeded", finished_at="2026-12-01T00:00:00+00:00")
    mark = RecordMark.before(rec)
    seen = mark.seen()
    assert seen is not None
    assert seen.events == []
    assert seen.metadata is None
    assert exit_code(FAILED, seen)[0] == ExitCode.ERROR
    with Recorder(rec) as new:
        new.event(Kind.RUN, **RunEvent(state=RunState.STARTED).fields())
        new.event(
            Kind.RUN,
            **RunEvent(
                state=RunState.FINISHED, outcome=Outcome.FAILED, reason=Reason.ROLLOUT_ERROR
            ).fields(),
        )
        new.update_metadata(outcome="failed", finished_at=time_now())
    seen = mark.seen()
    assert seen is not None
    assert [e["state"] for e in seen.events] == ["started", "finished"]
    assert seen.metadata is not None
    assert seen.metadata["outcome"] == "failed"
    assert exit_code(FAILED, seen)[0] == ExitCode.UNSAFE


def test_a_record_never_made_is_seen_as_empty(tmp_path: Path) -> None:
    seen = RecordMark.before(tmp_path / "nowhere").seen()
    assert seen == Seen()
    assert RecordMark.before(None).seen() is None


def time_now() -> str:
    from canarylab.record.writer import now

    return now()


def test_record_dir_from_parameters_or_the_runbooks_defaults() -> None:
    declared = {"output_dir": "out/rollout", "steps": [5]}
    assert record_dir({}, declared) == Path("out/rollout").absolute() / "record"
    assert record_dir({"output_dir": "x"}, declared) == Path("x").absolute() / "record"
    assert record_dir({"record_dir": "r"}, {"record_dir": None}) == Path("r").absolute()
    assert record_dir({}, {"record_dir": None}) is None


def test_unknown_parameters_are_refused() -> None:
    check_parameters({"steps": [5]}, {"steps": [5, 25]})
    check_parameters({"anything": 1}, {})  # no parameters cell: nothing to check
    with pytest.raises(click.BadParameter, match="no parameter 'stpes'"):
        check_parameters({"stpes": [5]}, {"steps": [5, 25]})


# -- the rollout verbs -----------------------------------------------------------------


def test_verb_exit_codes() -> None:
    assert verb_exit_code(None, changed=False) == ExitCode.OK
    assert verb_exit_code(RolloutError("no such canary"), changed=False) == ExitCode.ERROR
    assert verb_exit_code(RolloutError("timed out"), changed=True) == ExitCode.UNSAFE
    assert verb_exit_code(KeyboardInterrupt(), changed=True) == ExitCode.UNSAFE


def test_watch_notes_requested_changes_and_forwards() -> None:
    seen: list[tuple[str, str]] = []

    class Inner:
        def event(self, kind: str, **fields: Any) -> dict[str, Any]:
            return {"kind": kind}

        def action(self, what: str, result: str, who: str | None = None, **d: Any) -> None:
            seen.append((what, result))

        def close(self) -> None:
            seen.append(("closed", ""))

    w = Watch(Inner())
    w.action("set_weight", "unchanged")
    w.action("set_weight", "error: Forbidden")
    assert not w.changed
    w.action("set_weight", "requested")
    assert w.changed
    w.close()
    assert seen[-1] == ("closed", "")
    assert Watch().event(Kind.ACTION) == {}


def test_drive_exits_with_the_verbs_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert drive(Watch(), lambda: "done") == "done"

    def refused() -> None:
        raise RolloutError("no CanaryDeployment default/hello")

    with pytest.raises(SystemExit) as stopped:
        drive(Watch(), refused)
    assert stopped.value.code == ExitCode.ERROR
    assert "nothing was changed" in capsys.readouterr().err

    watch = Watch()

    def interrupted_after_asking() -> None:
        watch.action("set_weight", "requested", weight=40)
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stopped:
        drive(watch, interrupted_after_asking)
    assert stopped.value.code == ExitCode.UNSAFE
    assert "check the canary" in capsys.readouterr().err


# -- help and usage errors -----------------------------------------------------------


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", ["run", "status", "weight", "replace", "abort", None])
def test_help_lists_the_exit_codes(command: str | None) -> None:
    result = CliRunner().invoke(cli, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0, result.output
    assert flat(EXIT_CODES_HELP) in flat(result.output)


def test_the_groups_own_codes_are_exit_codes() -> None:
    from canarylab.cli import codes

    assert (codes.ERROR, codes.USAGE) == (ExitCode.ERROR, ExitCode.USAGE)


def test_importing_the_cli_loads_no_pandas() -> None:
    """The controller image runs `canarylab controller` without pandas."""
    code = "import sys, canarylab.cli; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_help_line_names_every_code() -> None:
    for code in ExitCode:
        assert f"{int(code)} " in EXIT_CODES_HELP, code


def test_usage_errors_exit_64_not_2() -> None:
    """Click's 2 would read as "rolled back, safe"."""
    bad = CliRunner().invoke(cli, ["weight", "hello", "140"])
    assert bad.exit_code == ExitCode.USAGE
    assert "140 is not in the range" in bad.output
    assert CliRunner().invoke(cli, ["run", "no-such-runbook"]).exit_code == ExitCode.USAGE
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == ExitCode.USAGE


# -- signals reach the kernel ------------------------------------------------------------


def sleeper(folder: Path) -> Path:
    """A notebook whose second cell waits, noting when it started and whether it was interrupted."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"output_dir = {str(folder / 'out')!r}\nsecs = 120")
    params.metadata["tags"] = ["parameters"]
    wait = (
        "import pathlib, time\n"
        f"here = pathlib.Path({str(folder)!r})\n"
        "(here / 'started').write_text('1')\n"
        "try:\n"
        "    time.sleep(secs)\n"
        "except KeyboardInterrupt:\n"
        "    (here / 'interrupted').write_text('1')\n"
        "    raise\n"
    )
    after = f"import pathlib\npathlib.Path({str(folder)!r}, 'after').write_text('1')"
    nb.cells = [params, nbformat.v4.new_code_cell(wait), nbformat.v4.new_code_cell(after)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = folder / "sleeper.ipynb"
    nbformat.write(nb, str(path))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_interrupts_the_running_cell_and_skips_the_rest(
    tmp_path: Path, signum: signal.Signals
) -> None:
    exe = Path(sys.executable).parent / "canarylab"
    proc = subprocess.Popen(
        [str(exe), "run", str(sleeper(tmp_path)), "-o", str(tmp_path / "o.ipynb"), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_for(lambda: (tmp_path / "started").exists(), timeout=120, what="the cell to start")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "interrupted").exists(), err  # KeyboardInterrupt in the cell
    assert not (tmp_path / "after").exists()  # the later cell never ran
    assert "interrupting the kernel" in err
    # its record was never made: the kernel failed before any rollout began
    assert proc.returncode == ExitCode.ERROR, (out, err)
    cells = json.loads((tmp_path / "o.ipynb").read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert [o["ename"] for o in errors] == ["KeyboardInterrupt"]
