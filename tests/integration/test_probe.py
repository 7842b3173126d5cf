"""The probe against a real demo app: CLI JSON, live stream, files, and the wrk engine."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from canarylab.probe import SAMPLE_COLUMNS, Probe, ProbeSettings
from canarylab.probe.wrk import run_wrk
from tests.integration.test_dataplane_gateway import free_port, start_demo, wait_ready

pytestmark = pytest.mark.integration

CLI = [str(Path(sys.executable).parent / "canarylab")]


@pytest.fixture(scope="module")
def demo_url():  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_demo(port, "v3", DEMO_MESSAGE="hello Hongbo")
    wait_ready(port)
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait(10)


def test_cli_json_summary_is_one_object_scripts_can_read(demo_url):
    out = subprocess.run(
        [*CLI, "probe", demo_url, "-n", "300", "-c", "4", "-H", "X-Test: 1", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    summary = json.loads(out)
    assert summary["total"] == 300
    assert summary["by_version"] == {"v3": 300}
    assert summary["failed"] == {"http_errors": 0, "timeouts": 0, "conn_errors": 0}
    assert summary["rps"] > 0
    assert set(summary["latency_ms"]["v3"]) == {"p50_ms", "p95_ms", "p99_ms"}


def test_cli_body_regex_and_file_output(demo_url, tmp_path):
    out = tmp_path / "run.csv"
    text = subprocess.run(
        [*CLI, "probe", demo_url, "-n", "100", "--body-regex", r"hello (\w+)", "-o", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "Hongbo" in text  # the live table and summary name the version
    samples = pd.read_csv(out)
    assert tuple(samples.columns) == SAMPLE_COLUMNS
    assert samples["requests"].sum() == 100
    assert set(samples["version"]) == {"Hongbo"}
    assert len(pd.read_csv(tmp_path / "run.requests.csv")) == 100


def test_cli_rejects_a_bad_header_with_a_clear_message(demo_url):
    done = subprocess.run(
        [*CLI, "probe", demo_url, "-H", "no-colon"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "'Name: value'" in done.stderr


def test_stream_yields_closed_seconds_then_the_rest(demo_url):
    async def collect() -> tuple[list[pd.DataFrame], Probe]:
        probe = Probe(ProbeSettings(url=demo_url, duration=2.5, rate=100, connections=8))
        return [frame async for frame in probe.stream()], probe

    frames, probe = asyncio.run(collect())
    assert len(frames) >= 2
    for frame in frames:
        assert tuple(frame.columns) == SAMPLE_COLUMNS
    streamed = pd.concat(frames)
    assert probe.result is not None
    assert streamed["requests"].sum() == len(probe.result.requests)
    assert 200 <= streamed["requests"].sum() <= 260  # ~100/s for 2.5 s
    # Seconds do not repeat across frames, except the last partial one.
    assert streamed.groupby(["second", "version"]).size().max() <= 2


def test_wrk_engine_classifies_the_same_way(demo_url):
    result = run_wrk(ProbeSettings(url=demo_url, duration=2, connections=4))
    summary = result.summary()
    assert summary["total"] > 100
    assert summary["by_version"] == {"v3": summary["total"]}
    assert summary["failed_total"] == 0
    assert set(summary["latency_ms"]["all"]) == {"p50_ms", "p95_ms", "p99_ms"}
    assert tuple(result.samples.columns) == SAMPLE_COLUMNS
    assert result.samples["requests"].sum() == summary["total"]


def test_wrk_engine_refuses_what_it_cannot_do(demo_url):
    with pytest.raises(ValueError, match="drop --rate"):
        run_wrk(ProbeSettings(url=demo_url, rate=10))


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
def test_both_clients_classify_and_count_alike(demo_url, client):
    settings = ProbeSettings(url=demo_url, max_requests=300, connections=4, client=client)
    summary = asyncio.run(Probe(settings).run()).summary()
    assert summary["by_version"] == {"v3": 300}
    assert summary["failed_total"] == 0
    by_body = ProbeSettings(
        url=demo_url, max_requests=50, connections=2, client=client, body_regex=r"hello (\w+)"
    )
    assert asyncio.run(Probe(by_body).run()).summary()["by_version"] == {"Hongbo": 50}


def test_refused_connections_are_conn_errors():
    settings = ProbeSettings(url=f"http://127.0.0.1:{free_port()}/", max_requests=20, connections=2)
    summary = asyncio.run(Probe(settings).run()).summary()
    assert summary["failed"]["conn_errors"] == 20
    assert summary["by_version"] == {"unknown": 20}
