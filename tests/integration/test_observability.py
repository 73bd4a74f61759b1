"""Request log, Prometheus metrics and the dashboard, checked against each other after a
scripted mix of requests through a real proxy with two workers (metrics in
multiprocess mode, the shared cache tier and the dashboard timeline in Redis).

The mix: routed, canned, refused, a cache miss then a hit, a fail-over, a stream,
a bad key, a bad request, and concurrent hits spread over both workers. Every
request is expected exactly once in the log and in ``gateway_requests_total``.
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
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.redis_server import RedisServer
from tests.support.stack import REPO, TEST_MASTER_KEY, Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration

APP_KEY = "sk-test-obs-app-3c9d1e"  # a team key (not an operator)
RUN = uuid.uuid4().hex[:8]  # fresh queries, whatever an earlier run cached in Redis
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ("requests", "hit-rate", "savings", "spend", "latency")
SPREAD = 16  # concurrent cache hits on fresh connections: both workers answer some


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
            "teams": {"support": {"models": ["support-bot", "gpt-sim"]}},
            "keys": [{"alias": "obs-app", "owner": "ops", "team": "support",
                      "env": "TEST_OBS_APP_KEY"}],
        }  # fmt: skip

    config = derive_gateway_config(tmp_path_factory.mktemp("obs"), edit)
    proxy = Proxy(log_dir, sim, gateway_config=config, workers=2, name="obs",
                  extra_env={"TEST_OBS_APP_KEY": APP_KEY}).start()  # fmt: skip
    yield proxy
    proxy.stop()


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def chat(proxy: Proxy, model: str, text: str, key: str | None = None,
               stream: bool = False) -> dict[str, str]:  # fmt: skip
    """One request on a fresh connection; its response headers."""
    client = proxy.client(api_key=key)
    try:
        if stream:
            async with client.chat.completions.with_streaming_response.create(
                model=model, messages=user(text), stream=True,  # type: ignore[arg-type]
            ) as raw:  # fmt: skip
                async for _ in await raw.parse():
                    pass
                return dict(raw.headers)
        resp = await client.chat.completions.with_raw_response.create(
            model=model, messages=user(text),  # type: ignore[arg-type]
        )  # fmt: skip
        return dict(resp.headers)
    finally:
        await client.close()


Row = tuple[str | None, str, str, str]  # route, action, cache, status
NO_ROUTE = None


@pytest.fixture(scope="module")
def traffic(obs_gateway: Proxy, sim: SimProvider, log_folder: Path) -> list[Row]:
    """Send the scripted mix once; what each request should be counted as."""
    expected: list[Row] = []

    async def send() -> None:
        sim.reset()
        h = await chat(obs_gateway, "support-bot",
                       f"the app keeps crashing on start, mail me at jo.doe@example.com {RUN}",
                       APP_KEY)  # fmt: skip
        assert h["x-gateway-action"] == "ROUTE"
        expected.append(("support-bot", "ROUTE", "MISS", "200"))
        h = await chat(obs_gateway, "support-bot", "I forgot my password", APP_KEY)
        assert h["x-gateway-action"] == "RESPOND"
        expected.append(("support-bot", "RESPOND", "BYPASS", "200"))
        h = await chat(obs_gateway, "support-bot", "tell me a joke about dogs")
        assert h["x-gateway-action"] == "REFUSE"
        expected.append(("support-bot", "REFUSE", "BYPASS", "200"))
        question = f"what is the capital of France {RUN}"
        for outcome in ("MISS", "HIT_EXACT"):
            h = await chat(obs_gateway, "gpt-sim", question, APP_KEY)
            assert h["x-gateway-cache"] == outcome
            expected.append(("gpt-sim", "DIRECT", outcome, "200"))
        sim.set_model("sim-claude", {"faults": [{"kind": "http_500", "rate": 1.0}]})
        h = await chat(obs_gateway, "claude-sim", f"fail over please {RUN}")
        assert h["x-gateway-attempted-fallbacks"] == "1"
        expected.append(("claude-sim", "DIRECT", "MISS", "200"))
        sim.reset()
        await chat(obs_gateway, "gpt-sim", f"stream a few words {RUN}", stream=True)
        expected.append(("gpt-sim", "DIRECT", "MISS", "200"))
        with pytest.raises(openai.AuthenticationError):
            await chat(obs_gateway, "gpt-sim", "who am I", key="sk-not-a-key")
        expected.append(
            (NO_ROUTE, "DIRECT", "NONE", "401")
        )  # the body of an unknown key is never read
        with pytest.raises(openai.BadRequestError):
            await obs_gateway.client().chat.completions.create(model="gpt-sim", messages=[])
        expected.append(("gpt-sim", "DIRECT", "NONE", "400"))
        hits = await asyncio.gather(*(chat(obs_gateway, "gpt-sim", question, APP_KEY)
                                      for _ in range(SPREAD)))  # fmt: skip
        assert {h["x-gateway-cache"] for h in hits} == {"HIT_EXACT"}
        expected.extend([("gpt-sim", "DIRECT", "HIT_EXACT", "200")] * SPREAD)

    asyncio.run(send())
    wait_for_lines(log_folder, len(expected))
    return expected


def wait_for_lines(folder: Path, count: int, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(read_log(folder)) < count:
        time.sleep(0.2)


def read_log(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(folder.glob("requests-*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]  # fmt: skip


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


def test_every_request_is_one_log_line(traffic: list[Row], log_folder: Path) -> None:
    records = read_log(log_folder)
    got = Counter((r["route"], r["action"], r["cache"], str(r["status"])) for r in records)
    assert got == Counter(traffic)
    assert len({r["request_id"] for r in records}) == len(records)
    files = [p for p in log_folder.glob("requests-*.jsonl") if p.read_text().strip()]
    assert len(files) == 2, "both workers answered some requests and wrote their own file"


def test_log_fields_tell_what_happened(traffic: list[Row], log_folder: Path) -> None:
    records = read_log(log_folder)
    routed = next(r for r in records if r["action"] == "ROUTE")
    assert routed["key_alias"] == "obs-app" and routed["team"] == "support"
    assert routed["intent"] == "technical_issue" and routed["model_group"] == "claude-sim"
    assert routed["deployment"] == "claude-sim" and routed["provider"] == "anthropic"
    assert routed["tokens"]["completion"] > 0 and routed["cost_usd"] > 0
    latency = routed["latency_ms"]
    assert latency["classify"] > 0 and latency["upstream"] > 0
    assert latency["total"] >= latency["upstream"]
    # message text only for the listed router, with the e-mail address redacted (by the PII
    # guardrail of support-bot before the model saw it, else by the log's own patterns)
    assert "[email]" in routed["content"]["query"].lower()
    assert "jo.doe@example.com" not in json.dumps(records)
    assert routed["content"]["answer"].startswith("Simulated reply from sim-claude")
    assert all("content" not in r for r in records if r["route"] != "support-bot")
    failover = next(r for r in records if r["route"] == "claude-sim")
    assert failover["fallbacks"] == 1 and failover["model_group"] == "gemini-sim"
    hit = next(r for r in records if r["cache"] == "HIT_EXACT")
    assert hit["saved_usd"] > 0 and hit["cost_usd"] == 0 and hit["model_group"] == "gpt-sim"
    assert (hit["provider"], hit["deployment"]) == ("gateway", "cache")
    refused = next(r for r in records if r["action"] == "REFUSE")
    assert refused["saved_usd"] > 0
    assert refused["latency_ms"]["upstream"] is None and refused["cost_usd"] == 0
    bad_key = next(r for r in records if r["status"] == 401)
    assert bad_key["error"]["type"] == "authentication_error" and bad_key["key_alias"] is None
    streamed = next(r for r in records if r["stream"])
    assert streamed["tokens"]["completion"] > 0


def test_metrics_add_up_over_both_workers(
    traffic: list[Row], obs_gateway: Proxy, log_folder: Path
) -> None:
    samples = scrape(obs_gateway)
    requests = by_metric(samples, "gateway_requests_total")
    got = Counter()
    for sample, value in requests.items():
        lab = labels(sample)
        got[(lab["route"], lab["action"], lab["cache"], lab["status"])] += int(value)
    assert got == Counter((r or "other", a, c, s) for r, a, c, s in traffic)
    records = read_log(log_folder)
    cost = sum(by_metric(samples, "gateway_cost_usd_total").values())
    assert cost == pytest.approx(sum(r["cost_usd"] for r in records), rel=1e-6)
    saved = sum(by_metric(samples, "gateway_savings_usd_total").values())
    assert saved == pytest.approx(sum(r["saved_usd"] for r in records), rel=1e-6)
    assert samples['gateway_fallbacks_total{model_group="claude-sim"}'] == 1
    assert samples['gateway_upstream_errors_total{error="InternalServerError",'
                   'model_group="claude-sim"}'] == 1  # fmt: skip
    durations = by_metric(samples, "gateway_request_duration_seconds_count")
    assert sum(durations.values()) == len(traffic)
    classified = by_metric(samples, "gateway_classifier_duration_seconds_count")
    assert sum(classified.values()) == 3
    assert samples["gateway_redis_up"] == 1
    assert any(k.startswith("litellm_") for k in samples), "LiteLLM's own metrics are there"


def test_operator_endpoints_need_the_master_key(traffic: list[Row], obs_gateway: Proxy) -> None:
    for path in ("/metrics", "/gateway/dashboard/data"):
        assert httpx.get(obs_gateway.base_url + path).status_code == 401
        forbidden = httpx.get(obs_gateway.base_url + path,
                              headers={"Authorization": f"Bearer {APP_KEY}"})  # fmt: skip
        assert forbidden.status_code == 403
        assert forbidden.json()["error"]["type"] == "permission_denied"


def test_dashboard_data_counts_the_traffic(
    traffic: list[Row], obs_gateway: Proxy, log_folder: Path
) -> None:
    time.sleep(2.5)  # every worker flushes its minute counters to Redis every 2 s
    r = httpx.get(f"{obs_gateway.base_url}/gateway/dashboard/data?window=hour",
                  headers={"Authorization": f"Bearer {TEST_MASTER_KEY}"})  # fmt: skip
    data = r.json()
    assert data["store"] == "redis" and len(data["points"]) == 60
    logged = read_log(log_folder)  # the traffic, and the refusals of the operator-route tests
    assert data["totals"]["requests"] == len(logged) >= len(traffic)
    assert data["totals"]["errors"] == sum(1 for r in logged if r["status"] >= 400)
    actions = Counter()
    for point in data["points"]:
        actions.update(point["by_action"])
    assert actions == Counter(r["action"] for r in logged)
    assert "support" in data["teams"]


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_dashboard_renders_charts_in_headless_chromium(
    traffic: list[Row], obs_gateway: Proxy, tmp_path: Path, log_folder: Path
) -> None:
    time.sleep(2.5)
    url = f"{obs_gateway.base_url}/gateway/dashboard#key={TEST_MASTER_KEY}"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000", "--window-size=1400,1300"]  # fmt: skip
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True,
                         timeout=90, check=True).stdout  # fmt: skip
    assert 'data-loaded="true"' in dom, "the page fetched its data with the key"
    for chart in CHARTS:
        svg = re.search(rf'<svg id="chart-{chart}".*?</svg>', dom, re.S)
        assert svg is not None, chart
        points = re.findall(r'class="point" data-value="([0-9.e-]+)"', svg.group(0))
        assert points and any(float(v) > 0 for v in points), f"chart {chart} has data"
    assert "<b>" + str(len(read_log(log_folder))) + "</b>" in dom  # every request logged
    shot = REPO / "reports" / "dashboard.png"
    shot.parent.mkdir(exist_ok=True)
    subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, timeout=90,
                   check=True)  # fmt: skip
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"


def test_report_agrees_with_what_was_sent(
    traffic: list[Row], log_folder: Path, obs_gateway: Proxy, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gateway"), "report", "--logs", str(log_folder),
         "--since", "1h", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "# Gateway analytics" in done.stdout
    report = json.loads((tmp_path / "analytics.json").read_text())
    assert (tmp_path / "analytics.md").read_text().strip() == done.stdout.strip()
    logged = [r for r in read_log(log_folder) if r["endpoint"] == "chat"]
    assert report["requests"] >= len(logged) == len(traffic)  # plus refused operator routes
    chat_actions = Counter(r["action"] for r in logged)
    assert all(report["by_action"][a] >= n for a, n in chat_actions.items())
    assert Counter(r["route"] for r in logged) == Counter(route for route, _, _, _ in traffic)
    hits = sum(1 for _, _, cache, _ in traffic if cache == "HIT_EXACT")
    lookups = sum(1 for _, _, cache, _ in traffic if cache in ("HIT_EXACT", "MISS"))
    assert (report["cache"]["chat_hits"], report["cache"]["chat_lookups"]) == (hits, lookups)
    assert report["router"]["refusals"] == 1 and report["router"]["requests"] == 3
    assert report["errors"]["by_status"]["400"] == 1 and report["errors"]["by_status"]["401"] >= 1
    assert report["fallbacks"]["requests"] == 1
    samples = scrape(obs_gateway)
    spent = sum(by_metric(samples, "gateway_cost_usd_total").values())
    assert report["total_cost_usd"] == pytest.approx(spent, rel=1e-6)
    saved = sum(by_metric(samples, "gateway_savings_usd_total").values())
    assert report["savings"]["total_usd"] == pytest.approx(saved, rel=1e-6)
