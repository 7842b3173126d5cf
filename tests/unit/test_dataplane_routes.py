"""Route objects → gateway rules → HAProxy configuration: the pure translation."""

from __future__ import annotations

from canarylab.dataplane.haproxy import GatewayPlan, plan, quote, render, server_weights
from canarylab.dataplane.routes import (
    RequestMatch,
    ValueMatch,
    apisix_rules,
    dispatch_order,
    httproute_rules,
    ordered,
    sandbox_host,
)
from canarylab.dataplane.workloads import (
    SLICE_MANAGER,
    endpoint_slices,
    loopback_address,
)


def apisix(name: str = "web", namespace: str = "demo", rules: list[dict] | None = None) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "http": rules
            or [
                {
                    "name": "main",
                    "match": {"paths": ["/*"], "hosts": ["Web.Example.com"]},
                    "backends": [
                        {"serviceName": "web", "servicePort": 80, "weight": 95},
                        {"serviceName": "web-canary", "servicePort": 80, "weight": 5},
                    ],
                }
            ]
        },
    }


def test_apisix_rule_has_sandbox_host_declared_hosts_and_weights():
    rules, problems = apisix_rules(apisix())
    assert problems == []
    (rule,) = rules
    assert rule.hosts == ("web.demo.sandbox", "web.example.com")
    assert rule.matches == (RequestMatch(),)  # "/*" matches every path
    assert [(s.name, s.weight) for s in rule.services] == [("web", 95), ("web-canary", 5)]


def test_apisix_exprs_become_header_cookie_and_query_matches():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                {
                    "name": "canary",
                    "priority": 3,
                    "match": {
                        "paths": ["/api*", "/exact"],
                        "methods": ["get"],
                        "remoteAddrs": ["10.0.0.0/8"],
                        "exprs": [
                            {
                                "subject": {"scope": "Header", "name": "X-Canary"},
                                "op": "Equal",
                                "value": "1",
                            },
                            {
                                "subject": {"scope": "Cookie", "name": "c"},
                                "op": "RegexMatch",
                                "value": "^y",
                            },
                            {
                                "subject": {"scope": "Query", "name": "q"},
                                "op": "In",
                                "set": ["a", "b"],
                            },
                        ],
                    },
                    "backends": [{"serviceName": "web-canary"}],
                }
            ]
        )
    )
    (rule,) = rules
    assert rule.priority == 3
    # Each path is a match of its own: APISIX ranks every path separately.
    prefix, match = rule.matches
    assert (prefix.path_prefixes, prefix.paths) == (("/api",), ())
    assert (match.path_prefixes, match.paths) == ((), ("/exact",))
    assert prefix.values == match.values
    assert match.methods == ("GET",)
    assert match.remote_addrs == ("10.0.0.0/8",)
    assert match.values == (
        ValueMatch("header", "X-Canary", "exact", ("1",)),
        ValueMatch("cookie", "c", "regex", ("^y",)),
        ValueMatch("query", "q", "in", ("a", "b")),
    )
    assert rule.services[0].weight == 100  # APISIX's default weight


def test_unsupported_apisix_expression_is_reported_and_rule_skipped():
    rules, problems = apisix_rules(
        apisix(
            rules=[
                {
                    "name": "odd",
                    "match": {
                        "exprs": [
                            {"subject": {"scope": "Body", "name": "x"}, "op": "Equal", "value": "1"}
                        ]
                    },
                    "backends": [{"serviceName": "web"}],
                }
            ]
        )
    )
    assert rules == []
    assert "not supported" in problems[0].message


def test_httproute_rules_matches_and_default_weight():
    route = {
        "metadata": {"name": "web", "namespace": "ns1"},
        "spec": {
            "hostnames": ["a.example"],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/"},
                            "headers": [{"name": "x-canary", "value": "yes"}],
                        }
                    ],
                    "backendRefs": [{"name": "web-canary", "port": 80}],
                },
                {
                    "backendRefs": [
                        {"name": "web", "port": 80, "weight": 3},
                        {"name": "web-canary", "port": 80},
                    ]
                },
            ],
        },
    }
    rules, problems = httproute_rules(route)
    assert problems == []
    header_rule, split_rule = rules
    assert header_rule.hosts == ("web.ns1.sandbox", "a.example")
    assert header_rule.matches[0].values == (ValueMatch("header", "x-canary", "exact", ("yes",)),)
    assert [(s.name, s.weight) for s in split_rule.services] == [("web", 3), ("web-canary", 1)]
    assert ordered([split_rule, header_rule])[0] is header_rule


def test_higher_priority_first_then_more_conditions():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                {"name": "low", "backends": [{"serviceName": "a"}]},
                {"name": "high", "priority": 5, "backends": [{"serviceName": "b"}]},
                {
                    "name": "specific",
                    "match": {
                        "exprs": [
                            {
                                "subject": {"scope": "Header", "name": "h"},
                                "op": "Equal",
                                "value": "v",
                            }
                        ]
                    },
                    "backends": [{"serviceName": "c"}],
                },
            ]
        )
    )
    assert [r.rule for r in ordered(rules)] == ["high", "specific", "low"]


def test_routes_in_different_namespaces_get_different_hosts():
    assert sandbox_host("web", "t-1") != sandbox_host("web", "t-2")


def test_server_weights_follow_route_weights_across_processes():
    stable = [("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)]
    canary = [("127.0.0.1", 9)]
    for weight in (1, 5, 25, 50, 99):
        weights = server_weights([(100 - weight, stable), (weight, canary)])
        share = weights[canary[0]] / sum(weights.values())
        assert abs(share - weight / 100) < 0.005, (weight, weights)
        assert max(weights.values()) == 256


def test_zero_weight_and_missing_endpoints():
    a, b = ("127.0.0.1", 1), ("127.0.0.1", 2)
    assert server_weights([(100, [a]), (0, [b])]) == {a: 256, b: 0}
    assert server_weights([(0, [a])]) == {a: 0}
    assert server_weights([(50, [a]), (50, [])]) == {a: 256}


def test_rendered_config_routes_hosts_and_matches_to_backends():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                {
                    "name": "canary",
                    "priority": 1,
                    "match": {
                        "exprs": [
                            {
                                "subject": {"scope": "Header", "name": "X-Canary"},
                                "op": "Equal",
                                "value": "it's",
                            }
                        ]
                    },
                    "backends": [{"serviceName": "web-canary"}],
                },
                {"name": "main", "backends": [{"serviceName": "web"}]},
            ]
        )
    )
    gateway = plan(rules, {("demo", "web"): [("127.0.0.1", 5001)], ("demo", "web-canary"): []})
    text = render(gateway, 8080, "/tmp/admin.sock")  # type: ignore[arg-type]
    canary, main = gateway.backends
    assert canary.servers == ()
    assert [s.name for s in main.servers] == ["demo.web.5001"]
    assert "bind 127.0.0.1:8080" in text
    assert "req.hdr(host),lower,field(1,:) -m str 'web.demo.sandbox'" in text
    assert "req.hdr('x-canary') -m str \"it's\"" in text
    # The header rule is tried before the catch-all.
    assert text.index(f"use_backend {canary.name}") < text.index(f"use_backend {main.name}")
    assert "server demo.web.5001 127.0.0.1:5001 weight 256" in text
    structure = render(gateway, 8080, "/tmp/admin.sock", servers=False)  # type: ignore[arg-type]
    assert "server demo.web.5001" not in structure
    # Only weights differ → same structure → no reload needed.
    other = plan(rules, {("demo", "web"): [("127.0.0.1", 5002)]})
    assert render(other, 8080, "/tmp/admin.sock", servers=False) == structure  # type: ignore[arg-type]


def test_quote_keeps_values_literal():
    assert quote("a b") == "'a b'"
    assert quote("it's $HOME") == '"it\'s \\$HOME"'


def test_empty_plan_renders():
    assert "default_backend no_route" in render(GatewayPlan(()), 1, "/s")  # type: ignore[arg-type]


def test_invalid_regex_skips_only_that_rule():
    rules, problems = apisix_rules(
        apisix(
            rules=[
                {
                    "name": "bad",
                    "match": {
                        "exprs": [
                            {
                                "subject": {"scope": "Header", "name": "h"},
                                "op": "RegexMatch",
                                "value": "([",
                            }
                        ]
                    },
                    "backends": [{"serviceName": "web-canary"}],
                },
                {"name": "main", "backends": [{"serviceName": "web"}]},
            ]
        )
    )
    assert [r.rule for r in rules] == ["main"]
    assert "is invalid" in problems[0].message
    route = {
        "metadata": {"name": "web", "namespace": "ns1"},
        "spec": {
            "rules": [
                {
                    "matches": [
                        {"headers": [{"type": "RegularExpression", "name": "h", "value": "(["}]}
                    ],
                    "backendRefs": [{"name": "web"}],
                }
            ]
        },
    }
    rules, problems = httproute_rules(route)
    assert rules == []
    assert "is invalid" in problems[0].message


# ------------------------------------------------- host semantics and precedence
def rule_of(name: str, **match: object) -> dict:
    return {"name": name, "match": match, "backends": [{"serviceName": name}]}


def order_of(rules: list) -> list[tuple[str, int, bool]]:
    return [(d.rule.rule, d.match, d.any_host) for d in dispatch_order(rules)]


def test_apisix_rule_without_hosts_takes_every_host_after_named_hosts():
    rules, _ = apisix_rules(
        apisix(rules=[rule_of("open", paths=["/*"]), rule_of("named", hosts=["a.example"])])
    )
    open_rule, named = rules
    assert open_rule.any_host
    assert not named.any_host
    assert open_rule.hosts == ("web.demo.sandbox",)  # still addressable on its own
    # Named-host lines (the sandbox host included) first, then the catch-all.
    assert sorted(order_of(rules)[:2]) == [("named", 0, False), ("open", 0, False)]
    assert order_of(rules)[2] == ("open", 0, True)
    gateway = plan(rules, {})
    text = render(gateway, 8080, "/tmp/admin.sock")  # type: ignore[arg-type]
    uses = [line.strip() for line in text.splitlines() if "use_backend" in line]
    (open_backend,) = [b for b in gateway.backends if b.rule is open_rule]
    # The catch-all takes any host except a sandbox one: <route>.<ns>.sandbox isolates.
    assert uses[-1] == f"use_backend {open_backend.name} if !sandbox_host"
    assert all("sandbox_host" not in use for use in uses[:-1])
    assert "acl sandbox_host req.hdr(host),lower,field(1,:) -m end '.sandbox'" in text


def test_wildcard_hosts_do_not_turn_into_every_host():
    (rule,), _ = apisix_rules(apisix(rules=[rule_of("w", hosts=["*.example.com"])]))
    assert not rule.any_host
    assert rule.hosts == ("web.demo.sandbox",)


def test_apisix_exact_path_then_longer_prefix_then_priority():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                rule_of("root", paths=["/*"]),
                rule_of("api", paths=["/api/*"]),
                {**rule_of("api-v1", paths=["/api/v1/*"]), "priority": -5},
                {**rule_of("loud", paths=["/api/*"]), "priority": 10},
                rule_of("exact", paths=["/api/v1/x"]),
            ]
        )
    )
    named = [(r, a) for r, a, any_host in order_of(rules) if not any_host]
    # Priority ranks only among the same path; an exact path beats every prefix.
    assert [r for r, _ in named] == ["exact", "api-v1", "loud", "api", "root"]


def test_apisix_named_host_beats_higher_priority_catch_all():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                {**rule_of("everyone"), "priority": 100},
                rule_of("mine", hosts=["a.example"]),
            ]
        )
    )
    # On a.example only "mine" names the host, and it is tried before the catch-all.
    assert order_of(rules)[-1] == ("everyone", 0, True)
    assert ("mine", 0, False) in order_of(rules)[:-1]


def test_apisix_rule_paths_rank_one_by_one():
    rules, _ = apisix_rules(
        apisix(
            rules=[
                rule_of("two", paths=["/a*", "/abc/def*"]),
                {**rule_of("mid", paths=["/abc*"]), "priority": 1},
            ]
        )
    )
    named = [(r, a) for r, a, any_host in order_of(rules) if not any_host]
    assert named == [("two", 1), ("mid", 0), ("two", 0)]


def httproute(name: str, rules: list, hostnames: list | None = None) -> dict:
    spec: dict = {"rules": rules}
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {"metadata": {"name": name, "namespace": "ns1"}, "spec": spec}


def test_httproute_without_hostnames_takes_every_host():
    (rule,), _ = httproute_rules(httproute("web", [{"backendRefs": [{"name": "web"}]}]))
    assert rule.any_host
    (named,), _ = httproute_rules(
        httproute("web", [{"backendRefs": [{"name": "web"}]}], hostnames=["a.example"])
    )
    assert not named.any_host


def test_httproute_precedence_follows_gateway_api():
    def m(**kw: object) -> dict:
        return {"matches": [kw], "backendRefs": [{"name": "s"}]}

    rules, problems = httproute_rules(
        httproute(
            "web",
            [
                m(path={"type": "PathPrefix", "value": "/"}),
                m(
                    path={"type": "PathPrefix", "value": "/"},
                    queryParams=[{"name": "q", "value": "1"}],
                ),
                m(path={"type": "PathPrefix", "value": "/"}, headers=[{"name": "h", "value": "1"}]),
                m(path={"type": "PathPrefix", "value": "/"}, method="GET"),
                m(path={"type": "PathPrefix", "value": "/api"}),
                m(path={"type": "Exact", "value": "/api"}),
            ],
        )
    )
    assert problems == []
    named = [r for r, _, any_host in order_of(rules) if not any_host]
    # Exact, longest prefix, method, headers, query, then rule order.
    assert named == ["5", "4", "3", "2", "1", "0"]
    assert {r.priority for r in rules} == {0}


# --------------------------------------------- endpoints for real gateways
def test_each_process_gets_its_own_loopback_address():
    assert loopback_address([]) == "127.0.0.2"
    assert loopback_address(["127.0.0.2", "127.0.0.3"]) == "127.0.0.4"
    assert loopback_address(["127.0.0.3"]) == "127.0.0.2"  # freed addresses are reused
    every = [f"127.0.0.{n}" for n in range(2, 255)]
    assert loopback_address(every) == "127.0.0.1"


def test_endpoint_slices_are_fqdn_one_per_process():
    slices = endpoint_slices(
        {("demo", "web"): [("127.0.0.2", 4001), ("127.0.0.3", 4002)], ("demo", "none"): []}
    )
    assert [s["metadata"]["name"] for s in slices] == ["web-dp-4001", "web-dp-4002"]
    first = slices[0]
    assert first["addressType"] == "FQDN"
    assert first["endpoints"] == [{"addresses": ["127.0.0.2"], "conditions": {"ready": True}}]
    assert first["ports"] == [{"name": "", "port": 4001, "protocol": "TCP"}]
    labels = first["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "web"
    assert labels["endpointslice.kubernetes.io/managed-by"] == SLICE_MANAGER
