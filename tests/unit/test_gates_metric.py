"""Metric gates: templates, counter increments, judgement, and the Prometheus feed's I/O."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from canarylab import gates as g
from canarylab.dataplane.haproxy import GatewayPlan, metrics_frontend, render
from canarylab.gates import metric as m
from canarylab.rollout.prometheus import MetricsFeed, PrometheusClient, templates_for

DATA = Path(__file__).parent / "data"
WINDOW = g.Window(canary="v2", original="v1")
PARAMS = {
    "namespace": "demo",
    "canary_service": "web-canary",
    "original_service": "web",
    "since": "60s",
    "interval": "4s",
}


def counters(per_step: list[tuple[int, int]], t0: float = 1000.0) -> tuple[m.MetricSeries, ...]:
    """Cumulative (requests, failures) series of one server from per-step increments."""
    n = f = 0
    req, fail = [], []
    for i, (dn, df) in enumerate(per_step):
        n, f = n + dn, f + df
        req.append((t0 + i, float(n)))
        fail.append((t0 + i, float(f)))
    labels = '{"server": "x"}'
    return m.MetricSeries("req", {labels: tuple(req)}), m.MetricSeries(
        "fail", {labels: tuple(fail)}
    )


def evidence(canary: list[tuple[int, int]], original: list[tuple[int, int]]) -> m.MetricEvidence:
    cr, cf = counters(canary)
    orq, of = counters(original)
    return m.MetricEvidence(
        "haproxy/request-success-rate",
        {
            "canary.requests": cr,
            "canary.failures": cf,
            "original.requests": orq,
            "original.failures": of,
        },
    )


def traffic(e: m.MetricEvidence) -> g.Traffic:
    return g.Traffic(m.samples_from_counts(e, WINDOW), None, {e.template: e})


def test_render_replaces_only_known_parameters() -> None:
    text = 'sum(x{server=~"{namespace}\\\\.{service}\\\\.[0-9]+",code="5xx"}[{interval}])'
    out = m.render(text, {**PARAMS, "service": "web"})
    assert out == 'sum(x{server=~"demo\\\\.web\\\\.[0-9]+",code="5xx"}[4s])'
    with pytest.raises(m.MetricTemplateError, match="service"):
        m.render("{service}", PARAMS)


def test_builtin_haproxy_queries_select_each_side_by_server_name() -> None:
    queries = m.BUILTIN["haproxy/request-success-rate"].queries(PARAMS)
    assert set(queries) == {
        "canary.requests",
        "canary.failures",
        "original.requests",
        "original.failures",
    }
    assert 'server=~"demo\\\\.web-canary\\\\.[0-9]+"' in queries["canary.requests"]
    assert 'server=~"demo\\\\.web\\\\.[0-9]+"' in queries["original.requests"]
    # The regex a server name must match is exactly the one the data plane writes.
    pattern = "demo\\.web\\.[0-9]+"
    assert re.fullmatch(pattern, "demo.web.40123")
    assert not re.fullmatch(pattern, "demo.web-canary.40123")


def test_a_template_is_counts_or_ratio_never_both() -> None:
    with pytest.raises(m.MetricTemplateError, match="either"):
        m.MetricTemplate("bad", requests="a", failures="b", value="c")
    with pytest.raises(m.MetricTemplateError, match="either"):
        m.MetricTemplate("bad", requests="a")
    with pytest.raises(m.MetricTemplateError, match="unknown field"):
        m.MetricTemplate.from_data("bad", {"query": "x"})
    with pytest.raises(m.MetricTemplateError, match="unknown metric template"):
        m.template_for("nope")


def test_increments_handle_new_servers_resets_and_vanished_series() -> None:
    series = {
        "a": ((0.0, 10.0), (1.0, 15.0), (2.0, 3.0), (3.0, 5.0)),  # reset at t=2
        "b": ((2.0, 4.0), (3.0, 6.0)),  # a new server: its first value counts
    }
    assert m.increments(series) == {0.0: 0.0, 1.0: 5.0, 2.0: 7.0, 3.0: 4.0}


def test_a_canary_with_20_percent_errors_fails_with_its_promql() -> None:
    e = evidence([(10, 2)] * 40, [(90, 0)] * 40)
    v = m.MetricComparison(alpha=0.01).judge(traffic(e), WINDOW)
    assert v.outcome == "fail", v
    assert v.numbers["canary_failures"] == 78  # the first scrape is the base
    assert v.numbers["promql_canary_failures"] == "fail"
    assert "PromQL" in v.reason


def test_a_healthy_canary_passes_and_too_few_requests_is_insufficient() -> None:
    healthy = evidence([(10, 0)] * 30, [(90, 1)] * 30)
    assert m.MetricComparison().judge(traffic(healthy), WINDOW).outcome == "pass"
    few = evidence([(1, 0)] * 5, [(9, 0)] * 5)
    assert m.MetricComparison().judge(traffic(few), WINDOW).outcome == "insufficient"


@pytest.mark.parametrize(
    "problem",
    [
        m.MetricSeries("q", {}, "Prometheus at http://x unreachable: refused"),
        m.MetricSeries("q", {}),  # an empty result
    ],
    ids=["unreachable", "empty"],
)
def test_missing_metrics_are_insufficient_never_a_pass(problem: m.MetricSeries) -> None:
    e = evidence([(10, 0)] * 30, [(90, 0)] * 30)
    broken = m.MetricEvidence(e.template, {**e.queries, "canary.failures": problem})
    v = m.MetricComparison().judge(
        g.Traffic(traffic(e).samples, None, {e.template: broken}), WINDOW
    )
    assert v.outcome == "insufficient"
    assert "canary.failures" in v.reason
    no_metrics = m.MetricComparison().judge(g.Traffic(traffic(e).samples), WINDOW)
    assert no_metrics.outcome == "insufficient"


def ratio_evidence(canary: list[float], original: list[float]) -> m.MetricEvidence:
    def series(values: list[float]) -> m.MetricSeries:
        return m.MetricSeries("value", {"{}": tuple((float(i), v) for i, v in enumerate(values))})

    return m.MetricEvidence(
        "haproxy/request-duration",
        {"canary.value": series(canary), "original.value": series(original)},
    )


def test_threshold_fails_after_consecutive_looks_beyond_its_bound() -> None:
    gate = m.MetricThreshold(max_ratio=1.5, tolerance=0.005, looks=3)
    empty = traffic(evidence([], [])).samples

    def judge(e: m.MetricEvidence) -> g.Verdict:
        return gate.judge(g.Traffic(empty, None, {e.template: e}), WINDOW)

    slow = judge(ratio_evidence([0.001, 0.2, 0.2, 0.2], [0.01] * 4))
    assert slow.outcome == "fail", slow
    assert slow.numbers["bound"] == pytest.approx(0.02)
    assert judge(ratio_evidence([0.011, 0.012, 0.011], [0.01] * 3)).outcome == "pass"
    assert judge(ratio_evidence([0.2], [0.01])).outcome == "insufficient"


def test_gates_from_spec_take_a_template_name() -> None:
    gates = g.from_spec(
        {"traffic_share": False, "metric_comparison": "haproxy/request-success-rate"}
    )
    assert isinstance(gates[0], m.MetricComparison)
    levels = g.alpha_levels(0.01, [{"traffic_share": False, "metric_comparison": True}] * 3)
    assert levels["metric_comparison"] == pytest.approx(0.01)  # whole-run: charged once
    assert list(templates_for(gates)) == ["haproxy/request-success-rate"]
    user = {"my/errors": {"requests": 'sum(a{{s="{service}"}})', "failures": "sum(b)"}}
    mine = g.from_spec({"metric_comparison": "my/errors"})
    assert templates_for(mine, user)["my/errors"].kind == "counts"


def prometheus(handler: Any) -> PrometheusClient:
    return PrometheusClient("http://prom", httpx.Client(transport=httpx.MockTransport(handler)))


def test_feed_turns_range_queries_into_counts_and_records_what_it_judged() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        calls.append(query)
        canary = "web-canary" in query
        step = 10 if canary else 90
        failures = "5xx" in query
        values = [
            [1000 + i, str((2 if canary else 0) * i if failures else step * i)] for i in range(30)
        ]
        result = [{"metric": {"server": "s"}, "values": values}]
        return httpx.Response(200, json={"status": "success", "data": {"result": result}})

    events: list[tuple[str, Any]] = []
    gates = g.from_spec({"traffic_share": False, "metric_comparison": True})
    feed = MetricsFeed(
        prometheus(handler),
        templates_for(gates),
        "demo",
        "web",
        "v2",
        "v1",
        record=lambda kind, fields: events.append((kind, fields)),
        clock=lambda: 1030.0,
        start=1000.0,
    )
    seen = feed.traffic()
    assert len(calls) == 4
    assert set(seen.samples["version"]) == {"v2", "v1"}
    v = g.judge_all(gates, seen, WINDOW)[0]
    assert v.outcome == "fail", v
    kind, fields = events[0]
    assert kind == "metrics"
    assert {e["key"] for e in fields["evidence"]} >= {"canary.failures"}
    json.dumps(fields)  # plain data, as the recorder writes it
    feed.traffic()  # a second look records only the points it added
    assert all(not e["series"] for e in events[1][1]["evidence"])


def test_feed_reports_an_unreachable_prometheus_as_evidence_with_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    gates = g.from_spec({"traffic_share": False, "metric_comparison": True})
    feed = MetricsFeed(prometheus(handler), templates_for(gates), "demo", "web", "v2", "v1")
    seen = feed.traffic()
    assert seen.samples.empty
    v = gates[0].judge(seen, WINDOW)
    assert v.outcome == "insufficient"
    assert "unreachable" in v.reason
    assert feed.health().ok  # Prometheus trouble is the gates' (insufficient), not a probe loss


def test_haproxy_renders_the_exporter_on_its_own_loopback_frontend() -> None:
    text = render(GatewayPlan(()), 8080, Path("/tmp/admin.sock"), metrics_port=9101)
    assert "\n".join(metrics_frontend(9101)) in text
    assert "bind 127.0.0.1:9101" in text
    assert "prometheus-exporter" not in render(GatewayPlan(()), 8080, Path("/tmp/admin.sock"))


def exposition_series(text: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}\s", line)
        if found:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(2)))
            out.append((found.group(1), labels))
    return out


def test_apisix_templates_select_series_of_a_recorded_exposition() -> None:
    sample = exposition_series((DATA / "apisix-prometheus-sample.txt").read_text())
    for name in ("apisix/request-success-rate", "apisix/request-duration"):
        for key, promql in m.BUILTIN[name].queries(PARAMS).items():
            for metric, matchers in re.findall(r"(apisix_\w+)\{([^}]*)\}", promql):
                wanted = re.findall(r'(\w+)(=~|=)"([^"]*)"', matchers)
                hits = [
                    labels
                    for series_name, labels in sample
                    if series_name == metric
                    and all(
                        label in labels
                        and (
                            re.fullmatch(value, labels[label])
                            if op == "=~"
                            else labels[label] == value
                        )
                        for label, op, value in wanted
                    )
                ]
                assert hits, f"{name} {key}: {metric}{{{matchers}}} selects nothing"


def test_evidence_settings_that_could_never_decide_are_refused_up_front() -> None:
    from canarylab.rollout.prometheus import evidence_source

    probe = object()
    metric = g.from_spec({"metric_comparison": True})
    kw: dict[str, Any] = {"namespace": "demo", "service": "web", "version": "v2"}
    assert evidence_source("probe", probe, prometheus=None, gates=metric, **kw) is probe
    with pytest.raises(m.MetricTemplateError, match="one of"):
        evidence_source("logs", probe, prometheus=None, gates=metric, **kw)
    with pytest.raises(m.MetricTemplateError, match="at least one metric gate"):
        evidence_source("metrics", None, prometheus="http://p", gates=g.from_spec({}), **kw)
    both = g.from_spec({"metric_comparison": True, "latency_comparison": True})
    with pytest.raises(m.MetricTemplateError, match="per-request"):
        evidence_source("metrics", None, prometheus="http://p", gates=both, **kw)
    with pytest.raises(m.MetricTemplateError, match="needs Prometheus"):
        evidence_source("metrics", None, prometheus=None, gates=metric, **kw)
    feed = evidence_source("both", probe, prometheus="http://p", gates=metric, **kw)
    assert isinstance(feed, MetricsFeed)
    assert feed.probe is probe


def test_a_replay_shows_the_judged_series_with_their_promql(tmp_path: Path) -> None:
    from canarylab.plots import replay as replays
    from canarylab.record import Recorder

    recorder = Recorder(tmp_path / "record", {"kind": "canary-rollout"})

    def handler(request: httpx.Request) -> httpx.Response:
        values = [[1000 + i, str(5 * i)] for i in range(10)]
        result = [{"metric": {"server": "demo.web.1"}, "values": values}]
        return httpx.Response(200, json={"status": "success", "data": {"result": result}})

    gates = g.from_spec({"traffic_share": False, "metric_comparison": True})
    feed = MetricsFeed(
        prometheus(handler),
        templates_for(gates),
        "demo",
        "web",
        "v2",
        record=lambda kind, fields: recorder.event(kind, **fields),
        clock=lambda: 1010.0,
        start=1000.0,
    )
    feed.traffic()
    feed.traffic()
    recorder.close()
    r = replays.load(tmp_path / "record")
    judged = r.metric_queries()
    assert set(judged["key"]) == {
        "canary.requests",
        "canary.failures",
        "original.requests",
        "original.failures",
    }
    assert (judged["points"] == 10).all()  # the second look added nothing twice
    assert judged["query"].str.contains("haproxy_server_").all()
    assert (judged["last"] == 45).all()


def test_configmap_templates_are_yaml_mappings_per_key() -> None:
    from canarylab.rollout.prometheus import configmap_templates

    data = {"my/errors": 'requests: sum(a{s="{service}"})\nfailures: sum(b{s="{service}"})\n'}
    found = configmap_templates(data)
    assert m.MetricTemplate.from_data("my/errors", found["my/errors"]).kind == "counts"
    with pytest.raises(m.MetricTemplateError, match="YAML mapping"):
        configmap_templates({"bad": "- a list"})
