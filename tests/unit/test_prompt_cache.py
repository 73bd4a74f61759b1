"""Provider prompt caching: marking the stable prefix, and pricing cached input."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from extensions.config.catalog import Price
from extensions.prompt_cache.marking import mark_prefix
from extensions.prompt_cache.pricing import prompt_cache_use
from extensions.prompt_cache.settings import GroupCaching, Mode

pytestmark = pytest.mark.unit
LONG = "You are Acme's assistant. " * 200  # about 1,300 tokens
EXPLICIT = GroupCaching(mode=Mode.EXPLICIT, min_tokens=1024, ttl_s=3600,
                        storage_usd_per_mtok_hour=1.0)  # fmt: skip


def conversation(system: str = LONG) -> list[dict[str, Any]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]


def test_long_system_prompt_is_marked_with_a_ttl_for_gemini() -> None:
    marked = mark_prefix(conversation(), EXPLICIT, gemini=True)
    assert marked[0]["content"] == [{"type": "text", "text": LONG, "cache_control": {
        "type": "ephemeral", "ttl": "3600s"}}]  # fmt: skip
    assert marked[1] == {"role": "user", "content": "hi"}
    anthropic = mark_prefix(conversation(), EXPLICIT, gemini=False)
    assert anthropic[0]["content"][0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize("settings", [None, GroupCaching(mode=Mode.AUTOMATIC), EXPLICIT])
def test_short_unmarked_or_automatic_prompts_are_left_alone(settings: GroupCaching | None) -> None:
    short = conversation("be brief")
    assert mark_prefix(short, settings, gemini=False) is short
    if settings is not EXPLICIT:
        assert mark_prefix(conversation(), settings, gemini=False)[0]["content"] == LONG


def test_a_prefix_the_client_marked_is_kept() -> None:
    mine = [{"role": "system", "content": [{"type": "text", "text": LONG,
                                            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]  # fmt: skip
    assert mark_prefix(mine, EXPLICIT, gemini=False) is mine


def test_cost_and_savings_of_cached_input() -> None:
    price = Price(input=3e-6, output=15e-6, cache_read=3e-7, cache_write=3.75e-6)
    assert price.cost(2000, 100, cached=1500, written=0) == pytest.approx(
        500 * 3e-6 + 1500 * 3e-7 + 100 * 15e-6)  # fmt: skip
    assert price.cost(2000, 100, cached=0, written=1500) == pytest.approx(
        500 * 3e-6 + 1500 * 3.75e-6 + 100 * 15e-6)  # fmt: skip
    use = prompt_cache_use(price, EXPLICIT, read=1500, written=1500)
    assert use is not None
    assert use.saved_usd == pytest.approx(1500 * (3e-6 - 3e-7))
    assert use.storage_usd == pytest.approx(1500 / 1e6 * 1.0 * 1.0)  # 1 h at $1 per Mtok-hour
    assert prompt_cache_use(price, EXPLICIT, 0, 0) is None


def test_storage_fee_needs_a_ttl_and_explicit_mode() -> None:
    with pytest.raises(ValidationError):
        GroupCaching(mode=Mode.EXPLICIT, storage_usd_per_mtok_hour=1.0)
    with pytest.raises(ValidationError):
        GroupCaching(mode=Mode.AUTOMATIC, ttl_s=600)
