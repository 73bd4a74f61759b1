"""``gateway report``: analytics over hand-made request-log records, exact figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from extensions.cli import main
from extensions.observe.report import (
    CostRow,
    LatencyRow,
    ReportError,
    Window,
    build_report,
    log_files,
    parse_duration,
    parse_time,
    percentile,
    render_markdown,
    summarize,
    window_from,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def rec(minute: int = 0, **fields: Any) -> dict[str, Any]:
    """One request-log record (the spec's fields), ``minute`` after 03:00 UTC."""
    latency = fields.pop("total_ms", 10.0)
    record: dict[str, Any] = {
        "ts": (T0 + timedelta(minutes=minute)).isoformat(timespec="milliseconds")[:-6] + "Z",
        "event": "request",
        "request_id": f"req-{minute}",
        "key_alias": None,
        "team": None,
        "endpoint": "chat",
        "route": "gpt-sim",
        "stream": False,
        "router": None,
        "intent": None,
        "confidence": None,
        "action": "DIRECT",
        "model_group": "gpt-sim",
        "deployment": "gpt-sim-a",
        "provider": "openai",
        "fallbacks": 0,
        "retries": 0,
        "cache": "MISS",
        "similarity": None,
        "latency_ms": {
            "total": latency,
            "gateway": 1.0,
            "classify": None,
            "cache": 0.4,
            "upstream": None,
        },
        "tokens": {"prompt": 12, "completion": 30, "cached": 0},
        "cost_usd": 0.0,
        "saved_usd": 0.0,
        "status": 200,
        "error": None,
    }
    record.update(fields)
    return record


def bot(action: str, intent: str | None, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "route": "support-bot",
        "router": "support-bot",
        "intent": intent,
        "action": action,
        "team": "support",
        "model_group": None,
        "cache": "NONE",
    }
    return rec(**{**base, **fields})


RECORDS = [
    rec(team="a", cost_usd=0.25, total_ms=10.0),
    rec(team="a", cache="HIT_EXACT", saved_usd=0.5, total_ms=2.0),
    rec(team="b", cache="HIT_SEMANTIC", saved_usd=0.25, total_ms=4.0),
    rec(team="b", cache="BYPASS", cost_usd=0.125, total_ms=30.0),
    rec(
        endpoint="embeddings",
        route="embed-sim",
        model_group="embed-sim",
        cache="HIT_EXACT",
        saved_usd=0.0625,
        total_ms=8.0,
    ),
    bot(
        "ROUTE",
        "technical_issue",
        model_group="claude-sim",
        cache="MISS",
        cost_usd=0.5,
        fallbacks=2,
        retries=1,
        total_ms=100.0,
    ),
    bot("RESPOND", "password_reset", saved_usd=0.125, total_ms=5.0),
    bot("REFUSE", None, total_ms=3.0),
    bot("CLARIFY", None, total_ms=3.0),
    bot("HANDOFF", "billing", total_ms=7.0),
    rec(
        model_group=None,
        status=429,
        fallbacks=1,
        total_ms=1.0,
        error={"type": "rate_limit_error", "message": "slow down"},
    ),
    bot(
        "ROUTE",
        "technical_issue",
        model_group="claude-sim",
        cache="SHADOW_HIT",
        cost_usd=0.25,
        status=502,
        error={"type": "api_error", "message": "x"},
        total_ms=200.0,
    ),
]
LINES = [json.dumps(r) for r in RECORDS]


def test_counts_traffic_by_route_action_and_intent() -> None:
    report = summarize(LINES)
    assert report.requests == 12
    assert report.by_route == {"support-bot": 6, "gpt-sim": 5, "embed-sim": 1}
    assert report.by_action == {
        "DIRECT": 6,
        "ROUTE": 2,
        "CLARIFY": 1,
        "HANDOFF": 1,
        "REFUSE": 1,
        "RESPOND": 1,
    }
    assert report.by_intent == {
        "support-bot/technical_issue": 2,
        "support-bot/billing": 1,
        "support-bot/password_reset": 1,
    }
    assert report.first_request == "2026-01-15T03:00:00.000Z"
    assert report.total_cost_usd == 1.125


def test_cache_hit_rate_excludes_bypass_and_none_but_reports_them() -> None:
    cache = summarize(LINES).cache
    # chat lookups: 3 MISS + HIT_EXACT + HIT_SEMANTIC + SHADOW_HIT; the embeddings hit is apart
    assert (cache.chat_lookups, cache.chat_hits) == (6, 2)
    assert cache.chat_hit_rate == pytest.approx(1 / 3)
    assert (cache.chat_shadow_hits, cache.chat_bypass, cache.chat_none) == (1, 1, 4)
    assert cache.outcomes == {
        "chat": {
            "NONE": 4,
            "MISS": 3,
            "BYPASS": 1,
            "HIT_EXACT": 1,
            "HIT_SEMANTIC": 1,
            "SHADOW_HIT": 1,
        },
        "embeddings": {"HIT_EXACT": 1},
    }


def test_no_lookups_is_no_rate_not_zero() -> None:
    report = summarize([json.dumps(rec(cache="BYPASS")), json.dumps(rec(cache="NONE"))])
    assert report.cache.chat_lookups == 0 and report.cache.chat_hit_rate is None
    assert report.router.refusal_rate is None and report.errors.rate == 0.0


def test_savings_by_source() -> None:
    savings = summarize(LINES).savings
    assert savings.by_source == {"cache": 0.8125, "router": 0.125}
    assert savings.total_usd == 0.9375


def test_savings_source_is_the_cache_for_hits_then_the_router() -> None:
    lines = [
        json.dumps(bot("RESPOND", "faq", cache="HIT_SEMANTIC", saved_usd=0.5)),
        json.dumps(bot("REFUSE", None, saved_usd=0.125)),
        json.dumps(bot("ROUTE", "faq", cache="SHADOW_HIT", saved_usd=0.25)),  # odd: "other"
        json.dumps(rec(cache="MISS", saved_usd=0.0)),
    ]
    savings = summarize(lines).savings
    assert savings.by_source == {"cache": 0.5, "router": 0.125, "other": 0.25}
    assert savings.total_usd == 0.875


def test_money_sums_are_rounded_not_float_noise() -> None:
    lines = [json.dumps(rec(cache="HIT_EXACT", saved_usd=x, cost_usd=x)) for x in (0.1, 0.2)]
    report = summarize(lines)
    assert report.savings.total_usd == 0.3 and report.total_cost_usd == 0.3
    assert report.spend_by_model_group == [CostRow("gpt-sim", 2, 0.3, 0.15)]


def test_router_rates_and_handoffs() -> None:
    router = summarize(LINES).router
    assert router.requests == 6
    assert (router.refusals, router.clarifications, router.handoffs) == (1, 1, 1)
    assert router.refusal_rate == pytest.approx(1 / 6)
    assert router.clarification_rate == pytest.approx(1 / 6)
    assert router.handoffs_by_intent == {"support-bot/billing": 1}
    [row] = router.by_router
    assert (row.router, row.requests, row.refusals, row.handoffs) == ("support-bot", 6, 1, 1)


def test_intents_by_cost_and_spend_by_team_and_model_group() -> None:
    report = summarize(LINES)
    assert report.intents_by_cost == [
        CostRow("support-bot/technical_issue", 2, 0.75, 0.375),
        CostRow("support-bot/billing", 1, 0.0, 0.0),
        CostRow("support-bot/password_reset", 1, 0.0, 0.0),
    ]
    assert report.spend_by_team == [
        CostRow("support", 6, 0.75, 0.125),
        CostRow("a", 2, 0.25, 0.125),
        CostRow("b", 2, 0.125, 0.0625),
        CostRow("(none)", 2, 0.0, 0.0),
    ]
    assert report.spend_by_model_group == [
        CostRow("claude-sim", 2, 0.75, 0.375),
        CostRow("gpt-sim", 4, 0.375, 0.09375),
        CostRow("(none)", 5, 0.0, 0.0),
        CostRow("embed-sim", 1, 0.0, 0.0),
    ]


def test_nearest_rank_percentiles() -> None:
    assert percentile(range(1, 21), 50) == 10
    assert percentile(list(range(1, 21)), 95) == 19
    assert percentile([40.0, 10.0, 30.0, 20.0], 50) == 20.0  # interpolation would say 25
    assert percentile([1.0, 2.0, 4.0, 10.0, 30.0], 95) == 30.0  # interpolation: 26
    assert percentile([7.0], 1) == 7.0 and percentile([7.0], 100) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_latency_by_route() -> None:
    report = summarize(LINES)
    assert report.latency_by_route == [
        LatencyRow("embed-sim", 1, 8.0, 8.0, 8.0),
        LatencyRow("gpt-sim", 5, 4.0, 30.0, 30.0),  # [1, 2, 4, 10, 30]
        LatencyRow("support-bot", 6, 5.0, 200.0, 200.0),  # [3, 3, 5, 7, 100, 200]
    ]
    # all 12: [1, 2, 3, 3, 4, 5, 7, 8, 10, 30, 100, 200]: ranks 6 and 12
    assert report.latency_overall == LatencyRow("(all)", 12, 5.0, 200.0, 200.0)


def test_errors_and_fallbacks() -> None:
    report = summarize(LINES)
    assert report.errors.requests == 2
    assert report.errors.rate == pytest.approx(2 / 12)
    assert report.errors.by_status == {"429": 1, "502": 1}
    assert report.errors.by_type == {"api_error": 1, "rate_limit_error": 1}
    f = report.fallbacks
    assert (f.requests, f.total, f.retried_requests, f.retries) == (2, 3, 1, 1)


def test_malformed_lines_are_counted_and_skipped() -> None:
    lines: list[str | bytes] = [
        *LINES[:2],
        "not json",
        "[1, 2]",
        '{"event": "request"}',  # no ts
        '{"ts": "yesterday", "event": "request"}',
        b"\xff\xfe{",  # not UTF-8
        '{"ts": "2026-01-15T03:00:00Z", "event": "request"',  # cut short
        "",
        "   \n",  # blank lines are not lines
        json.dumps({"ts": "2026-01-15T03:00:00Z", "event": "config_reload"}),
    ]
    report = summarize(lines)
    assert report.requests == 2
    assert (report.scan.lines, report.scan.malformed_lines, report.scan.other_events) == (9, 6, 1)


def test_fields_of_the_wrong_type_count_as_absent() -> None:
    odd = rec(
        cost_usd="lots",
        saved_usd=True,
        latency_ms="fast",
        fallbacks="2",
        status="500",
        error="boom",
        cache=None,
        route=7,
        team=["x"],
    )
    report = summarize([json.dumps(odd), json.dumps(rec(latency_ms={"total": None}))])
    assert report.requests == 2
    assert report.total_cost_usd == 0.0 and report.savings.total_usd == 0.0
    assert report.latency_by_route == [] and report.latency_overall is None
    assert report.fallbacks.requests == 0
    assert report.errors.requests == 1 and report.errors.by_type == {"(missing)": 1}
    assert report.by_route == {"(missing)": 1, "gpt-sim": 1}
    assert report.cache.outcomes["chat"] == {"(missing)": 1, "MISS": 1}
    assert report.spend_by_team[0].name == "(none)"


def test_window_is_half_open_and_counts_what_it_leaves_out() -> None:
    lines = [json.dumps(rec(m)) for m in (0, 30, 60, 120)]
    window = Window(parse_time("2026-01-15T03:30:00Z"), parse_time("2026-01-15T05:00:00Z"))
    report = summarize(lines, window)
    assert report.requests == 2  # 03:30 and 04:00; 05:00 is the (excluded) end
    assert report.scan.outside_window == 2
    assert (report.window_start, report.window_end) == (
        "2026-01-15T03:30:00.000Z",
        "2026-01-15T05:00:00.000Z",
    )
    assert summarize(lines, Window(start=T0 + timedelta(minutes=60))).requests == 2
    assert summarize(lines, Window(end=T0 + timedelta(minutes=1))).requests == 1


def test_since_is_the_duration_before_now() -> None:
    now = T0 + timedelta(hours=2)
    window = window_from("1h", None, None, now)
    assert window == Window(T0 + timedelta(hours=1), now)
    lines = [json.dumps(rec(m)) for m in (0, 59, 60, 61, 119)]
    assert summarize(lines, window).requests == 3
    assert window_from(None, None, None, now) == Window()
    assert window_from(None, "2026-01-15T03:00:00Z", None, now) == Window(T0, None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("30m", 1800), ("2d", 172800), ("45s", 45), ("1w", 604800), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["1x", "h", "0m", "-1h", "", "1 hour", "1h30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ReportError, match="bad duration"):
        parse_duration(text)


def test_times_are_utc() -> None:
    assert parse_time("2026-01-15T03:00:00Z") == T0
    assert parse_time("2026-01-15T04:00:00+01:00") == T0
    assert parse_time("2026-01-15T03:00") == T0  # no offset: UTC
    with pytest.raises(ReportError, match="bad time"):
        parse_time("25/11/2026")
    with pytest.raises(ReportError, match="not before"):
        window_from(None, "2026-01-15T04:00Z", "2026-01-15T03:00Z", T0)
    with pytest.raises(ReportError, match="either --since"):
        window_from("1h", "2026-01-15T03:00Z", None, T0)


def _write(path: Path, records: list[dict[str, Any]], extra: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + extra)


def test_folders_read_current_and_rotated_logs_only(tmp_path: Path) -> None:
    _write(tmp_path / "requests-11.jsonl", [rec(0)])
    _write(tmp_path / "requests-11.jsonl.1", [rec(1), rec(2)])
    _write(tmp_path / "requests-12.jsonl.2", [rec(3)], extra="garbage\n")
    _write(tmp_path / "requests-12.jsonl.gz", [rec(4)])
    _write(tmp_path / "other.jsonl", [rec(5)])
    files = log_files([tmp_path])
    assert sorted(f.name for f in files) == [
        "requests-11.jsonl",
        "requests-11.jsonl.1",
        "requests-12.jsonl.2",
    ]
    report = build_report([tmp_path, tmp_path / "requests-11.jsonl"])  # each file once
    assert report.requests == 4 and report.scan.malformed_lines == 1
    assert len(report.scan.files) == 3
    assert build_report([str(tmp_path / "requests-11.*")]).requests == 3
    assert build_report([tmp_path / "other.jsonl"]).requests == 1  # a named file is read


def test_missing_paths_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such file or folder"):
        log_files([tmp_path / "nope.jsonl"])
    with pytest.raises(ReportError, match="no requests-"):
        log_files([tmp_path])
    with pytest.raises(ReportError, match="no file matches"):
        log_files([str(tmp_path / "requests-*.jsonl")])


def test_markdown_tables() -> None:
    text = render_markdown(summarize(LINES), top=1)
    assert text.startswith("# Gateway analytics\n")
    assert (
        "Chat hit rate: **33.3%** (2 hits of 6 lookups; shadow hits 1; not looked up: "
        "BYPASS 1, NONE 4)."
    ) in text
    assert "| gpt-sim | 5 | 4.0 | 30.0 | 30.0 |" in text
    assert "| (all) | 12 | 5.0 | 200.0 | 200.0 |" in text
    assert "| support-bot/technical_issue | 2 | $0.750000 | $0.375000 |" in text
    assert "(2 more in analytics.json)" in text
    assert "| cache | $0.812500 |" in text and "| **total** | $0.937500 |" in text
    assert "| support-bot | 6 | 1 | 16.7% | 1 | 16.7% | 1 |" in text
    assert "| 429 | 1 |" in text and "| rate_limit_error | 1 |" in text
    assert "- requests with fallbacks: 2 (3 fallbacks in all)" in text
    assert "| a\\|b | 1 | 100.0% |" in render_markdown(summarize([json.dumps(rec(route="a|b"))]))


def test_json_round_trip() -> None:
    data = json.loads(summarize(LINES).to_json())
    assert data["requests"] == 12
    assert data["cache"]["chat_hit_rate"] == pytest.approx(1 / 3)
    assert data["latency_by_route"][1] == {
        "route": "gpt-sim",
        "samples": 5,
        "p50_ms": 4.0,
        "p95_ms": 30.0,
        "max_ms": 30.0,
    }
    assert data["scan"]["malformed_lines"] == 0


def test_cli_prints_and_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    _write(logs / "requests-1.jsonl", RECORDS)
    out = tmp_path / "out"
    args = [
        "report",
        "--logs",
        str(logs),
        "--out",
        str(out),
        "--start",
        "2026-01-15T02:00:00Z",
        "--end",
        "2026-01-15T04:00:00Z",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "analytics.md").read_text()
    assert "| support-bot | 6 | 50.0% |" in printed
    data = json.loads((out / "analytics.json").read_text())
    assert data["requests"] == 12 and data["window_end"] == "2026-01-15T04:00:00.000Z"

    def ago(minutes: int) -> dict[str, Any]:
        ts = datetime.now(UTC) - timedelta(minutes=minutes)
        return rec(ts=ts.isoformat().replace("+00:00", "Z"))

    _write(logs / "requests-1.jsonl.1", [ago(10), ago(50), ago(70), ago(24 * 60)])
    assert main(["report", "--logs", str(logs), "--out", str(out), "--since", "1h"]) == 0
    data = json.loads((out / "analytics.json").read_text())
    assert data["requests"] == 2 and data["scan"]["outside_window"] == 12 + 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--since", "5x"], "gateway report: bad duration '5x'"),
        (["--since", "1h", "--start", "2026-01-15T03:00:00Z"], "gateway report: use either"),
        (["--start", "soon"], "gateway report: bad time 'soon'"),
        (["--top", "0"], "gateway report: --top 0"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    _write(tmp_path / "requests-1.jsonl", RECORDS)
    assert main(["report", "--logs", str(tmp_path), "--out", str(tmp_path), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == "" and not (tmp_path / "analytics.md").exists()


def test_cli_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert main(["report", "--logs", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == f"gateway report: {missing}: no such file or folder\n"
    assert not (tmp_path / "o").exists()


def test_prompt_caching_degraded_answers_and_pii_findings() -> None:
    records = [
        rec(
            0,
            model_group="claude-sim",
            prompt_cache={
                "read_tokens": 1500,
                "write_tokens": 0,
                "saved_usd": 0.004,
                "storage_usd": 0.0,
            },
        ),
        rec(
            1,
            model_group="gemini-sim",
            prompt_cache={
                "read_tokens": 0,
                "write_tokens": 2000,
                "saved_usd": 0.0,
                "storage_usd": 0.002,
            },
        ),
        rec(2, degraded="claude-sim -> gpt-sim-mini (budget 62% spent)"),
        rec(3, degraded="cache_only (budget 91% spent)"),
        rec(4, pii={"action": "redacted", "kinds": ["card", "email"]}),
    ]
    r = summarize([json.dumps(x) for x in records])
    assert [(x.model_group, x.read_tokens, x.write_tokens) for x in r.prompt_cache] == [
        ("claude-sim", 1500, 0),
        ("gemini-sim", 0, 2000),
    ]
    assert r.prompt_cache[1].storage_usd == 0.002
    assert r.degraded == {"cache_only": 1, "claude-sim -> gpt-sim-mini": 1}
    assert r.pii == {"redacted:card": 1, "redacted:email": 1}
    text = render_markdown(r)
    assert "## Provider prompt caching" in text and "redacted:card" in text
