"""Usage counters by key, team and model (in-process store)."""

from __future__ import annotations

import pytest

from extensions.access.usage import Charge, MemoryUsage, Usage

pytestmark = pytest.mark.unit


async def test_usage_adds_up_per_key_team_and_model() -> None:
    usage = Usage(MemoryUsage(), clock=lambda: 0.0)
    await usage.record(Charge("a", "t", "gpt-sim", tokens=100, spend_usd=0.002))
    await usage.record(Charge("b", "t", "gpt-sim", saved_usd=0.002))
    await usage.record(Charge("a", "t", "claude-sim", tokens=50, spend_usd=0.001))
    report = await usage.report()
    assert report["day"] == "1970-01-01"
    assert report["key"]["a"] == {"requests": 2, "tokens": 150, "spend_usd": 0.003,
                                  "saved_usd": 0.0, "cached_tokens": 0,
                                  "prompt_cache_saved_usd": 0.0, "storage_usd": 0.0}  # fmt: skip
    assert report["key"]["b"]["saved_usd"] == 0.002 and report["key"]["b"]["requests"] == 1
    assert report["team"]["t"]["requests"] == 3
    assert report["model"]["gpt-sim"]["requests"] == 2
    assert (await usage.report("2020-01-01"))["key"] == {}


def test_savings_estimate_from_litellm_prices() -> None:
    from extensions.access.usage import SavingsEstimate
    from extensions.config.catalog import Catalog
    from tests.support.stack import LITELLM_YAML

    catalog = Catalog.from_litellm_yaml(LITELLM_YAML)
    price = catalog.price_of_group("gpt-sim")
    assert price is not None and (price.input, price.output) == (0.0000025, 0.00001)
    estimate = SavingsEstimate(catalog, assumed_completion_tokens=200)
    messages = [{"role": "user", "content": "x" * 400}]  # about 100 tokens
    assert estimate.usd("gpt-sim", messages) == pytest.approx(100 * 0.0000025 + 200 * 0.00001)
    assert estimate.usd("unpriced-model", messages) == 0.0
