"""Spend per key and team, by UTC day and month, and the budgets that cap it.

Spend is charged after each answer from LiteLLM's cost (``response_cost``, from the
prices in litellm.yaml's ``model_info``, so self-hosted models priced there are
charged too). A subject whose spend in the current day or month has reached its
budget is refused until the period ends: budgets are checked before a request and
charged after it, so concurrent requests can overshoot by what they cost.

A key's counters and its team's are read in one step: they share a group (the team, or
the key when it has none), which is their Redis hash tag, so one MGET reads them even on
a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from extensions.access.settings import Access, DegradeStep
from extensions.backends.redis import RedisLink


@dataclass(frozen=True, slots=True)
class Budget:
    subject: str  # "key:<alias>" or "team:<name>"
    daily_usd: float | None = None
    monthly_usd: float | None = None
    group: str = ""  # read together with: "team:<name>" for a team and its keys

    def counters(self, day: str, month: str) -> tuple[SpendCounter, SpendCounter]:
        group = self.group or self.subject
        daily = SpendCounter(group, f"{self.subject}:d:{day}")
        return daily, SpendCounter(group, f"{self.subject}:m:{month}")


@dataclass(frozen=True, slots=True)
class SpendCounter:
    group: str  # counters read together share it (their Redis hash tag)
    name: str  # "<subject>:d:<YYYYMMDD>" or "<subject>:m:<YYYYMM>"


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    allowed: bool
    subject: str | None = None
    period: str | None = None  # "daily" or "monthly"
    budget_usd: float = 0.0
    spent_usd: float = 0.0
    resets_at: datetime | None = None
    spent_share: float = 0.0  # the highest share of any of the subject's budgets spent (0..1+)


OK = BudgetVerdict(True)


def periods(now: float) -> tuple[str, str, datetime, datetime]:
    """Day and month labels, and when each ends (UTC)."""
    t = datetime.fromtimestamp(now, UTC)
    day_end = datetime(t.year, t.month, t.day, tzinfo=UTC) + timedelta(days=1)
    month_end = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
    return t.strftime("%Y%m%d"), t.strftime("%Y%m"), day_end, month_end


class SpendStore(Protocol):
    async def spent(self, counters: Sequence[SpendCounter]) -> list[float]: ...

    async def charge(self, counters: Sequence[tuple[SpendCounter, int]], usd: float) -> None: ...


class MemorySpend:
    def __init__(self) -> None:
        self._spent: dict[str, float] = defaultdict(float)

    async def spent(self, counters: Sequence[SpendCounter]) -> list[float]:
        return [self._spent.get(c.name, 0.0) for c in counters]

    async def charge(self, counters: Sequence[tuple[SpendCounter, int]], usd: float) -> None:
        for counter, _ in counters:
            self._spent[counter.name] += usd


class RedisSpend:
    """``INCRBYFLOAT`` counters under ``<prefix>{spend:<group>}:<name>`` that expire a
    day after their period ends; one MGET per group.

    A group's shard down: its spend reads as zero (budgets not enforced meanwhile,
    logged by the link) unless ``fail_open`` is false, in which case ``spent`` raises.
    """

    def __init__(self, link: RedisLink, fail_open: bool) -> None:
        self._link = link
        self._prefix = link.prefix
        self._fail_open = fail_open

    def _key(self, counter: SpendCounter) -> str:
        return f"{self._prefix}{{spend:{counter.group}}}:{counter.name}"

    async def spent(self, counters: Sequence[SpendCounter]) -> list[float]:
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, counter in enumerate(counters):
            by_group[counter.group].append(i)
        keys = [self._key(c) for c in counters]

        async def read(positions: list[int]) -> list[Any] | None:
            names = [keys[i] for i in positions]
            return await self._link.run(lambda r: r.mget(names), None, route=names[0])

        groups = list(by_group.values())
        found = await asyncio.gather(*[read(positions) for positions in groups])
        out = [0.0] * len(counters)
        for positions, values in zip(groups, found, strict=True):
            if values is None:
                if not self._fail_open:
                    raise BudgetStoreUnavailable
                continue
            for i, value in zip(positions, values, strict=True):
                out[i] = float(value) if value else 0.0
        return out

    async def charge(self, counters: Sequence[tuple[SpendCounter, int]], usd: float) -> None:
        by_group: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for counter, ttl in counters:
            by_group[counter.group].append((self._key(counter), ttl))

        async def add(named: list[tuple[str, int]]) -> None:
            async def op(r: Any) -> None:
                pipe = r.pipeline(transaction=False)
                for name, ttl in named:
                    pipe.incrbyfloat(name, usd)
                    pipe.expire(name, ttl)
                await pipe.execute()

            await self._link.run(op, None, route=named[0][0])

        await asyncio.gather(*[add(named) for named in by_group.values()])


class BudgetStoreUnavailable(Exception):
    pass


class Budgets:
    def __init__(self, store: SpendStore, by_alias: dict[str, list[Budget]],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self._by_alias = by_alias
        self._clock = clock

    async def check(self, alias: str | None) -> BudgetVerdict:
        budgets = self._by_alias.get(alias or "", [])
        if not budgets:
            return OK
        day, month, day_end, month_end = periods(self._clock())
        spent = await self.store.spent([c for b in budgets for c in b.counters(day, month)])
        share = 0.0
        for i, b in enumerate(budgets):
            daily, monthly = spent[2 * i], spent[2 * i + 1]
            if b.daily_usd is not None:
                share = max(share, daily / b.daily_usd)
                if daily >= b.daily_usd:
                    return BudgetVerdict(
                        False, b.subject, "daily", b.daily_usd, daily, day_end, share
                    )
            if b.monthly_usd is not None:
                share = max(share, monthly / b.monthly_usd)
                if monthly >= b.monthly_usd:
                    return BudgetVerdict(
                        False, b.subject, "monthly", b.monthly_usd, monthly, month_end, share
                    )
        return BudgetVerdict(True, spent_share=share)

    async def remaining(self) -> dict[str, dict[str, Any]]:
        """Per subject: budget, spent and left, today and this month."""
        subjects = {b.subject: b for budgets in self._by_alias.values() for b in budgets}
        day, month, day_end, month_end = periods(self._clock())
        counters = [c for b in subjects.values() for c in b.counters(day, month)]
        spent = await self.store.spent(counters) if counters else []
        out: dict[str, dict[str, Any]] = {}
        for i, (subject, b) in enumerate(subjects.items()):
            row: dict[str, Any] = {}
            for period, budget, used, ends in (("daily", b.daily_usd, spent[2 * i], day_end),
                                               ("monthly", b.monthly_usd, spent[2 * i + 1],
                                                month_end)):  # fmt: skip
                if budget is not None:
                    row[period] = {"budget_usd": budget, "spent_usd": round(used, 6),
                                   "left_usd": round(max(0.0, budget - used), 6),
                                   "resets_at": f"{ends:%Y-%m-%dT%H:%M:%SZ}"}  # fmt: skip
            out[subject] = row
        return out

    async def charge(self, alias: str | None, usd: float) -> None:
        budgets = self._by_alias.get(alias or "", [])
        if not budgets or usd <= 0:
            return
        now = self._clock()
        day, month, day_end, month_end = periods(now)
        day_ttl = int(day_end.timestamp() - now) + 86400
        month_ttl = int(month_end.timestamp() - now) + 86400
        counters: list[tuple[SpendCounter, int]] = []
        for b in budgets:
            daily, monthly = b.counters(day, month)
            counters += [(daily, day_ttl), (monthly, month_ttl)]
        await self.store.charge(counters, usd)


def budgets_by_alias(access: Access) -> dict[str, list[Budget]]:
    """Per key alias: its own budgets and its team's (shared by the team's keys), grouped
    by the team (by the key when it has none)."""
    out: dict[str, list[Budget]] = {}
    for key in access.keys:
        found = []
        group = f"team:{key.team}" if key.team else f"key:{key.alias}"
        if key.daily_budget_usd is not None or key.monthly_budget_usd is not None:
            found.append(
                Budget(f"key:{key.alias}", key.daily_budget_usd, key.monthly_budget_usd, group)
            )
        team = access.teams.get(key.team) if key.team else None
        if team is not None and (team.daily_budget_usd or team.monthly_budget_usd):
            found.append(
                Budget(f"team:{key.team}", team.daily_budget_usd, team.monthly_budget_usd, group)
            )
        if found:
            out[key.alias] = found
    return out


def ladders_by_alias(access: Access) -> dict[str, tuple[DegradeStep, ...]]:
    """Per key alias: its degradation ladder (its own, else its team's), highest rung last."""
    out: dict[str, tuple[DegradeStep, ...]] = {}
    for key in access.keys:
        team = access.teams.get(key.team) if key.team else None
        steps = key.degrade or (team.degrade if team is not None else [])
        if steps:
            out[key.alias] = tuple(sorted(steps, key=lambda s: s.at))
    return out
