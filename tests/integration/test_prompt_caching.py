"""Provider prompt caching through the real proxy, on each wire format of the simulator.

For each provider, the second call with the same long system prompt reports cached
input tokens and costs less, by the configured rates (litellm.yaml's cached-input prices,
gateway.yaml's storage fee); cached tokens, savings and the storage fee appear in the
request log and in /gateway/usage.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from extensions.config.catalog import Catalog
from tests.support.stack import LITELLM_YAML, NO_CACHE, Proxy, SimProvider

pytestmark = pytest.mark.integration
SYSTEM = "You are Acme's support assistant. Answer precisely and politely. " * 120  # ~1,700 tokens
CATALOG = Catalog.from_litellm_yaml(LITELLM_YAML)


def records(proxy: Proxy, group: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proxy.process.log_path.read_text().splitlines()
            if line.startswith('{"ts"') and f'"model_group":"{group}"' in line]  # fmt: skip


def expected_cost(record: dict[str, Any]) -> float:
    price = CATALOG.deployments[record["deployment"]].price
    assert price is not None
    tokens = record["tokens"]
    storage = (record.get("prompt_cache") or {}).get("storage_usd", 0.0)
    return price.cost(tokens["prompt"], tokens["completion"], tokens["cached"],
                      tokens["cache_write"]) + storage  # fmt: skip


@pytest.mark.parametrize("group", ["claude-sim", "gpt-sim-mini", "gemini-sim"])
async def test_second_call_reads_the_cache_and_costs_less(gateway: Proxy, clean_sim: SimProvider,
                                                           group: str) -> None:  # fmt: skip
    client = gateway.client()
    for question in ("Where is the invoice page?", "How do I export my data?"):
        await client.chat.completions.create(
            model=group, max_tokens=20, extra_body=NO_CACHE,
            messages=[{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": f"{question} ({group})"}])  # fmt: skip
    await asyncio.sleep(0.5)  # the request log is written by a thread
    first, second = records(gateway, group)[-2:]
    assert second["tokens"]["cached"] >= 1024
    assert second["prompt_cache"]["read_tokens"] == second["tokens"]["cached"]
    assert second["prompt_cache"]["saved_usd"] > 0
    assert second["cost_usd"] < first["cost_usd"]
    for record in (first, second):  # the configured rates, to the cent's millionth
        assert record["cost_usd"] == pytest.approx(expected_cost(record), rel=1e-6)
    if group == "gemini-sim":  # an explicit cache, stored for an hour at $1 per Mtok-hour
        written = first["tokens"]["cache_write"]
        assert written >= 1024
        assert first["prompt_cache"]["storage_usd"] == pytest.approx(written / 1e6)
        stored = clean_sim.admin.get("/_sim/cached_contents").json()
        assert stored["active"] == 1
    async with httpx.AsyncClient(base_url=gateway.base_url) as http:
        usage = (await http.get("/gateway/usage", headers={
            "authorization": f"Bearer {gateway.master_key}"})).json()  # fmt: skip
    row = usage["model"][group]
    assert row["cached_tokens"] >= second["tokens"]["cached"]
    assert row["prompt_cache_saved_usd"] > 0
