"""Pure parts of observability: the log record, redaction, metrics from records, the
the log writer, the loop monitor (the dashboard's counters: test_dashboard_data.py),
and the configuration errors of the ``observability`` section."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from extensions.config.errors import ConfigError
from extensions.config.loader import load_gateway_config
from extensions.observe.labels import Labels
from extensions.observe.loop_monitor import LoopMonitor
from extensions.observe.metrics import METRIC_NAMES, GatewayMetrics
from extensions.observe.record import (
    Redactor,
    Upstream,
    Who,
    answer_text,
    build_record,
    last_user_text,
)
from extensions.observe.request_log import MAX_BATCH, RequestLog
from extensions.observe.settings import ContentLogging, Redaction, RequestLogSettings

pytestmark = pytest.mark.unit

ROUTED = {"router": "bot", "intent": "billing", "confidence": 0.91234, "action": "ROUTE",
          "classify_ms": 6.2, "route": "bot", "request_id": "req-1", "endpoint": "chat",
          "cache": {"outcome": "MISS", "similarity": 0.5},
          "timing": {"exact": 0.1, "semantic": 0.3, "gateway": 7.0}}  # fmt: skip


def test_record_of_a_routed_model_call() -> None:
    up = Upstream("gpt", "gpt-a", "openai", 10, 20, 4, 0.002, 50.0, fallbacks=1)
    rec = build_record(ROUTED, Who("app", "support"), 200, 60.0, up, now=0)
    assert rec["ts"] == "1970-01-01T00:00:00.000Z"
    assert (rec["action"], rec["intent"], rec["confidence"]) == ("ROUTE", "billing", 0.9123)
    assert rec["latency_ms"] == {"total": 60.0, "gateway": 7.0, "classify": 6.2, "cache": 0.4,
                                 "upstream": 50.0}  # fmt: skip
    assert rec["tokens"] == {"prompt": 10, "completion": 20, "cached": 4}
    assert (rec["model_group"], rec["fallbacks"], rec["cache"]) == ("gpt", 1, "MISS")
    assert "content" not in rec and rec["error"] is None


def test_record_of_a_plain_model_request_ignores_router_fields() -> None:
    rec = build_record({"route": "gpt", "intent": "x", "action": "REFUSE"}, Who(None, None), 401,
                       1.0, error={"type": "authentication_error", "message": "no"})  # fmt: skip
    assert (rec["action"], rec["intent"], rec["cache"]) == ("DIRECT", None, "NONE")
    assert rec["status"] == 401 and rec["error"]["type"] == "authentication_error"
    assert rec["latency_ms"]["classify"] is None and rec["model_group"] is None


def test_redactor_replaces_patterns_and_truncates() -> None:
    settings = ContentLogging(routes=["bot"], max_chars=30,
                              redact=[Redaction(name="email", pattern=r"\S+@\S+")])  # fmt: skip
    red = Redactor(settings)
    assert red.logs("bot") and not red.logs("gpt")
    assert red.clean("mail a@b.com now") == "mail [email] now"
    assert red.clean("x" * 40) == "x" * 30 + "…"


def test_texts_of_messages_and_answers() -> None:
    text_parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    parts = [{"role": "user", "content": text_parts}]
    turns = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "x"}]
    assert last_user_text(turns) == "q1"
    assert last_user_text(parts) == "a b"
    assert last_user_text(None) == ""
    assert answer_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    assert answer_text(None) == ""


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metrics_from_records() -> None:
    reg = CollectorRegistry()
    metrics = GatewayMetrics({"bot", "gpt"}, reg)
    metrics.labels = Labels.of(["gpt"], {}, {"bot": ["billing"]}, {"app": "support"}, [])
    up = Upstream("gpt", "gpt-a", "openai", 10, 20, 0, 0.002, 50.0, fallbacks=1)
    metrics.observe(build_record(ROUTED, Who("app", "support"), 200, 60.0, up))
    hit = {"route": "gpt", "cache": {"outcome": "HIT_EXACT"}}
    metrics.observe(build_record(hit, Who("app", "support"), 200, 1.0, saved_usd=0.5))
    metrics.observe(build_record({"route": "made-up-model"}, Who(None, None), 403, 1.0))
    assert sample(reg, "gateway_requests_total", route="bot", action="ROUTE", cache="MISS",
                  status="200") == 1  # fmt: skip
    assert sample(reg, "gateway_requests_total", route="other", action="DIRECT", cache="NONE",
                  status="403") == 1, "unknown names share one label value"  # fmt: skip
    served = {"model_group": "gpt", "deployment": "other", "provider": "other"}  # not configured
    assert sample(reg, "gateway_tokens_total", **served, type="completion") == 20
    assert sample(reg, "gateway_cost_usd_total", team="support", **served) == 0.002
    assert sample(reg, "gateway_savings_usd_total", team="support", source="cache") == 0.5
    assert sample(reg, "gateway_fallbacks_total", model_group="bot") == 1
    assert sample(reg, "gateway_intents_total", router="bot", intent="billing") == 1
    assert sample(reg, "gateway_cache_lookups_total", endpoint="chat", outcome="HIT_EXACT") == 1
    assert sample(reg, "gateway_classifier_duration_seconds_count", router="bot") == 1
    assert sample(reg, "gateway_upstream_duration_seconds_sum", **served) == 0.05
    metrics.lag(0.02)
    metrics.lag(0.01)
    assert sample(reg, "gateway_event_loop_max_lag_seconds") == 0.02
    assert sample(reg, "gateway_event_loop_lag_seconds_count") == 2


def test_every_metric_is_registered_under_its_documented_name() -> None:
    reg = CollectorRegistry()
    GatewayMetrics(set(), reg)
    types = [line.split()[2] for line in generate_latest(reg).decode().splitlines()
             if line.startswith("# TYPE")]  # fmt: skip
    exposed = {n.removesuffix("_total") for n in types if not n.endswith("_created")}
    assert exposed == METRIC_NAMES


def test_request_log_writes_json_lines_off_the_caller(tmp_path: Path) -> None:
    log = RequestLog(RequestLogSettings(stdout=False, dir=str(tmp_path)))
    log.write({"event": "request", "text": "é"})
    log.close()  # drains the queue
    assert log.path is not None and log.path.parent == tmp_path
    assert [json.loads(x) for x in log.path.read_text("utf-8").splitlines()] == [
        {"event": "request", "text": "é"}]  # fmt: skip


def test_request_log_writes_what_queued_up_as_one_batch(tmp_path: Path) -> None:
    """A busy worker's lines go out a batch at a time (one write and flush per batch)."""
    log = RequestLog(RequestLogSettings(stdout=False, dir=str(tmp_path)))
    for i in range(MAX_BATCH + 88):
        log._queue.put_nowait(json.dumps({"n": i}))
    log._queue.put_nowait(None)  # as close() does
    log._run()  # on this thread: drains the queue, then stops
    assert log.batches == 2
    assert log.path is not None
    lines = log.path.read_text("utf-8").splitlines()
    assert [json.loads(x)["n"] for x in lines] == list(range(MAX_BATCH + 88))


def test_request_log_rotates_between_batches(tmp_path: Path) -> None:
    log = RequestLog(RequestLogSettings(stdout=False, dir=str(tmp_path), max_bytes=10_000,
                                        backups=2))  # fmt: skip
    for start in (0, 100, 200):  # three batches of about 6 kB (close() ends a batch)
        for i in range(start, start + 100):
            log.write({"n": i, "pad": "x" * 40})
        log.close()
    assert log.path is not None
    current = [json.loads(x)["n"] for x in log.path.read_text("utf-8").splitlines()]

    def rolled(k: int) -> list[int]:
        return [json.loads(x)["n"] for x in Path(f"{log.path}.{k}").read_text().splitlines()]

    # a batch that would take the file past max_bytes starts a new one: one file each
    assert current == list(range(200, 300))
    assert rolled(1) == list(range(100, 200)) and rolled(2) == list(range(100))


async def test_loop_monitor_sees_a_blocked_loop() -> None:
    lags: list[float] = []
    monitor = LoopMonitor(lags.append, interval_s=0.01)
    monitor.start()
    await asyncio.sleep(0.03)
    time.sleep(0.1)  # noqa: ASYNC251 - blocks the loop on purpose
    await asyncio.sleep(0.03)
    await monitor.stop()
    assert max(lags) >= 0.08


def config_error(tmp_path: Path, section: dict[str, Any], groups: set[str] | None = None) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "observability": section}))
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path, groups or {"gpt-sim"}, {})
    return str(err.value)


def test_config_errors_name_the_path(tmp_path: Path) -> None:
    bad_regex = {"request_log": {"content": {"redact": [{"name": "x", "pattern": "("}]}}}
    msg = config_error(tmp_path, bad_regex)
    assert "observability.request_log.content.redact[0].pattern" in msg
    assert "not a valid regular expression" in msg
    msg = config_error(tmp_path, {"request_log": {"content": {"routes": ["nope"]}}})
    assert "observability.request_log.content.routes[0]: unknown route 'nope'" in msg
    msg = config_error(tmp_path, {"dashboard": {"store": "redis"}})
    assert "observability.dashboard.store is 'redis' but redis.url is not set" in msg
    msg = config_error(tmp_path, {"dashboard": {"store": "disk"}})
    assert "observability.dashboard.store" in msg and "'memory' or 'redis'" in msg
    msg = config_error(tmp_path, {"metrics": {"path": "metrics"}})
    assert "observability.metrics.path" in msg
    msg = config_error(tmp_path, {"request_log": {"backups": -1}})
    assert "observability.request_log.backups" in msg
