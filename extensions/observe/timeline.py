"""Per-minute counters for the dashboard: the last hour and day at a glance.

Each finished request adds to its minute's bucket: requests by action, cache
outcomes, savings, spend by team, errors and a latency histogram. Increments are
gathered in the worker and flushed every few seconds, to this process
(``MemoryTimeline``) or to Redis (``RedisTimeline``, shared by workers and replicas;
one hash per minute, expiring after a day, all under one hash tag so a read is one
shard's work on a cluster). Fail-open: a Redis outage loses the
flushed increments of that moment, never a request.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from extensions.backends.redis import RedisLink

LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
KEEP_S = 26 * 3600
Buckets = dict[int, dict[str, float]]  # minute (epoch // 60) -> field -> value


def latency_slot(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


def increments(record: Mapping[str, Any]) -> dict[str, float]:
    """What one request-log record adds to its minute."""
    action, cache = str(record.get("action")), str(record.get("cache"))
    out: dict[str, float] = {"n": 1, f"a:{action}": 1, f"c:{cache}": 1}
    if int(record.get("status") or 0) >= 400:
        out["err"] = 1
    if record.get("saved_usd"):
        out["saved"] = float(record["saved_usd"])
    if record.get("cost_usd"):
        out[f"s:{record.get('team') or 'none'}"] = float(record["cost_usd"])
    total = (record.get("latency_ms") or {}).get("total")
    if isinstance(total, int | float):
        out[f"l:{latency_slot(float(total))}"] = 1
    return out


class Timeline(Protocol):
    async def add(self, buckets: Buckets) -> None: ...

    async def read(self, minutes: Iterable[int]) -> Buckets: ...


class MemoryTimeline:
    def __init__(self) -> None:
        self._buckets: dict[int, defaultdict[str, float]] = {}

    async def add(self, buckets: Buckets) -> None:
        for minute, fields in buckets.items():
            bucket = self._buckets.setdefault(minute, defaultdict(float))
            for name, value in fields.items():
                bucket[name] += value
        oldest = int(time.time() - KEEP_S) // 60
        for minute in [m for m in self._buckets if m < oldest]:
            del self._buckets[minute]

    async def read(self, minutes: Iterable[int]) -> Buckets:
        return {m: dict(self._buckets[m]) for m in minutes if m in self._buckets}


class RedisTimeline:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.prefix = f"{link.prefix}{{tl}}:"  # one hash tag: every minute on one shard

    async def add(self, buckets: Buckets) -> None:
        async def op(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for minute, fields in buckets.items():
                key = f"{self.prefix}{minute}"
                for name, value in fields.items():
                    pipe.hincrbyfloat(key, name, value)
                pipe.expire(key, KEEP_S)
            await pipe.execute()

        await self.link.run(op, None, route=self.prefix)

    async def read(self, minutes: Iterable[int]) -> Buckets:
        wanted = list(minutes)

        async def op(client: Any) -> Buckets:
            pipe = client.pipeline(transaction=False)
            for minute in wanted:
                pipe.hgetall(f"{self.prefix}{minute}")
            rows = await pipe.execute()
            return {m: {k.decode(): float(v) for k, v in row.items()}
                    for m, row in zip(wanted, rows, strict=True) if row}  # fmt: skip

        return await self.link.run(op, {}, route=self.prefix)


class TimelineRecorder:
    """Gathers increments in this worker; ``flush`` hands them to the store."""

    def __init__(self, store: Timeline) -> None:
        self.store = store
        self._pending: dict[int, defaultdict[str, float]] = {}

    def add(self, record: Mapping[str, Any], now: float | None = None) -> None:
        minute = int(time.time() if now is None else now) // 60
        bucket = self._pending.setdefault(minute, defaultdict(float))
        for name, value in increments(record).items():
            bucket[name] += value

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        await self.store.add({m: dict(fields) for m, fields in pending.items()})


def percentile_ms(histogram: Mapping[int, float], q: float) -> float | None:
    """The q-quantile of a latency histogram (slot -> count), interpolated within a slot."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for slot in range(len(LATENCY_BOUNDS_MS) + 1):
        count = histogram.get(slot, 0.0)
        if count and seen + count >= rank:
            low = 0.0 if slot == 0 else float(LATENCY_BOUNDS_MS[slot - 1])
            if slot == len(LATENCY_BOUNDS_MS):
                return low  # beyond the last bound: report the bound
            high = float(LATENCY_BOUNDS_MS[slot])
            return round(low + (high - low) * (rank - seen) / count, 2)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])


def series(buckets: Buckets, first_minute: int, points: int, step: int) -> dict[str, Any]:
    """The dashboard's chart data: ``points`` points of ``step`` minutes from ``first_minute``."""
    out: list[dict[str, Any]] = []
    teams: set[str] = set()
    for i in range(points):
        start = first_minute + i * step
        merged: defaultdict[str, float] = defaultdict(float)
        for minute in range(start, start + step):
            for name, value in buckets.get(minute, {}).items():
                merged[name] += value
        hits = merged["c:HIT_EXACT"] + merged["c:HIT_SEMANTIC"]
        looked = hits + merged["c:MISS"] + merged["c:SHADOW_HIT"]
        latency = {int(k[2:]): v for k, v in merged.items() if k.startswith("l:")}
        spend = {k[2:]: round(v, 6) for k, v in merged.items() if k.startswith("s:")}
        teams |= set(spend)
        out.append({
            "t": start * 60,
            "requests": int(merged["n"]),
            "by_action": {k[2:]: int(v) for k, v in merged.items() if k.startswith("a:")},
            "errors": int(merged["err"]),
            "cache_hit_rate": round(hits / looked, 4) if looked else None,
            "saved_usd": round(merged["saved"], 6),
            "spend_by_team": spend,
            "p50_ms": percentile_ms(latency, 0.5),
            "p95_ms": percentile_ms(latency, 0.95),
            "p99_ms": percentile_ms(latency, 0.99),
        })  # fmt: skip
    totals = {
        "requests": sum(p["requests"] for p in out),
        "errors": sum(p["errors"] for p in out),
        "saved_usd": round(sum(p["saved_usd"] for p in out), 6),
        "spend_usd": round(sum(sum(p["spend_by_team"].values()) for p in out), 6),
    }
    return {"step_s": step * 60, "points": out, "teams": sorted(teams), "totals": totals}
