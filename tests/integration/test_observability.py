"""Request log, Prometheus metrics and the dashboard, checked against each other and against
what the client saw, after a scripted mix of requests through a real proxy with two
workers (metrics in multiprocess mode; the shared cache tier, limits, budgets and the
dashboard timeline in Redis).

The mix: routed (with an e-mail address: PII redacted), canned, refused, exact and
semantic cache hits, a fail-over, a stream, a bad key, a bad request, concurrent hits
spread over both workers, a degraded answer (budget ladder), a spent budget and a rate
limit (the gateway's own 429s), and a burst against a model group whose deployments all
fail until LiteLLM cools them down (upstream 502s, then 429 all_deployments_in_cooldown).
Every request is expected exactly once in the log, in ``gateway_requests_total`` and in
every breakdown of the dashboard's data; the page draws every chart in headless Chromium.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.redis_server import RedisServer
from tests.support.stack import REPO, TEST_MASTER_KEY, Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration

KEYS: dict[str, tuple[str, dict[str, Any]]] = {  # alias -> (its key, its settings)
    "obs-app": ("sk-test-obs-app-3c9d1e", {"team": "support"}),
    "obs-lean": (
        "sk-test-obs-lean-51aa2c",
        {
            "models": ["gpt-sim", "gpt-sim-mini"],
            "daily_budget_usd": 0.05,
            "degrade": [{"at": 0.001, "model": "gpt-sim-mini"}],
        },
    ),
    "obs-tiny": ("sk-test-obs-tiny-7e02bd", {"team": "data", "daily_budget_usd": 0.00001}),
    "obs-rpm": ("sk-test-obs-rpm-0b3f77", {"team": "data", "rpm": 1}),
    "obs-cool": ("sk-test-obs-cool-9d41e0", {"team": "data"}),
}
APP_KEY = KEYS["obs-app"][0]  # a team key (not an operator)
RUN = uuid.uuid4().hex[:8]  # fresh queries, whatever an earlier run cached in Redis
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = (
    "requests",
    "model-groups",
    "deployments",
    "providers",
    "errors",
    "attempts",
    "spend",
    "spend-groups",
    "tokens",
    "savings",
    "hit-rate",
    "hits",
    "latency",
    "latency-groups",
    "guard",
)
TABLES = (
    "model-groups",
    "deployments",
    "providers",
    "errors",
    "attempts",
    "fallbacks",
    "keys",
    "teams",
    "intents",
    "guard",
)
SPREAD = 16  # concurrent cache hits on fresh connections: both workers answer some
ALWAYS_500 = {"faults": [{"kind": "http_500", "rate": 1.0}]}


@pytest.fixture(scope="module")
def log_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("request-log")


@pytest.fixture(scope="module")
def obs_gateway(
    log_dir: Path,
    sim: SimProvider,
    redis_server: RedisServer,
    log_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["redis"]["url"] = redis_server.url
        data["redis"]["key_prefix"] = f"obs{RUN}:"
        data["cache"]["tier"] = "shared"
        obs = data["observability"]
        obs["request_log"]["dir"] = str(log_folder)
        obs["request_log"]["content"]["routes"] = ["support-bot"]
        obs["dashboard"]["store"] = "redis"
        data["access"] = {
            "limits": {"store": "redis"},
            "teams": {
                "support": {"models": ["support-bot", "gpt-sim"]},
                "data": {"models": ["gpt-sim"]},
            },
            "keys": [
                {
                    "alias": alias,
                    "owner": "ops",
                    "env": f"TEST_{alias.upper()}".replace("-", "_"),
                    **settings,
                }
                for alias, (_, settings) in KEYS.items()
            ],
        }

    config = derive_gateway_config(tmp_path_factory.mktemp("obs"), edit)
    env = {f"TEST_{alias.upper()}".replace("-", "_"): key for alias, (key, _) in KEYS.items()}
    proxy = Proxy(log_dir, sim, gateway_config=config, workers=2, name="obs", extra_env=env).start()
    yield proxy
    proxy.stop()


def user(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]


@dataclass
class Sent:
    """One request of the mix as the client saw it, and what the test expects of it."""

    route: str | None  # what the log's route is: None when the body was never parsed
    alias: str | None  # the key's alias (master for the master key, None: no valid key)
    status: int
    headers: dict[str, str]
    error_type: str | None = None
    error_class: str | None = None  # the dashboard's class of this error

    @property
    def row(self) -> Row:
        h = self.headers
        action, cache = h.get("x-gateway-action", "DIRECT"), h.get("x-gateway-cache", "NONE")
        return (str(self.route), action, cache, str(self.status))

    @property
    def served(self) -> bool:
        return "x-gateway-deployment" in self.headers


Row = tuple[str, str, str, str]  # route, action, cache, status
ALIASES = {key: alias for alias, (key, _) in KEYS.items()} | {TEST_MASTER_KEY: "master"}


async def chat(
    proxy: Proxy,
    model: str,
    text: str,
    key: str | None = None,
    stream: bool = False,
    expect: str | None = None,
    messages: list[ChatCompletionMessageParam] | None = None,
) -> Sent:
    """One request on a fresh connection (both workers get some)."""
    key = key or TEST_MASTER_KEY
    client = proxy.client(api_key=key)
    sent = Sent(model, ALIASES.get(key), 200, {})
    try:
        if stream:
            async with client.chat.completions.with_streaming_response.create(
                model=model, messages=user(text), stream=True
            ) as raw:
                async for _ in await raw.parse():
                    pass
                sent.headers = dict(raw.headers)
        else:
            resp = await client.chat.completions.with_raw_response.create(
                model=model,
                messages=messages if messages is not None else user(text),
            )
            sent.headers = dict(resp.headers)
    except openai.APIStatusError as exc:
        sent.status, sent.headers = exc.status_code, dict(exc.response.headers)
        body = exc.body if isinstance(exc.body, dict) else {}
        sent.error_type = str(body.get("type"))
        sent.error_class = expect
    finally:
        await client.close()
    return sent


def avoid_minute_edge() -> None:
    """Rate limits count per calendar minute: keep a pair of requests inside one."""
    into_minute = time.time() % 60
    if into_minute > 50:
        time.sleep(60.5 - into_minute)


@pytest.fixture(scope="module")
def traffic(obs_gateway: Proxy, sim: SimProvider, log_folder: Path) -> list[Sent]:
    """Send the scripted mix once; what the client saw of each request."""
    out: list[Sent] = []
    gw = obs_gateway
    keys = {alias: key for alias, (key, _) in KEYS.items()}

    async def send() -> None:
        sim.reset()
        s = await chat(
            gw,
            "support-bot",
            f"the app keeps crashing on start, mail me at jo.doe@example.com {RUN}",
            APP_KEY,
        )
        assert s.headers["x-gateway-action"] == "ROUTE"
        out.append(s)
        out.append(await chat(gw, "support-bot", "I forgot my password", APP_KEY))
        assert out[-1].headers["x-gateway-action"] == "RESPOND"
        out.append(await chat(gw, "support-bot", "tell me a joke about dogs"))
        assert out[-1].headers["x-gateway-action"] == "REFUSE"
        question = f"what is the capital of France {RUN}"
        for outcome in ("MISS", "HIT_EXACT"):
            out.append(await chat(gw, "gpt-sim", question, APP_KEY))
            assert out[-1].headers["x-gateway-cache"] == outcome
            await asyncio.sleep(0.3)  # stored once the answer is out; the other worker may ask
        out.append(
            await chat(gw, "gpt-sim", "How do I reset my wifi router to factory settings?", APP_KEY)
        )
        await asyncio.sleep(0.3)
        out.append(
            await chat(
                gw, "gpt-sim", "How can I reset my wifi router to factory settings?", APP_KEY
            )
        )
        assert out[-1].headers["x-gateway-cache"] == "HIT_SEMANTIC"
        sim.set_model("sim-claude", ALWAYS_500)
        out.append(await chat(gw, "claude-sim", f"fail over please {RUN}"))
        assert out[-1].headers["x-gateway-attempted-fallbacks"] == "1"
        sim.reset()
        out.append(await chat(gw, "gpt-sim", f"stream a few words {RUN}", stream=True))
        out.append(await chat(gw, "gpt-sim", "who am I", key="sk-not-a-key"))
        out[-1].route, out[-1].alias = None, None
        assert out[-1].status == 401
        out.append(await chat(gw, "gpt-sim", "", messages=[]))  # the body names its model
        assert out[-1].status == 400
        hits = await asyncio.gather(
            *(chat(gw, "gpt-sim", question, APP_KEY) for _ in range(SPREAD))
        )
        assert {h.headers["x-gateway-cache"] for h in hits} == {"HIT_EXACT"}
        out.extend(hits)
        # a budget ladder: once the key has spent anything, gpt-sim becomes gpt-sim-mini
        out.append(
            await chat(gw, "gpt-sim", f"explain photosynthesis in one line {RUN}", keys["obs-lean"])
        )
        await asyncio.sleep(0.5)  # the spend is charged once the answer is out
        out.append(
            await chat(
                gw, "gpt-sim", f"list three prime numbers below twenty {RUN}", keys["obs-lean"]
            )
        )
        assert out[-1].headers["x-gateway-model-group"] == "gpt-sim-mini"
        assert "x-gateway-degraded" in out[-1].headers
        # the gateway's own 429s: a spent budget, a rate limit
        out.append(await chat(gw, "gpt-sim", f"spend it all {RUN}", keys["obs-tiny"]))
        await asyncio.sleep(0.5)
        out.append(
            await chat(gw, "gpt-sim", f"and more {RUN}", keys["obs-tiny"], expect="gateway_budget")
        )
        assert (out[-1].status, out[-1].error_type) == (429, "budget_exceeded")
        avoid_minute_edge()
        out.append(await chat(gw, "gpt-sim", f"one a minute {RUN}", keys["obs-rpm"]))
        out.append(
            await chat(
                gw, "gpt-sim", f"a second one {RUN}", keys["obs-rpm"], expect="gateway_rate_limit"
            )
        )
        assert (out[-1].status, out[-1].error_type) == (429, "rate_limit_error")
        # upstream: both gpt-sim deployments fail (502) until each worker's LiteLLM router
        # cools them down (429 all_deployments_in_cooldown); the key may not fall back
        sim.set_model("sim-gpt-a", ALWAYS_500)
        sim.set_model("sim-gpt-b", ALWAYS_500)
        for i in range(40):
            s = await chat(gw, "gpt-sim", f"burst {i} {RUN}", keys["obs-cool"])
            s.error_class = {502: "upstream_failed", 429: "upstream_cooldown"}.get(s.status)
            assert s.error_class, (s.status, s.error_type)
            out.append(s)
            if sum(x.error_type == "all_deployments_in_cooldown" for x in out) >= 4:
                break
        sim.reset()

    asyncio.run(send())
    wait_for_lines(log_folder, len(out))
    return out


def wait_for_lines(folder: Path, count: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(read_log(folder)) < count:
        time.sleep(0.2)


def read_log(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("requests-*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def scrape(proxy: Proxy) -> dict[str, float]:
    """``/metrics`` as {'name{labels}': value} (labels sorted as exposed)."""
    r = httpx.get(
        f"{proxy.base_url}/metrics", headers={"Authorization": f"Bearer {TEST_MASTER_KEY}"}
    )
    r.raise_for_status()
    samples: dict[str, float] = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def labels(sample: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', sample))


def by_metric(samples: dict[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k.split("{")[0] == name}


def summed(samples: dict[str, float], name: str, *keys: str) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for sample, value in by_metric(samples, name).items():
        lab = labels(sample)
        out[tuple(lab[k] for k in keys)] += int(value)
    return +out


def pii_of(sent: Sent) -> dict[str, Any] | None:
    """What the guardrail found, as ``x-gateway-pii: action:kind,kind`` says."""
    header = sent.headers.get("x-gateway-pii")
    if header is None:
        return None
    action, _, kinds = header.partition(":")
    return {"action": action, "kinds": kinds.split(",")}


def dashboard(proxy: Proxy, window: str = "hour") -> dict[str, Any]:
    time.sleep(2.5)  # every worker flushes its counters to Redis every 2 s
    r = httpx.get(
        f"{proxy.base_url}/gateway/dashboard/data?window={window}",
        headers={"Authorization": f"Bearer {TEST_MASTER_KEY}"},
    )
    r.raise_for_status()
    return dict(r.json())


def test_the_mix_has_everything_the_dashboard_breaks_down(traffic: list[Sent]) -> None:
    errors = Counter(s.error_type for s in traffic if s.status >= 400)
    assert errors["all_deployments_in_cooldown"] >= 4 and errors["upstream_error"] >= 1
    assert errors["budget_exceeded"] == 1 and errors["rate_limit_error"] == 1
    caches = Counter(s.headers.get("x-gateway-cache") for s in traffic)
    assert caches["HIT_EXACT"] > 1 and caches["HIT_SEMANTIC"] == 1
    assert {s.headers.get("x-gateway-deployment") for s in traffic} >= {"router", "cache"}


def test_every_request_is_one_log_line(traffic: list[Sent], log_folder: Path) -> None:
    records = read_log(log_folder)
    got = Counter((str(r["route"]), r["action"], r["cache"], str(r["status"])) for r in records)
    assert got == Counter(s.row for s in traffic)
    assert len({r["request_id"] for r in records}) == len(records)
    files = [p for p in log_folder.glob("requests-*.jsonl") if p.read_text().strip()]
    assert len(files) == 2, "both workers answered some requests and wrote their own file"


def test_log_fields_tell_what_happened(traffic: list[Sent], log_folder: Path) -> None:
    records = read_log(log_folder)
    routed = next(r for r in records if r["action"] == "ROUTE")
    assert routed["key_alias"] == "obs-app" and routed["team"] == "support"
    assert routed["intent"] == "technical_issue" and routed["model_group"] == "claude-sim"
    assert routed["deployment"] == "claude-sim" and routed["provider"] == "anthropic"
    assert routed["tokens"]["completion"] > 0 and routed["cost_usd"] > 0
    pii = routed.get("pii")  # the record's kinds are the header's
    assert pii == pii_of(
        next(s for s in traffic if s.row == ("support-bot", "ROUTE", "MISS", "200"))
    )
    latency = routed["latency_ms"]
    assert latency["classify"] > 0 and latency["upstream"] > 0
    assert latency["total"] >= latency["upstream"]
    # message text only for the listed router, with the e-mail address redacted
    assert "[EMAIL]" in routed["content"]["query"] or "[email]" in routed["content"]["query"]
    assert "jo.doe@example.com" not in json.dumps(records)
    assert routed["content"]["answer"].startswith("Simulated reply from sim-claude")
    assert all("content" not in r for r in records if r["route"] != "support-bot")
    failover = next(r for r in records if r["route"] == "claude-sim")
    assert failover["fallbacks"] == 1 and failover["model_group"] == "gemini-sim"
    assert failover["failed_attempts"] == [
        {"model_group": "claude-sim", "error": "InternalServerError"}
    ]
    hit = next(r for r in records if r["cache"] == "HIT_EXACT")
    assert hit["saved_usd"] > 0 and hit["cost_usd"] == 0 and hit["deployment"] == "cache"
    refused = next(r for r in records if r["action"] == "REFUSE")
    assert refused["saved_usd"] > 0 and refused["deployment"] == "router"
    assert refused["latency_ms"]["upstream"] is None and refused["cost_usd"] == 0
    bad_key = next(r for r in records if r["status"] == 401)
    assert bad_key["error"] == {
        "type": "authentication_error",
        "message": "Invalid API key.",
        "source": "gateway",
    }
    assert bad_key["key_alias"] is None
    cooled = next(
        r for r in records if (r["error"] or {}).get("type") == "all_deployments_in_cooldown"
    )
    assert cooled["status"] == 429 and cooled["error"]["source"] == "upstream"
    limited = next(r for r in records if r["key_alias"] == "obs-rpm" and r["status"] == 429)
    assert limited["error"]["source"] == "gateway" and limited["admitted"] is False
    streamed = next(r for r in records if r["stream"])
    assert streamed["tokens"]["completion"] > 0


def test_metrics_add_up_over_both_workers(
    traffic: list[Sent], obs_gateway: Proxy, log_folder: Path
) -> None:
    samples = scrape(obs_gateway)
    got = summed(samples, "gateway_requests_total", "route", "action", "cache", "status")
    assert got == Counter(
        (r.replace("None", "other"), a, c, s) for r, a, c, s in (x.row for x in traffic)
    )
    records = read_log(log_folder)
    cost = sum(by_metric(samples, "gateway_cost_usd_total").values())
    assert cost == pytest.approx(sum(r["cost_usd"] for r in records), rel=1e-6)
    saved = sum(by_metric(samples, "gateway_savings_usd_total").values())
    assert saved == pytest.approx(sum(r["saved_usd"] for r in records), rel=1e-6)
    assert samples['gateway_fallbacks_total{model_group="claude-sim"}'] == 1
    assert (
        samples[
            'gateway_upstream_errors_total{error="InternalServerError",model_group="claude-sim"}'
        ]
        == 1
    )
    durations = by_metric(samples, "gateway_request_duration_seconds_count")
    assert sum(durations.values()) == len(traffic)
    classified = by_metric(samples, "gateway_classifier_duration_seconds_count")
    assert sum(classified.values()) == 3
    assert samples["gateway_redis_up"] == 1
    assert any(k.startswith("litellm_") for k in samples), "LiteLLM's own metrics are there"
    served = Counter(s.headers["x-gateway-deployment"] for s in traffic if s.served)
    assert summed(samples, "gateway_served_requests_total", "deployment") == Counter(
        {(d,): n for d, n in served.items()}
    )
    classes = Counter(
        (s.error_class or "client_error", str(s.status), str(s.error_type))
        for s in traffic
        if s.status >= 400
    )
    assert summed(samples, "gateway_errors_total", "class", "status", "type") == classes
    keys = Counter(s.alias for s in traffic if s.alias)
    assert summed(samples, "gateway_key_requests_total", "key") == Counter(
        {(k,): n for k, n in keys.items()}
    )
    assert samples['gateway_degraded_requests_total{kind="model"}'] == 1
    left = samples['gateway_budget_usd{amount="left",period="daily",subject="key:obs-tiny"}']
    assert left == 0


def by_name(rows: list[dict[str, Any]], column: str = "requests") -> Counter[str]:
    return +Counter({r["name"]: r[column] for r in rows})


def test_dashboard_data_breaks_down_exactly_what_was_sent(
    traffic: list[Sent], obs_gateway: Proxy, log_folder: Path
) -> None:
    data = dashboard(obs_gateway)
    assert data["store"] == "redis" and len(data["points"]) == 60 and data["step_s"] == 60
    sent = traffic
    served = [s for s in sent if s.served]
    t = data["totals"]
    assert t["requests"] == len(sent)
    assert t["errors"] == sum(s.status >= 400 for s in sent)
    actions: Counter[str] = Counter()
    for point in data["points"]:
        actions.update(point["by_action"])
    assert actions == Counter(s.row[1] for s in sent)
    # who served it, as the x-gateway-* headers said
    assert by_name(data["model_groups"]) == Counter(
        s.headers.get("x-gateway-model-group", "none") for s in served
    )
    assert by_name(data["deployments"]) == Counter(
        s.headers["x-gateway-deployment"] for s in served
    )
    assert by_name(data["providers"]) == Counter(s.headers["x-gateway-provider"] for s in served)
    # tokens and cost per model group, as the log has them
    records = read_log(log_folder)
    for row in data["model_groups"]:
        mine = [
            r for r in records if r["deployment"] and (r["model_group"] or "none") == row["name"]
        ]
        assert row["tokens_out"] == sum(r["tokens"]["completion"] for r in mine), row["name"]
        assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in mine), abs=1e-7)
        assert row["p95_ms"] is not None
    # errors: classes, status and type; the gateway's 429s apart from upstream cooldowns
    assert data["error_classes"] == Counter(
        s.error_class or "client_error" for s in sent if s.status >= 400
    )
    assert Counter({(e["status"], e["type"]): e["requests"] for e in data["errors"]}) == Counter(
        (str(s.status), s.error_type) for s in sent if s.status >= 400
    )
    cooldown = [e for e in data["errors"] if e["type"] == "all_deployments_in_cooldown"]
    assert [(e["source"], e["class"]) for e in cooldown] == [("upstream", "upstream_cooldown")]
    attempts: Counter[tuple[str, str]] = Counter()
    for r in records:
        for a in r.get("failed_attempts") or ():
            attempts[(a["model_group"], a["error"])] += 1
    assert (
        Counter({(a["model_group"], a["error"]): a["attempts"] for a in data["failed_attempts"]})
        == attempts
    )
    assert t["fallbacks"] == sum(
        int(s.headers.get("x-gateway-attempted-fallbacks") or 0) for s in served
    )
    assert data["fallbacks"] == [{"route": "claude-sim", "requests": 1, "fallbacks": 1}]
    # cache hits of both kinds; the router's intents; degradation and PII
    caches = Counter(s.headers.get("x-gateway-cache", "NONE") for s in sent)
    assert data["cache"] == caches
    intents = Counter(
        (s.headers["x-gateway-router"], s.headers.get("x-gateway-intent"))
        for s in sent
        if "x-gateway-router" in s.headers
    )
    assert Counter({(i["router"], i["intent"]): i["requests"] for i in data["intents"]}) == intents
    assert t["degraded"] == sum("x-gateway-degraded" in s.headers for s in sent) == 1
    assert data["degraded"] == {"model": 1}
    found = [p for p in map(pii_of, sent) if p is not None]  # none while no guard is wired
    assert t["pii"] == len(found)
    assert data["pii"] == {
        "actions": Counter(p["action"] for p in found),
        "kinds": Counter(k for p in found for k in p["kinds"]),
    }
    # keys and teams, spend from the log, budgets from /gateway/usage
    assert by_name(data["keys"]) == Counter(s.alias for s in sent if s.alias)
    for row in data["keys"]:
        assert row["spend_usd"] == pytest.approx(
            sum(r["cost_usd"] for r in records if r["key_alias"] == row["name"]), abs=1e-7
        )
    assert {r["name"]: r["team"] for r in data["keys"]}["obs-app"] == "support"
    assert by_name(data["teams"]) == Counter(
        {
            "support": sum(s.alias == "obs-app" for s in sent),
            "data": sum(s.alias in ("obs-tiny", "obs-rpm", "obs-cool") for s in sent),
        }
    )
    budgets = data["usage"]["budgets"]
    assert budgets["key:obs-tiny"]["daily"]["left_usd"] == 0
    assert 0 < budgets["key:obs-lean"]["daily"]["left_usd"] < 0.05


def test_longer_windows_hold_the_same_traffic(traffic: list[Sent], obs_gateway: Proxy) -> None:
    for window, points in (("6h", 72), ("day", 288)):
        data = dashboard(obs_gateway, window)
        assert data["window"] == window and len(data["points"]) == points
        assert data["step_s"] == 300 and data["totals"]["requests"] == len(traffic)


def chromium_dom(url: str, profile: Path, screenshot: Path | None = None) -> str:
    base = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=8000",
        "--window-size=1400,1900",
        "--hide-scrollbars",
    ]
    if screenshot is not None:
        subprocess.run(
            [*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=90, check=True
        )
        return ""
    return subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=True
    ).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_dashboard_renders_every_chart_in_headless_chromium(
    traffic: list[Sent], obs_gateway: Proxy, tmp_path: Path
) -> None:
    time.sleep(2.5)
    url = f"{obs_gateway.base_url}/gateway/dashboard#key={TEST_MASTER_KEY}"
    dom = chromium_dom(url, tmp_path / "profile")
    assert 'data-loaded="true"' in dom, "the page fetched its data with the key"
    for chart in CHARTS:
        svg = re.search(rf'<svg id="chart-{chart}".*?</svg>', dom, re.S)
        assert svg is not None, chart
        points = re.findall(r'class="point" data-value="([0-9.e-]+)"', svg.group(0))
        assert points and any(float(v) > 0 for v in points), f"chart {chart} has data"
        assert 'class="axis-title"' in svg.group(0) and 'class="tick"' in svg.group(0), chart
        tips = re.findall(r'data-tip="([^"]*)"', svg.group(0))
        assert len(tips) == 60 and any(":" in t.split("\n", 1)[-1] for t in tips), chart
    for table in TABLES:
        html = re.search(rf'<table id="table-{table}">(.*?)</table>', dom, re.S)
        assert html is not None and "<td" in html.group(1), table
        assert 'class="empty"' not in html.group(1), f"table {table} has rows"
    assert "all_deployments_in_cooldown" in dom and "429 gateway rate limit" in dom
    assert "<b>" + str(len(traffic)) + "</b>" in dom
    day = chromium_dom(url + "&window=day", tmp_path / "profile-day")
    assert 'data-window="day"' in day
    svg = re.search(r'<svg id="chart-requests".*?</svg>', day, re.S)
    assert svg is not None and len(re.findall(r"data-tip=", svg.group(0))) == 288
    shot = REPO / "reports" / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    chromium_dom(url, tmp_path / "profile-shot", screenshot=shot)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"


def test_report_agrees_with_what_was_sent(
    traffic: list[Sent], log_folder: Path, obs_gateway: Proxy, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "gateway"),
            "report",
            "--logs",
            str(log_folder),
            "--since",
            "1h",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "# Gateway analytics" in done.stdout
    report = json.loads((tmp_path / "analytics.json").read_text())
    assert (tmp_path / "analytics.md").read_text().strip() == done.stdout.strip()
    rows = [s.row for s in traffic]
    assert report["requests"] == len(traffic)
    assert report["by_action"] == dict(Counter(action for _, action, _, _ in rows))
    hits = sum(1 for _, _, cache, _ in rows if cache.startswith("HIT"))
    lookups = sum(1 for _, _, cache, _ in rows if cache in ("HIT_EXACT", "HIT_SEMANTIC", "MISS"))
    assert (report["cache"]["chat_hits"], report["cache"]["chat_lookups"]) == (hits, lookups)
    assert report["router"]["refusals"] == 1 and report["router"]["requests"] == 3
    assert report["errors"]["by_status"] == dict(
        Counter(str(s.status) for s in traffic if s.status >= 400)
    )
    assert report["fallbacks"]["requests"] == 1
    samples = scrape(obs_gateway)
    spent = sum(by_metric(samples, "gateway_cost_usd_total").values())
    assert report["total_cost_usd"] == pytest.approx(spent, rel=1e-6)
    saved = sum(by_metric(samples, "gateway_savings_usd_total").values())
    assert report["savings"]["total_usd"] == pytest.approx(saved, rel=1e-6)


def test_operator_endpoints_need_the_master_key(traffic: list[Sent], obs_gateway: Proxy) -> None:
    """Last in this module: its refusals are requests too (logged and counted)."""
    for path in ("/metrics", "/gateway/dashboard/data"):
        assert httpx.get(obs_gateway.base_url + path).status_code == 401
        forbidden = httpx.get(
            obs_gateway.base_url + path, headers={"Authorization": f"Bearer {APP_KEY}"}
        )
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["type"] == "permission_denied"
