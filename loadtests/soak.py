"""Soak run: mixed load at a steady rate for a long time, with faults, reporting errors,
memory and latency minute by minute. Not part of the test suite (it takes 30 minutes):

    .venv/bin/python -m loadtests.soak --minutes 30 --rate 15 --json reports/soak.json

It starts the same stack as the integration tests (``tests/support``): a Redis 8,
the simulated provider with ``--fault-rate`` of the primary deployments' calls
failing (500, 429, timeouts and dropped connections, mixed), and the gateway with
``--workers`` workers, the shared cache tier, limits and the dashboard in Redis.
Redis is killed for ``--redis-outage-s`` seconds half-way through. The load is
open-loop (a request every 1/rate s, whatever the answers do): routed, canned,
refused and ambiguous router queries, unique model queries (misses), repeats and
paraphrases (hits), streams. Expected outcomes are 200s; any 5xx or transport
error counts as an error. Memory: RSS of every gateway worker each minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from loadtests.procs import tree
from tests.support.redis_server import RedisServer
from tests.support.stack import (
    TEST_MASTER_KEY,
    Proxy,
    SimProvider,
    derive_gateway_config,
    derive_litellm_config,
)

ROUTER_QUERIES = [
    "the app keeps crashing on start", "I forgot my password", "tell me a joke about dogs",
    "freeze", "how do I cancel my subscription", "I was charged twice this month",
    "what's the weather like tomorrow in paris", "my invoice shows the wrong amount",
]  # fmt: skip
REPEATS = ["what is the capital of France", "how does photosynthesis work",
           "summarize the plot of Hamlet", "how many legs does a spider have"]  # fmt: skip
PARAPHRASES = ["what's the capital of France", "how does photosynthesis work exactly",
               "give me a summary of the plot of Hamlet"]  # fmt: skip


@dataclass
class Minute:
    sent: int = 0
    ok: int = 0
    client_errors: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    hits: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    redis_down: bool = False


def pick_request(n: int) -> dict[str, Any]:
    roll = random.random()
    if roll < 0.35:
        return {"model": "support-bot", "messages": [
            {"role": "user", "content": random.choice(ROUTER_QUERIES)}]}  # fmt: skip
    if roll < 0.55:
        text = f"question number {n}: explain item {n % 997}"
        return {"model": "gpt-sim", "messages": [{"role": "user", "content": text}]}
    if roll < 0.75:
        return {"model": "gpt-sim", "messages": [
            {"role": "user", "content": random.choice(REPEATS)}]}  # fmt: skip
    if roll < 0.85:
        return {"model": "gpt-sim", "messages": [
            {"role": "user", "content": random.choice(PARAPHRASES)}]}  # fmt: skip
    return {"model": "gpt-sim", "stream": True, "messages": [
        {"role": "user", "content": f"stream number {n}"}]}  # fmt: skip


async def one(client: httpx.AsyncClient, n: int, minute: Minute) -> None:
    body = pick_request(n)
    minute.sent += 1
    started = time.perf_counter()
    try:
        if body.get("stream"):
            async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                async for _ in r.aiter_bytes():
                    pass
                status, headers = r.status_code, r.headers
        else:
            r = await client.post("/v1/chat/completions", json=body)
            status, headers = r.status_code, r.headers
    except httpx.HTTPError as exc:
        minute.errors += 1
        kind = type(exc).__name__
        minute.error_kinds[kind] = minute.error_kinds.get(kind, 0) + 1
        return
    minute.latencies_ms.append((time.perf_counter() - started) * 1000)
    if status == 200:
        minute.ok += 1
        minute.hits += headers.get("x-gateway-cache", "").startswith("HIT")
    elif status < 500:
        minute.client_errors += 1
    else:
        minute.errors += 1
        minute.error_kinds[str(status)] = minute.error_kinds.get(str(status), 0) + 1


def worker_rss_mb(proxy: Proxy) -> list[float]:
    """RSS of the proxy's processes that serve requests (the workers, or the one process)."""
    if proxy.process.proc is None:
        return []
    family = tree(proxy.process.proc.pid)
    try:
        procs = [p for p in family[1:]
                 if "resource_tracker" not in " ".join(p.cmdline())] or family[:1]  # fmt: skip
    except psutil.Error:
        return []
    out = []
    for p in procs:
        try:
            out.append(round(p.memory_info().rss / 2**20, 1))
        except psutil.Error:
            continue
    return sorted(out)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first = [r for r in rows[1:3] if r["rss_mb"]] or rows[:1]
    last = rows[-2:]
    base = statistics.mean(sum(r["rss_mb"]) for r in first)
    end = statistics.mean(sum(r["rss_mb"]) for r in last)
    return {
        "requests": sum(r["sent"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "client_errors": sum(r["client_errors"] for r in rows),
        "rss_total_mb_start": round(base, 1), "rss_total_mb_end": round(end, 1),
        "rss_growth_pct": round((end - base) / base * 100, 1) if base else None,
        "p50_ms_first": rows[1]["p50_ms"] if len(rows) > 1 else None,
        "p50_ms_last": rows[-1]["p50_ms"],
    }  # fmt: skip


async def drive(args: argparse.Namespace, proxy: Proxy, redis: RedisServer) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {TEST_MASTER_KEY}"}
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    outage_at = args.minutes * 60 / 2
    outage: tuple[float, float] | None = None
    async with httpx.AsyncClient(base_url=proxy.base_url, headers=headers, limits=limits,
                                 timeout=60) as client:  # fmt: skip
        start = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        for m in range(args.minutes):
            minute = Minute()
            minute_start = start + m * 60
            while time.monotonic() < minute_start + 60:
                elapsed = time.monotonic() - start
                if args.redis_outage_s and outage is None and elapsed >= outage_at:
                    redis.kill()
                    outage = (elapsed, elapsed + args.redis_outage_s)
                if outage is not None and outage[1] and elapsed >= outage[1]:
                    redis.start()
                    outage = (outage[0], 0.0)
                    minute.redis_down = True
                if outage is not None and outage[1]:
                    minute.redis_down = True
                task = asyncio.create_task(one(client, n, minute))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
                await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
            lat = sorted(minute.latencies_ms) or [0.0]
            row = {
                "minute": m + 1, "sent": minute.sent, "ok": minute.ok,
                "client_errors": minute.client_errors, "errors": minute.errors,
                "error_kinds": minute.error_kinds,
                "p50_ms": round(lat[len(lat) // 2], 1),
                "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                "hit_rate": round(minute.hits / max(minute.ok, 1), 3),
                "rss_mb": worker_rss_mb(proxy), "redis_down": minute.redis_down,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--rate", type=float, default=15.0, help="requests per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--redis-outage-s", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=Path("reports/soak.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    redis = RedisServer(work / "redis").start()
    sim = SimProvider(work).start()
    share = args.fault_rate / 4
    faults = [{"kind": kind, "rate": share, **({"hang_s": 60} if kind == "timeout" else {})}
              for kind in ("http_500", "http_429", "timeout", "drop")]  # fmt: skip
    for model in ("sim-gpt-a", "sim-claude"):
        sim.set_model(model, {"faults": faults})

    def edit(data: dict[str, Any]) -> None:
        data["redis"]["url"] = redis.url
        data["cache"]["tier"] = "shared"
        data["observability"]["dashboard"]["store"] = "redis"
        data["observability"]["request_log"]["stdout"] = False

    config = derive_gateway_config(work, edit)
    # a hung upstream call fails over after 5 s instead of the shipped 30 s
    litellm = derive_litellm_config(work / "litellm.yaml", {"timeout": 5, "stream_timeout": 5})
    proxy = Proxy(work, sim, litellm_config=litellm, gateway_config=config,
                  workers=args.workers, name="soak").start()  # fmt: skip
    try:
        rows = asyncio.run(drive(args, proxy, redis))
    finally:
        proxy.stop()
        sim.stop()
        redis.stop()
    result = {"settings": vars(args) | {"json": str(args.json)}, "minutes": rows,
              "summary": summary(rows)}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
