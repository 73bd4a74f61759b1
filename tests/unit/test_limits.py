"""Key and team limits over the in-process store, with an injected clock."""

from __future__ import annotations

import pytest

from extensions.access.limits import Limiter, MemoryLimits, SubjectLimits, subject_limits
from extensions.access.settings import Access, Key, Team

pytestmark = pytest.mark.unit


class Clock:
    now = 1_000_040.0  # 20 s into a minute (1_000_020 is 16_667 minutes)

    def __call__(self) -> float:
        return self.now


def limiter(by_alias: dict[str, list[SubjectLimits]]) -> tuple[Limiter, Clock]:
    clock = Clock()
    return Limiter(MemoryLimits(), by_alias, clock), clock


async def test_rpm_refuses_with_retry_after_and_resets_next_minute() -> None:
    lim, clock = limiter({"a": [SubjectLimits("key:a", rpm=2)]})
    assert (await lim.admit("a", "r1")).allowed
    assert (await lim.admit("a", "r2")).allowed
    refused = await lim.admit("a", "r3")
    assert not refused.allowed and refused.limit == "rpm" and refused.subject == "key:a"
    assert refused.retry_after_s == 40
    clock.now += 40
    assert (await lim.admit("a", "r4")).allowed


async def test_team_limit_is_shared_by_its_keys() -> None:
    access = Access(teams={"t": Team(rpm=3)},
                    keys=[Key(alias="a", owner="o", team="t", env="A"),
                          Key(alias="b", owner="o", team="t", env="B")])  # fmt: skip
    lim, _ = limiter(subject_limits(access))
    results = [(await lim.admit(alias, f"r{i}")).allowed for i, alias in enumerate("ababab")]
    assert results == [True, True, True, False, False, False]


async def test_tokens_per_minute_counted_after_the_answer() -> None:
    lim, clock = limiter({"a": [SubjectLimits("key:a", tpm=100)]})
    assert (await lim.admit("a", "r1")).allowed
    await lim.charge_tokens("a", 120)
    refused = await lim.admit("a", "r2")
    assert not refused.allowed and refused.limit == "tpm"
    clock.now += 60
    assert (await lim.admit("a", "r3")).allowed


async def test_parallel_slots_are_released() -> None:
    lim, _ = limiter({"a": [SubjectLimits("key:a", max_parallel=1)]})
    assert (await lim.admit("a", "r1")).allowed
    assert (await lim.admit("a", "r2")).limit == "max_parallel"
    await lim.release("a", "r1")
    assert (await lim.admit("a", "r3")).allowed


async def test_a_refusal_counts_nothing() -> None:
    """A request refused by its team's limit does not use up the key's own limit."""
    lim, _ = limiter({"a": [SubjectLimits("key:a", rpm=5), SubjectLimits("team:t", rpm=1)]})
    assert (await lim.admit("a", "r1")).allowed
    for i in range(5):
        assert (await lim.admit("a", f"x{i}")).subject == "team:t"


async def test_unlimited_keys_are_not_counted() -> None:
    lim, _ = limiter({})
    assert all([(await lim.admit("free", f"r{i}")).allowed for i in range(100)])
