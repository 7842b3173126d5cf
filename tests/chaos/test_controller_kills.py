"""30 rollouts, the controller SIGKILLed once in each, every invariant checked.

Each rollout creates a CanaryDeployment of the demo app, shifts its weight, then
either replaces the parent with it or aborts, and deletes it, while the real probe
sends traffic through the sandbox gateway and a sampler watches the route and the
Deployments. The controller is killed at a random moment (seeded: the seed is
printed, ``CANARYLAB_CHAOS_SEED`` replays it) and restarted 0-3 s later.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos import faults, invariants
from tests.chaos.faults import PARENT, RULE, Killer, KillPlan, ProbeLoop, Sampler
from tests.helpers import wait_for
from tests.integration.controller_kit import Kit

pytestmark = pytest.mark.integration

ROLLOUTS = int(os.environ.get("CANARYLAB_CHAOS_ROLLOUTS", "30"))
WAIT = 150.0
"""Seconds any one step may take: a kill, a 3 s delay and a controller start included."""


class RolloutFailed(Exception):
    """A step did not converge; the rollout is counted as a violation."""


def until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    try:
        return wait_for(check, timeout, interval=0.1, what=what)
    except AssertionError as err:
        raise RolloutFailed(str(err)) from err


def rollout(
    kit: Kit,
    killer: Killer,
    number: int,
    rng: random.Random,
    parent_version: str,
    windows: list[invariants.Window],
) -> tuple[str, list[str]]:
    """One rollout; returns the parent's version afterwards and the violations seen."""
    version = f"v{number + 1}"
    replace = rng.random() < 0.7
    first, second = rng.choice([0, 5, 10, 20]), rng.choice([25, 50, 75, 90])
    plan = KillPlan.draw(rng)
    killer.plan(number, plan)
    before = invariants.route_shape(kit.get_route("apisix", PARENT) or {})
    problems: list[str] = []

    killer.stage_started("create")
    start = time.time()
    kit.create(faults.canary_body(version, first))
    until(faults.converged(kit, first), f"rollout {number}: Serving at weight {first}")
    faults.window(windows, "create", start)

    killer.stage_started("shift")
    start = time.time()
    kit.patch(PARENT, {"weight": second})
    until(faults.converged(kit, second), f"rollout {number}: Serving at weight {second}")
    route = kit.get_route("apisix", PARENT) or {}
    problems += invariants.status_matches_route(kit.status(PARENT), route, RULE)
    faults.window(windows, "shift", start)

    if replace:
        killer.stage_started("replace")
        start = time.time()
        kit.patch(PARENT, {"replace": True})
        until(lambda: kit.status(PARENT).get("phase") == "Replaced", f"rollout {number}: Replaced")
        faults.window(windows, "replace", start)
        image = faults.parent_image(kit)
        if image != f"canarylab/demo:{version}":
            problems.append(f"replaced, but the parent runs {image}, not {version}")
        if invariants.route_shape(kit.get_route("apisix", PARENT) or {}) != before:
            problems.append("replaced, but the route is not back to its original shape")

    killer.stage_started("delete")
    start = time.time()
    kit.delete(PARENT)
    until(lambda: kit.get(PARENT) is None, f"rollout {number}: CanaryDeployment gone")
    faults.window(windows, "delete", start)

    expected = version if replace else parent_version
    problems += faults.settled_problems(kit, before, expected)

    killer.stage_started("between")
    killer.wait_killed(number)
    return expected, [f"rollout {number}: {p}" for p in problems]


def recover(kit: Kit) -> None:
    """After a rollout that did not converge: make sure the next one starts clean."""
    if kit.get(PARENT) is not None:
        kit.delete(PARENT)
    wait_for(lambda: kit.get(PARENT) is None, WAIT, what="the stuck CanaryDeployment to go")


@pytest.mark.timeout(2400)
def test_thirty_rollouts_with_controller_kills(
    kit: Kit, controller: Any, sandbox: Any, gateway: str
) -> None:
    seed = int(os.environ.get("CANARYLAB_CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    print(f"\n[chaos] seed {seed} (replay with CANARYLAB_CHAOS_SEED={seed})")
    rng = random.Random(seed)
    faults.create_app(kit)
    wait_for(
        lambda: faults.parent_image(kit) and kit.deployments()[PARENT].status.ready_replicas,
        60,
        what="parent ready",
    )

    wait_for(
        lambda: faults.gateway_answers(gateway, kit.ns), 60, what="the gateway to serve the app"
    )

    def kill() -> bool:
        alive = controller.proc is not None and controller.proc.poll() is None
        controller.kill()
        return alive

    def start() -> None:
        t = time.monotonic()
        controller.start(timeout=WAIT)
        print(f"[chaos] controller up again in {time.monotonic() - t:.1f}s")

    killer = Killer(kill, start)
    sampler = Sampler(str(sandbox.kubeconfig), kit.ns)
    probe = ProbeLoop(gateway, kit.ns)
    windows: list[invariants.Window] = []
    violations: list[str] = []
    parent_version = "v0"
    started = time.monotonic()
    killer.start()
    sampler.start()
    probe.start()
    try:
        for number in range(ROLLOUTS):
            t0, wall = time.monotonic(), time.time()
            try:
                parent_version, found = rollout(kit, killer, number, rng, parent_version, windows)
            except RolloutFailed as err:
                found = [f"rollout {number}: {err}"]
                killer.wait_idle()
                recover(kit)
                parent_version = faults.parent_image(kit).rsplit(":", 1)[1]
            violations += found
            steps = ", ".join(
                f"{w.stage} {w.end - w.start:.1f}s" for w in windows if w.start >= wall
            )
            kill = next(
                (
                    f"{k[1]}+{k[2].offset:.1f}s, down {k[2].delay:.1f}s"
                    for k in killer.kills
                    if k[0] == number
                ),
                "-",
            )
            print(
                f"[chaos] rollout {number}: {time.monotonic() - t0:.1f}s ({steps}; kill {kill}), "
                f"{len(found)} violations"
            )
            if killer.error is not None:
                raise killer.error
        killer.wait_idle()
    finally:
        requests = probe.stop()
        sampler.stop()
        killer.stop()
    violations += sampler.violations
    elapsed = time.monotonic() - started

    errors = list(requests["error"]) if not requests.empty else []
    times = list(requests["t"]) if not requests.empty else []
    during_replace_delete = invariants.failures_in(times, errors, windows, {"replace", "delete"})
    failed = sum(1 for e in errors if e is not None and e == e)
    stages = Counter(stage for _, stage, _ in killer.kills)
    print(f"[chaos] {elapsed:.0f}s; kills by stage: {dict(stages)}; missed kills: {killer.missed}")
    print(
        f"[chaos] probe: {len(errors)} requests, {failed} failed "
        f"({during_replace_delete} during replace/delete); sampler: {sampler.samples} samples, "
        f"{sampler.errors} read errors"
    )
    for v in violations:
        print(f"[chaos] violation: {v}")
    print(
        f"rollouts: {ROLLOUTS}, kills: {len(killer.kills)}, violations: {len(violations)}, "
        f"failed requests: {failed}"
    )
    log = controller.log_path.read_text(errors="replace")
    unexpected = log.count("due to an unexpected error")
    print(
        f"[chaos] controller log: {unexpected} 'unexpected error' throttles ({controller.log_path})"
    )
    assert len(killer.kills) == ROLLOUTS, f"missed kills in rollouts {killer.missed}"
    assert sampler.samples > 100, "the sampler saw too little to judge the weights"
    assert len(errors) > 1000, "the probe sent too little traffic to judge failures"
    assert violations == [], violations
    assert during_replace_delete == 0
    assert failed == 0
