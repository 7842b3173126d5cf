"""The routers' pure route edits: weights, record, restore, match routes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canarylab.model.spec import Match, TrafficSplit, ValueMatch
from canarylab.routers import apisix, gatewayapi
from canarylab.routers.base import Owner, RouteProblem

OWNER = Owner("web", "uid-1", "ns")
PARENTS = frozenset({"web"})


def ar() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {
            "http": [
                {
                    "name": "main",
                    "priority": 2,
                    "match": {
                        "paths": ["/*"],
                        "exprs": [
                            {
                                "subject": {"scope": "Query", "name": "q"},
                                "op": "Equal",
                                "value": "1",
                            }
                        ],
                    },
                    "plugins": [{"name": "cors", "enable": True}],
                    "backends": [
                        {"serviceName": "web", "servicePort": 80},
                        {"serviceName": "mirror", "servicePort": 80, "weight": 1},
                    ],
                },
                {"name": "other", "backends": [{"serviceName": "other", "servicePort": 80}]},
            ]
        },
    }


def hr() -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "annotations": {"keep": "me"}},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["web.test"],
            "rules": [
                {"backendRefs": [{"name": "other", "port": 80}]},
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "filters": [{"type": "URLRewrite", "urlRewrite": {"hostname": "x"}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
                },
            ],
        },
    }


def test_apisix_weights_touch_only_weights_and_restore_exactly() -> None:
    original = ar()
    shifted = apisix.with_split(original, OWNER, {}, PARENTS, TrafficSplit(95, 5))
    rule = shifted["spec"]["http"][0]
    assert rule["backends"] == [
        {"serviceName": "web", "servicePort": 80, "weight": 95},
        {"serviceName": "web-canary", "servicePort": 80, "weight": 5},
        {"serviceName": "mirror", "servicePort": 80, "weight": 1},
    ]
    for key in ("name", "priority", "match", "plugins"):
        assert rule[key] == original["spec"]["http"][0][key]
    assert shifted["spec"]["http"][1] == original["spec"]["http"][1]
    assert apisix.current_split(apisix.find_targets(shifted, {}, PARENTS)) == TrafficSplit(95, 5)
    again = apisix.with_split(shifted, OWNER, {}, PARENTS, TrafficSplit(50, 50))
    assert [b.get("weight") for b in again["spec"]["http"][0]["backends"]] == [50, 50, 1]
    back = apisix.restored(again, OWNER)
    assert back == original  # the annotations map goes too: it did not exist before
    assert apisix.restored(original, OWNER) is None


def test_apisix_problems() -> None:
    with pytest.raises(RouteProblem) as caught:
        apisix.find_targets(ar(), {"rules": ["other"]}, PARENTS)
    assert caught.value.reason == "RuleWithoutParentBackend"
    assert "rule 'other'" in str(caught.value)
    with pytest.raises(RouteProblem) as caught:
        apisix.find_targets(ar(), {"rules": ["nope"]}, PARENTS)
    assert caught.value.reason == "RuleNotFound"
    with pytest.raises(RouteProblem) as caught:
        apisix.find_targets(ar(), {}, frozenset({"elsewhere"}))
    assert caught.value.reason == "RuleWithoutParentBackend"


def test_apisix_match_route() -> None:
    route = ar()
    targets = apisix.find_targets(route, {}, PARENTS)
    match = Match(
        headers=(ValueMatch("X-Canary", "yes"),),
        cookies=(ValueMatch("beta", "^on$", "RegularExpression"),),
        remote_addrs=("10.0.0.0/8",),
    )
    managed = apisix.match_route(route, OWNER, targets, match)
    assert managed["metadata"]["name"] == "web-match"
    assert managed["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    rule = managed["spec"]["http"][0]
    assert rule["priority"] == 3
    assert rule["plugins"] == route["spec"]["http"][0]["plugins"]
    assert rule["match"]["exprs"][1:] == [
        {"subject": {"scope": "Header", "name": "X-Canary"}, "op": "Equal", "value": "yes"},
        {"subject": {"scope": "Cookie", "name": "beta"}, "op": "RegexMatch", "value": "^on$"},
    ]
    assert rule["match"]["remoteAddrs"] == ["10.0.0.0/8"]
    assert rule["backends"] == [{"serviceName": "web-canary", "weight": 100, "servicePort": 80}]
    assert route == ar()  # the input is never modified


def test_gateway_weights_touch_only_weights_and_restore_exactly() -> None:
    original = hr()
    shifted = gatewayapi.with_split(
        copy.deepcopy(original), OWNER, {}, PARENTS, TrafficSplit(40, 60)
    )
    refs = shifted["spec"]["rules"][1]["backendRefs"]
    assert refs == [
        {"group": "", "kind": "Service", "name": "web", "port": 80, "weight": 40},
        {"name": "web-canary", "weight": 60, "port": 80},
    ]
    assert shifted["spec"]["rules"][0] == original["spec"]["rules"][0]
    assert shifted["metadata"]["annotations"]["keep"] == "me"
    assert gatewayapi.restored(shifted, OWNER) == original


def test_gateway_rule_indexes() -> None:
    with pytest.raises(RouteProblem) as caught:
        gatewayapi.find_targets(hr(), {"rules": [0]}, PARENTS)
    assert caught.value.reason == "RuleWithoutParentBackend"
    with pytest.raises(RouteProblem) as caught:
        gatewayapi.find_targets(hr(), {"rules": [7]}, PARENTS)
    assert caught.value.reason == "RuleNotFound"
    assert [t[0] for t in gatewayapi.find_targets(hr(), {}, PARENTS)] == [1]


def test_gateway_match_route() -> None:
    route = hr()
    targets = gatewayapi.find_targets(route, {}, PARENTS)
    match = Match(headers=(ValueMatch("X-Canary", "yes"),), cookies=(ValueMatch("beta", "on"),))
    managed = gatewayapi.match_route(route, OWNER, targets, match)
    assert managed["spec"]["parentRefs"] == [{"name": "gw"}]
    assert managed["spec"]["hostnames"] == ["web.test"]
    rule = managed["spec"]["rules"][0]
    headers = rule["matches"][0]["headers"]
    assert headers[0] == {"type": "Exact", "name": "X-Canary", "value": "yes"}
    assert headers[1]["name"] == "Cookie"
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/api"}
    assert rule["filters"] == route["spec"]["rules"][1]["filters"]
    assert rule["backendRefs"] == [{"name": "web-canary", "weight": 1, "port": 80}]


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        ("beta=on", True),
        ("a=1; beta=on", True),
        ("beta=on; z=2", True),
        ("xbeta=on", False),
        ("beta=onx", False),
    ],
)
def test_cookie_regex(header: str, hit: bool) -> None:
    import re

    assert bool(re.fullmatch(gatewayapi.cookie_regex("beta", "on", "Exact"), header)) is hit


def test_gateway_refuses_source_addresses() -> None:
    route = hr()
    targets = gatewayapi.find_targets(route, {}, PARENTS)
    with pytest.raises(RouteProblem) as caught:
        gatewayapi.match_route(route, OWNER, targets, Match(remote_addrs=("10.0.0.0/8",)))
    assert caught.value.reason == "MatchUnsupported"
    assert "apisix" in str(caught.value)
