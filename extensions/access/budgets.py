"""Spend per key and team, by UTC day and month, and the budgets that cap it.

Spend is charged after each answer from LiteLLM's cost (``response_cost``, from the
prices in litellm.yaml's ``model_info``, so self-hosted models priced there are
charged too). A subject whose spend in the current day or month has reached its
budget is refused until the period ends: budgets are checked before a request and
charged after it, so concurrent requests can overshoot by what they cost.
"""

from __future__ import annotations

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
    async def spent(self, names: Sequence[str]) -> list[float]: ...

    async def charge(self, names: Sequence[tuple[str, int]], usd: float) -> None: ...


class MemorySpend:
    def __init__(self) -> None:
        self._spent: dict[str, float] = defaultdict(float)

    async def spent(self, names: Sequence[str]) -> list[float]:
        return [self._spent.get(n, 0.0) for n in names]

    async def charge(self, names: Sequence[tuple[str, int]], usd: float) -> None:
        for name, _ in names:
            self._spent[name] += usd


class RedisSpend:
    """``INCRBYFLOAT`` counters that expire a day after their period ends.

    Redis down: spend reads as zero (budgets not enforced meanwhile, logged by the
    link) unless ``fail_open`` is false, in which case ``spent`` raises.
    """

    def __init__(self, link: RedisLink, fail_open: bool) -> None:
        self._link = link
        self._prefix = f"{link.prefix}spend:"
        self._fail_open = fail_open

    async def spent(self, names: Sequence[str]) -> list[float]:
        keys = [self._prefix + n for n in names]
        values = await self._link.run(lambda r: r.mget(keys), None)
        if values is None:
            if not self._fail_open:
                raise BudgetStoreUnavailable
            return [0.0] * len(names)
        return [float(v) if v else 0.0 for v in values]

    async def charge(self, names: Sequence[tuple[str, int]], usd: float) -> None:
        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for name, ttl in names:
                pipe.incrbyfloat(self._prefix + name, usd)
                pipe.expire(self._prefix + name, ttl)
            await pipe.execute()

        await self._link.run(op, None)


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
        names = [n for b in budgets for n in (f"{b.subject}:d:{day}", f"{b.subject}:m:{month}")]
        spent = await self.store.spent(names)
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
        names = [n for s in subjects for n in (f"{s}:d:{day}", f"{s}:m:{month}")]
        spent = await self.store.spent(names) if names else []
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
        names: list[tuple[str, int]] = []
        for b in budgets:
            names += [(f"{b.subject}:d:{day}", day_ttl), (f"{b.subject}:m:{month}", month_ttl)]
        await self.store.charge(names, usd)


def budgets_by_alias(access: Access) -> dict[str, list[Budget]]:
    """Per key alias: its own budgets and its team's (shared by the team's keys)."""
    out: dict[str, list[Budget]] = {}
    for key in access.keys:
        found = []
        if key.daily_budget_usd is not None or key.monthly_budget_usd is not None:
            found.append(Budget(f"key:{key.alias}", key.daily_budget_usd, key.monthly_budget_usd))
        team = access.teams.get(key.team) if key.team else None
        if team is not None and (team.daily_budget_usd or team.monthly_budget_usd):
            found.append(Budget(f"team:{key.team}", team.daily_budget_usd,
                                team.monthly_budget_usd))  # fmt: skip
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
