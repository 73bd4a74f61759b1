"""Usage per key, team and model by UTC day: requests, tokens, spend and savings.

Savings are what cache hits would have cost (the stored answer's own cost); the
router's canned answers, refusals and clarifying questions are counted as requests
with no spend and no savings estimate. Counters live in Redis when the limits do
(shared by every worker and replica), otherwise in this process.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from extensions.backends.redis import RedisLink
from extensions.config.catalog import Catalog

METRICS = ("requests", "tokens", "spend_usd", "saved_usd", "cached_tokens",
           "prompt_cache_saved_usd", "storage_usd")  # fmt: skip
KEEP_DAYS = 40


@dataclass(frozen=True, slots=True)
class Charge:
    alias: str
    team: str | None
    model: str
    tokens: int = 0
    spend_usd: float = 0.0  # storage fees of provider prompt caches included
    saved_usd: float = 0.0  # the gateway's own answers (cache hits, router answers)
    cached_tokens: int = 0  # input read from a provider's prompt cache
    prompt_cache_saved_usd: float = 0.0  # what those tokens saved against the input price
    storage_usd: float = 0.0  # the storage fee part of spend_usd


class UsageStore(Protocol):
    async def add(self, day: str, fields: Mapping[str, float]) -> None: ...

    async def read(self, day: str) -> dict[str, float]: ...


class MemoryUsage:
    def __init__(self) -> None:
        self._days: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    async def add(self, day: str, fields: Mapping[str, float]) -> None:
        for name, value in fields.items():
            self._days[day][name] += value

    async def read(self, day: str) -> dict[str, float]:
        return dict(self._days.get(day, {}))


class RedisUsage:
    """One hash per UTC day, ``<prefix>usage:<day>``: on a cluster, one shard holds a day."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._prefix = f"{link.prefix}usage:"

    async def add(self, day: str, fields: Mapping[str, float]) -> None:
        name = self._prefix + day

        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for field, value in fields.items():
                pipe.hincrbyfloat(name, field, value)
            pipe.expire(name, KEEP_DAYS * 86400)
            await pipe.execute()

        await self._link.run(op, None, route=name)

    async def read(self, day: str) -> dict[str, float]:
        name = self._prefix + day
        raw = await self._link.run(lambda r: r.hgetall(name), None, route=name) or {}
        return {_text(k): float(v) for k, v in raw.items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


class Usage:
    def __init__(self, store: UsageStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    async def record(self, charge: Charge) -> None:
        values = {"requests": 1.0, "tokens": float(charge.tokens),
                  "spend_usd": charge.spend_usd, "saved_usd": charge.saved_usd,
                  "cached_tokens": float(charge.cached_tokens),
                  "prompt_cache_saved_usd": charge.prompt_cache_saved_usd,
                  "storage_usd": charge.storage_usd}  # fmt: skip
        fields: dict[str, float] = {}
        dims = [("key", charge.alias), ("model", charge.model)]
        if charge.team:
            dims.append(("team", charge.team))
        for kind, name in dims:
            for metric, value in values.items():
                if value:
                    fields[f"{kind}|{name}|{metric}"] = value
        await self.store.add(day_of(self._clock()), fields)

    async def report(self, day: str | None = None) -> dict[str, Any]:
        """``{"day": ..., "key": {alias: {metric: n}}, "team": {...}, "model": {...}}``."""
        day = day or day_of(self._clock())
        out: dict[str, Any] = {"day": day, "key": {}, "team": {}, "model": {}}
        for field, value in (await self.store.read(day)).items():
            kind, name, metric = field.split("|", 2)
            row = out[kind].setdefault(name, dict.fromkeys(METRICS, 0.0))
            row[metric] = round(value, 8) if metric.endswith("usd") else int(value)
        return out


@dataclass(frozen=True)
class SavingsEstimate:
    """What a model call would have cost: for answers the gateway gave without one.

    Prompt tokens are estimated from the characters sent (4 per token), completion
    tokens are ``assumed_completion_tokens``; prices are litellm.yaml's ``model_info``.
    """

    catalog: Catalog
    assumed_completion_tokens: int

    def usd(self, model: str, messages: object) -> float:
        price = self.catalog.price_of_group(model)
        if price is None:
            return 0.0
        chars = sum(len(str(m.get("content") or "")) for m in messages
                    if isinstance(m, Mapping)) if isinstance(messages, list) else 0  # fmt: skip
        return price.cost(int(chars / 4), self.assumed_completion_tokens)
