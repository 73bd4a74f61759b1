"""Budgets per key and team by UTC day and month, with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from extensions.access.budgets import Budget, Budgets, MemorySpend, budgets_by_alias, periods
from extensions.access.settings import Access, Key, Team

pytestmark = pytest.mark.unit
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    now = NOON

    def __call__(self) -> float:
        return self.now


def test_periods_end_at_midnight_and_month_end() -> None:
    day, month, day_end, month_end = periods(NOON)
    assert (day, month) == ("20261130", "202611")
    assert day_end == datetime(2026, 12, 1, tzinfo=UTC) == month_end
    assert periods(datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp())[3] == datetime(
        2027, 1, 1, tzinfo=UTC
    )


async def test_daily_budget_exhausts_then_resets_at_midnight() -> None:
    clock = Clock()
    budgets = Budgets(MemorySpend(), {"a": [Budget("key:a", daily_usd=0.01)]}, clock)
    assert (await budgets.check("a")).allowed
    await budgets.charge("a", 0.006)
    assert (await budgets.check("a")).allowed
    await budgets.charge("a", 0.006)
    refused = await budgets.check("a")
    assert not refused.allowed and refused.period == "daily" and refused.subject == "key:a"
    assert refused.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert refused.spent_usd == pytest.approx(0.012)
    clock.now += 12 * 3600  # midnight UTC: a new day
    assert (await budgets.check("a")).allowed


async def test_team_budget_shared_and_monthly() -> None:
    access = Access(teams={"t": Team(monthly_budget_usd=1.0)},
                    keys=[Key(alias="a", owner="o", team="t", env="A"),
                          Key(alias="b", owner="o", team="t", env="B")])  # fmt: skip
    budgets = Budgets(MemorySpend(), budgets_by_alias(access), Clock())
    await budgets.charge("a", 0.7)
    await budgets.charge("b", 0.3)
    refused = await budgets.check("b")
    assert not refused.allowed and refused.period == "monthly" and refused.subject == "team:t"


async def test_no_budget_no_check() -> None:
    budgets = Budgets(MemorySpend(), {}, Clock())
    await budgets.charge("x", 100.0)
    assert (await budgets.check("x")).allowed
