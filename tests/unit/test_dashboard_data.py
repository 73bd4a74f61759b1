"""The dashboard's numbers: bounded labels, what a request adds to its minute, the 1- and
5-minute buckets, the chart points and window breakdowns, and the Prometheus metrics
fed from the same records."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from extensions.observe.labels import ERROR_TYPES, OTHER, Labels
from extensions.observe.metrics import GatewayMetrics
from extensions.observe.observer import Observer
from extensions.observe.request_log import RequestLog
from extensions.observe.series import WINDOWS, breakdowns, percentile_ms, point, series
from extensions.observe.settings import Observability, RequestLogSettings
from extensions.observe.timeline import (
    MemoryTimeline,
    TimelineRecorder,
    by_size,
    error_class,
    increments,
    latency_slot,
)

pytestmark = pytest.mark.unit

LABELS = Labels.of(
    groups=["gpt-sim", "claude-sim", "gpt-sim-mini"],
    deployments={
        "gpt-sim-a": "openai",
        "gpt-sim-b": "openai",
        "claude-sim": "anthropic",
        "gpt-sim-mini": "openai",
    },
    routers={"support-bot": ["technical_issue", "reset_password"]},
    keys={"app": "support", "batch": None},
    teams=["support", "data"],
)


def record(**fields: Any) -> dict[str, Any]:
    """A request-log record (a plain model call unless ``fields`` say otherwise)."""
    out: dict[str, Any] = {
        "status": 200,
        "action": "DIRECT",
        "cache": "MISS",
        "route": "gpt-sim",
        "key_alias": "app",
        "team": "support",
        "router": None,
        "intent": None,
        "model_group": "gpt-sim",
        "deployment": "gpt-sim-a",
        "provider": "openai",
        "fallbacks": 0,
        "tokens": {"prompt": 10, "completion": 20, "cached": 0},
        "cost_usd": 0.002,
        "saved_usd": 0.0,
        "latency_ms": {"total": 120.0},
        "error": None,
    }
    out.update(fields)
    return out


def error(kind: str, source: str = "gateway") -> dict[str, str]:
    return {"type": kind, "message": "x", "source": source}


NOT_SERVED: dict[str, Any] = {
    "model_group": None,
    "deployment": None,
    "provider": None,
    "cost_usd": 0.0,
    "tokens": {},
    "cache": "NONE",
}
MIX = [
    record(),
    record(deployment="gpt-sim-b", latency_ms={"total": 300.0}),
    record(
        route="claude-sim",
        model_group="gpt-sim-mini",
        deployment="gpt-sim-mini",
        fallbacks=1,
        failed_attempts=[{"model_group": "claude-sim", "error": "InternalServerError"}],
    ),
    record(
        cache="HIT_EXACT",
        deployment="cache",
        provider="gateway",
        cost_usd=0.0,
        saved_usd=0.002,
        tokens={},
        latency_ms={"total": 4.0},
    ),
    record(
        cache="HIT_SEMANTIC",
        deployment="cache",
        provider="gateway",
        cost_usd=0.0,
        saved_usd=0.001,
        tokens={},
        latency_ms={"total": 9.0},
    ),
    record(
        route="support-bot",
        router="support-bot",
        action="RESPOND",
        intent="reset_password",
        model_group=None,
        deployment="router",
        provider="gateway",
        cost_usd=0.0,
        saved_usd=0.0005,
        tokens={},
        cache="BYPASS",
        latency_ms={"total": 7.0},
        pii={"action": "redacted", "kinds": ["email"]},
    ),
    record(
        route="support-bot",
        router="support-bot",
        action="ROUTE",
        intent="technical_issue",
        model_group="claude-sim",
        deployment="claude-sim",
        provider="anthropic",
        degraded="claude-sim -> gpt-sim-mini (budget 85% spent)",
    ),
    record(status=429, error=error("rate_limit_error"), **NOT_SERVED),
    record(status=429, error=error("budget_exceeded"), key_alias="batch", team=None, **NOT_SERVED),
    record(status=429, error=error("all_deployments_in_cooldown", "upstream"), **NOT_SERVED),
    record(status=429, error=error("rate_limit_error", "upstream"), **NOT_SERVED),
    record(
        status=502,
        error=error("upstream_error", "upstream"),
        **NOT_SERVED,
        failed_attempts=[{"model_group": "gpt-sim", "error": "InternalServerError"}] * 2,
    ),
    record(
        status=401, error=error("authentication_error"), key_alias=None, team=None, **NOT_SERVED
    ),
]


def test_labels_only_take_configured_names() -> None:
    assert LABELS.group("gpt-sim") == "gpt-sim" and LABELS.group("made-up") == OTHER
    assert LABELS.group(None) == "none" and LABELS.group(7) == OTHER
    assert LABELS.deployment("cache") == "cache" and LABELS.deployment("gpt-sim-c") == OTHER
    assert LABELS.provider("gateway") == "gateway" and LABELS.provider("azure") == OTHER
    assert LABELS.key("app") == "app" and LABELS.key("master") == "master"
    assert LABELS.key("stranger") == OTHER
    assert LABELS.team("data") == "data" and LABELS.team("nobody") == OTHER
    assert LABELS.route("support-bot") == "support-bot" and LABELS.route("gpt-sim") == "gpt-sim"
    assert LABELS.intent("support-bot", "reset_password") == "reset_password"
    assert LABELS.intent("support-bot", "out_of_scope") == "out_of_scope"
    assert LABELS.intent("support-bot", "made_up") == OTHER
    assert LABELS.intent("support-bot", None) == "none"
    assert Labels().group("gpt-sim") == OTHER, "nothing configured: nothing named"


def test_error_classes_tell_gateway_limits_from_upstream_cooldowns() -> None:
    assert error_class(429, "rate_limit_error", "gateway") == "gateway_rate_limit"
    assert error_class(429, "budget_exceeded", "gateway") == "gateway_budget"
    assert error_class(429, "all_deployments_in_cooldown", "upstream") == "upstream_cooldown"
    assert error_class(429, "rate_limit_error", "upstream") == "upstream_rate_limit"
    assert error_class(502, "upstream_error", "upstream") == "upstream_failed"
    assert error_class(504, "timeout", "upstream") == "upstream_failed"
    assert error_class(400, "invalid_request_error", "upstream") == "upstream_rejected"
    assert error_class(503, "service_unavailable", "gateway") == "gateway_error"
    assert error_class(401, "authentication_error", "gateway") == "client_error"
    assert error_class(499, "none", "gateway") == "client_gone"


def test_error_types_cover_every_gateway_error_and_upstream_kind() -> None:
    from extensions.pipeline import errors
    from extensions.proxy.upstream import upstream_error

    def subclasses(cls: type[errors.GatewayError]) -> set[type[errors.GatewayError]]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    types = {c.type for c in subclasses(errors.GatewayError)}

    class Fake(Exception):
        def __init__(self, status: int, kind: str = "") -> None:
            self.status_code, self.type = status, kind

    kinds = {
        upstream_error(Fake(status, kind)).type
        for status, kind in [
            (429, "all_deployments_in_cooldown"),
            (429, ""),
            (400, ""),
            (408, ""),
            (500, ""),
        ]
    }
    assert kinds == {
        "all_deployments_in_cooldown",
        "rate_limit_error",
        "invalid_request_error",
        "timeout",
        "upstream_error",
    }
    assert types | kinds <= ERROR_TYPES


def test_a_routed_model_call_adds_its_breakdowns() -> None:
    rec = record(
        route="support-bot",
        router="support-bot",
        action="ROUTE",
        intent="technical_issue",
        model_group="claude-sim",
        deployment="claude-sim",
        provider="anthropic",
        latency_ms={"total": 120.0},
    )
    slot = f"l{latency_slot(120.0)}"
    got = increments(rec, LABELS)
    for dim, value in (("T", "*"), ("G", "claude-sim"), ("D", "claude-sim"), ("P", "anthropic")):
        assert got[f"{dim}|{value}|n"] == 1 and got[f"{dim}|{value}|{slot}"] == 1
        assert got[f"{dim}|{value}|usd"] == 0.002
        assert (got[f"{dim}|{value}|tin"], got[f"{dim}|{value}|tout"]) == (10, 20)
    assert got["A|ROUTE|n"] == 1 and got["C|MISS|n"] == 1
    assert got["K|app|n"] == 1 and got["K|app|usd"] == 0.002 and got["M|support|usd"] == 0.002
    assert got["I|support-bot/technical_issue|n"] == 1
    assert got["I|support-bot/technical_issue|usd"] == 0.002
    assert not any(k.startswith(("E|", "F|", "B|", "R|", "X|")) for k in got)
    assert all(v for v in got.values()), "zero amounts are left out"


def test_errors_attempts_fallbacks_degraded_and_pii_are_counted() -> None:
    got = [increments(r, LABELS) for r in MIX]
    assert got[2]["B|claude-sim|n"] == 1 and got[2]["B|claude-sim|fb"] == 1
    assert got[2]["F|claude-sim/InternalServerError|n"] == 1
    assert got[5]["X|redacted|n"] == 1 and got[5]["Y|email|n"] == 1
    assert got[5]["S|router|usd"] == 0.0005 and got[3]["S|cache|usd"] == 0.002
    assert got[6]["R|model|n"] == 1 and got[6]["K|app|dg"] == 1
    assert got[7]["E|429/rate_limit_error/gateway|n"] == 1
    assert got[9]["E|429/all_deployments_in_cooldown/upstream|n"] == 1
    assert got[11]["F|gpt-sim/InternalServerError|n"] == 2
    assert "G|none|n" not in got[7], "a refused request was served by nobody"
    assert got[12]["E|401/authentication_error/gateway|n"] == 1 and "K|none|n" not in got[12]


def test_a_client_cannot_grow_the_timeline() -> None:
    """Whatever names clients, providers or errors bring, the field names stay a small set."""
    rng = random.Random(7)
    names: set[str] = set()
    for i in range(3000):
        junk = f"x{rng.getrandbits(64):x}"
        rec = record(
            route=junk,
            model_group=junk,
            deployment=junk,
            provider=junk,
            key_alias=junk,
            team=junk,
            router="support-bot",
            intent=junk,
            status=rng.choice([200, 400, 429, 502, 777]),
            error={"type": junk, "source": junk},
            failed_attempts=[{"model_group": junk, "error": junk}],
            fallbacks=1,
            pii={"action": junk, "kinds": [junk]},
            degraded=junk,
            cache=junk,
            action=junk,
            latency_ms={"total": float(i)},
        )
        names |= set(increments(rec, LABELS))
    assert not any("x" in n.split("|")[1] for n in names if not n.startswith("T|"))
    assert len(names) < 120, len(names)


def test_buckets_of_one_and_five_minutes() -> None:
    minutes = {10: {"T|*|n": 1.0}, 11: {"T|*|n": 2.0}, 15: {"T|*|n": 4.0}}
    sized = by_size(minutes)
    assert sized[1] == minutes
    assert sized[5] == {2: {"T|*|n": 3.0}, 3: {"T|*|n": 4.0}}


async def test_memory_timeline_keeps_three_hours_of_minutes_and_a_day_of_5_minutes() -> None:
    now = 1_000_000 * 60.0
    store = MemoryTimeline(clock=lambda: now)
    minute = int(now) // 60
    await store.add({minute - 200: {"T|*|n": 1.0}, minute: {"T|*|n": 2.0}})
    assert await store.read(1, [minute - 200, minute]) == {minute: {"T|*|n": 2.0}}
    old = (minute - 200) // 5
    assert await store.read(5, [old]) == {old: {"T|*|n": 1.0}}
    await store.add({minute - 27 * 60: {"T|*|n": 1.0}})
    assert await store.read(5, [(minute - 27 * 60) // 5]) == {}


async def test_recorder_sums_by_signature_and_flushes_fields() -> None:
    store = MemoryTimeline()
    recorder = TimelineRecorder(store, LABELS)
    now = time.time()
    for rec in MIX * 3:
        recorder.add(rec, now)
    minute = int(now) // 60
    assert await store.read(1, [minute]) == {}, "nothing reaches the store before a flush"
    await recorder.flush()
    got = (await store.read(1, [minute]))[minute]
    expected: dict[str, float] = {}
    for rec in MIX * 3:
        for name, value in increments(rec, LABELS).items():
            expected[name] = expected.get(name, 0.0) + value
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(v) for k, v in expected.items())
    await recorder.flush()  # nothing pending: nothing added
    assert (await store.read(1, [minute]))[minute]["T|*|n"] == 3 * len(MIX)


def test_percentiles_interpolate_within_a_slot() -> None:
    assert percentile_ms({}, 0.5) is None
    assert percentile_ms({0: 10}, 0.5) == 2.5  # slot 0 is 0-5 ms
    assert percentile_ms({0: 5, 1: 5}, 0.9) == 9.0  # slot 1 is 5-10 ms
    assert percentile_ms({12: 1}, 0.99) == 30000.0  # beyond the last bound


def fields_of(records: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for rec in records:
        for name, value in increments(rec, LABELS).items():
            out[name] = out.get(name, 0.0) + value
    return out


def test_breakdowns_of_a_window() -> None:
    data = breakdowns(fields_of(MIX), LABELS.keys)
    t = data["totals"]
    assert (t["requests"], t["errors"], t["fallbacks"], t["failed_attempts"]) == (13, 6, 1, 3)
    assert (t["degraded"], t["pii"]) == (1, 1)
    assert t["spend_usd"] == pytest.approx(sum(r["cost_usd"] for r in MIX))
    assert t["saved_usd"] == pytest.approx(0.0035)
    assert t["tokens_in"] == 4 * 10 and t["cache_hit_rate"] == round(2 / 6, 4)
    groups = {r["name"]: r for r in data["model_groups"]}
    assert groups["gpt-sim"]["requests"] == 4  # two calls, two cache hits of its answers
    assert groups["none"]["requests"] == 1  # the router's own answer
    assert groups["claude-sim"]["p50_ms"] is not None
    deployments = {r["name"]: r["requests"] for r in data["deployments"]}
    assert deployments == {
        "gpt-sim-a": 1,
        "gpt-sim-b": 1,
        "gpt-sim-mini": 1,
        "claude-sim": 1,
        "cache": 2,
        "router": 1,
    }
    providers = {r["name"]: r["requests"] for r in data["providers"]}
    assert providers == {"openai": 3, "anthropic": 1, "gateway": 3}
    assert data["error_classes"] == {
        "gateway_rate_limit": 1,
        "gateway_budget": 1,
        "upstream_cooldown": 1,
        "upstream_rate_limit": 1,
        "upstream_failed": 1,
        "client_error": 1,
    }
    cooldown = next(e for e in data["errors"] if e["type"] == "all_deployments_in_cooldown")
    assert cooldown == {
        "status": "429",
        "type": "all_deployments_in_cooldown",
        "source": "upstream",
        "class": "upstream_cooldown",
        "requests": 1,
    }
    assert {(a["model_group"], a["attempts"]) for a in data["failed_attempts"]} == {
        ("claude-sim", 1),
        ("gpt-sim", 2),
    }
    assert data["fallbacks"] == [{"route": "claude-sim", "requests": 1, "fallbacks": 1}]
    keys = {r["name"]: r for r in data["keys"]}
    assert keys["app"]["team"] == "support" and keys["batch"]["team"] is None
    assert keys["app"]["requests"] == 11 and keys["app"]["degraded"] == 1
    assert keys["batch"]["errors"] == 1
    assert {r["name"]: r["requests"] for r in data["teams"]} == {"support": 11}
    intents = {r["intent"]: r for r in data["intents"]}
    assert intents["reset_password"]["saved_usd"] == 0.0005
    assert intents["technical_issue"]["cost_usd"] == 0.002
    assert data["cache"] == {"MISS": 4, "HIT_EXACT": 1, "HIT_SEMANTIC": 1, "BYPASS": 1, "NONE": 6}
    assert data["degraded"] == {"model": 1}
    assert data["pii"] == {"actions": {"redacted": 1}, "kinds": {"email": 1}}


def test_chart_points() -> None:
    p = point(600, fields_of(MIX))
    assert p["t"] == 600 and p["requests"] == 13 and p["errors"] == 6
    assert p["by_model_group"] == {"gpt-sim": 4, "gpt-sim-mini": 1, "claude-sim": 1, "none": 1}
    assert p["by_deployment"]["cache"] == 2 and p["by_provider"]["gateway"] == 3
    assert p["errors_by_class"]["upstream_cooldown"] == 1
    assert p["cache"]["HIT_SEMANTIC"] == 1 and p["saved_by_source"] == {
        "cache": 0.003,
        "router": 0.0005,
    }
    assert p["spend_by_model_group"]["claude-sim"] == 0.002
    assert p["tokens_by_model_group"]["gpt-sim"] == 60
    assert set(p["p95_by_model_group"]) == {"gpt-sim", "gpt-sim-mini", "claude-sim", "none"}
    assert (p["fallbacks"], p["failed_attempts"], p["degraded"], p["pii"]) == (1, 3, 1, 1)
    empty = point(0, {})
    assert empty["requests"] == 0 and empty["cache_hit_rate"] is None and empty["p50_ms"] is None


def test_series_points_and_window_agree() -> None:
    buckets = {100: fields_of(MIX[:5]), 102: fields_of(MIX[5:])}
    data = series(buckets, 100, 3, 5, LABELS.keys)
    assert data["step_s"] == 300 and [p["t"] for p in data["points"]] == [30000, 30300, 30600]
    assert [p["requests"] for p in data["points"]] == [5, 0, 8]
    assert data["totals"]["requests"] == 13
    assert data["totals"] == breakdowns(fields_of(MIX))["totals"]


async def test_observer_serves_each_window_from_its_buckets() -> None:
    settings = Observability(request_log=RequestLogSettings(enabled=False, stdout=False))
    store = MemoryTimeline()
    observer = Observer(settings, RequestLog(settings.request_log), None, TimelineRecorder(store))
    observer.configure(LABELS)
    now = time.time()
    for rec in MIX:
        observer.request(rec)
    observer.timeline.add(record(), now - 2 * 3600)  # in the day and 6 hours, not the hour
    for window, (points, size) in WINDOWS.items():
        data = await observer.dashboard_data(window, now)
        assert data["window"] == window and len(data["points"]) == points
        assert data["step_s"] == size * 60
        assert data["totals"]["requests"] == (13 if window == "hour" else 14), window
    assert (await observer.dashboard_data("week", now))["window"] == "hour"


def test_metrics_break_down_by_who_served_errors_keys_and_intents() -> None:
    reg = CollectorRegistry()
    metrics = GatewayMetrics(LABELS.routes, reg)
    metrics.labels = LABELS
    for rec in MIX:
        metrics.observe(rec)

    def value(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, labels) or 0.0

    served = {"model_group": "gpt-sim", "deployment": "gpt-sim-a", "provider": "openai"}
    assert value("gateway_served_requests_total", **served) == 1
    assert (
        value(
            "gateway_served_requests_total",
            model_group="gpt-sim",
            deployment="cache",
            provider="gateway",
        )
        == 2
    )
    assert value("gateway_tokens_total", **served, type="completion") == 20
    assert value("gateway_cost_usd_total", team="support", **served) == 0.002
    assert value("gateway_upstream_duration_seconds_count", **served) == 0  # no upstream time
    assert (
        value(
            "gateway_errors_total",
            **{"class": "upstream_cooldown"},
            status="429",
            type="all_deployments_in_cooldown",
        )
        == 1
    )
    assert (
        value(
            "gateway_errors_total",
            **{"class": "gateway_rate_limit"},
            status="429",
            type="rate_limit_error",
        )
        == 1
    )
    assert value("gateway_key_requests_total", key="app", team="support") == 11
    assert value("gateway_key_cost_usd_total", key="app", team="support") == pytest.approx(0.008)
    assert (
        value("gateway_intent_savings_usd_total", router="support-bot", intent="reset_password")
        == 0.0005
    )
    assert value("gateway_degraded_requests_total", kind="model") == 1
    assert value("gateway_pii_requests_total", action="redacted", kind="email") == 1
    metrics.upstream_error("made-up-group", "SomethingNew")
    assert value("gateway_upstream_errors_total", model_group=OTHER, error=OTHER) == 1
    metrics.budgets(
        {"key:app": {"daily": {"budget_usd": 1.0, "spent_usd": 0.25, "left_usd": 0.75}}}
    )
    assert value("gateway_budget_usd", subject="key:app", period="daily", amount="left") == 0.75


def test_provider_prompt_caching_is_summed_per_model_group() -> None:
    cached = {"read_tokens": 1500, "write_tokens": 0, "saved_usd": 0.003, "storage_usd": 0.0}
    stored = {"read_tokens": 0, "write_tokens": 2000, "saved_usd": 0.0, "storage_usd": 0.002}
    data = breakdowns(
        fields_of([record(prompt_cache=cached), record(prompt_cache=stored), record()]), LABELS.keys
    )
    t = data["totals"]
    assert (t["cached_tokens"], t["prompt_cache_saved_usd"], t["storage_usd"]) == (
        1500,
        0.003,
        0.002,
    )
    [group] = data["model_groups"]
    assert (group["name"], group["cached_tokens"], group["storage_usd"]) == ("gpt-sim", 1500, 0.002)
