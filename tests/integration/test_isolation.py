"""Tenant isolation under concurrent load: with ``cache.scope: team``, two teams send
the same and paraphrased questions at once, through two workers sharing Redis;
no answer produced for one team ever reaches the other (the simulated provider's
answers are random text, so any crossing would show), while each team does get
cache hits of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.redis_server import RedisServer
from tests.support.stack import LITELLM_YAML, Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration

KEYS = {"a1": ("team-a", "sk-test-iso-a1-71de"), "a2": ("team-a", "sk-test-iso-a2-82ef"),
        "b1": ("team-b", "sk-test-iso-b1-93f0")}  # fmt: skip
RUN = uuid.uuid4().hex[:6]
# team A asks these first; team B then asks the same (QA) and paraphrases of others (PB)
QA = [f"how do I export my data to format {i} ({RUN})" for i in range(10)]
PA = [f"how can I export my data to format {i} ({RUN})" for i in range(10)]
QB = [f"what does error code {500 + i} mean in release {RUN}" for i in range(10)]
PB = [f"what is the meaning of error code {500 + i} in release {RUN}" for i in range(10)]


@pytest.fixture(scope="module")
def iso_gateway(
    log_dir: Path, sim: SimProvider, redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:  # fmt: skip
    def edit(data: dict[str, Any]) -> None:
        data["redis"].update(url=redis_server.url, key_prefix=f"iso{RUN}:")
        data["cache"].update(tier="shared", scope="team")
        data["access"] = {
            "teams": {"team-a": {"models": ["gpt-sim"]}, "team-b": {"models": ["gpt-sim"]}},
            "keys": [{"alias": alias, "owner": "t", "team": team, "env": f"ISO_{alias.upper()}"}
                     for alias, (team, _) in KEYS.items()],
        }  # fmt: skip

    config = derive_gateway_config(tmp_path_factory.mktemp("iso"), edit)
    env = {f"ISO_{alias.upper()}": key for alias, (_, key) in KEYS.items()}
    proxy = Proxy(log_dir, sim, gateway_config=config, workers=2, extra_env=env,
                  name="iso").start()  # fmt: skip
    yield proxy
    proxy.stop()


async def test_no_answer_crosses_teams_under_load(iso_gateway: Proxy) -> None:
    """The simulated provider answers the same prompt with the same text, so crossing
    shows in the cache outcome: team B's first asks must all be misses, even while
    team A hits the very same entries concurrently."""
    clients = {alias: iso_gateway.client(api_key=key, timeout=60)
               for alias, (_, key) in KEYS.items()}  # fmt: skip

    async def ask(alias: str, text: str) -> str:
        raw = await clients[alias].chat.completions.with_raw_response.create(
            model="gpt-sim", messages=[{"role": "user", "content": text}],
        )  # fmt: skip
        return str(raw.headers["x-gateway-cache"])

    async def asks(alias: str, texts: list[str]) -> list[str]:
        return list(await asyncio.gather(*(ask(alias, t) for t in texts)))

    try:
        assert set(await asks("a1", QA + QB)) == {"MISS"}
        await asyncio.sleep(0.5)  # answers are stored once their responses completed
        a_load, b_exact, b_paraphrases = await asyncio.gather(
            asks("a2", (QA + PA) * 3), asks("b1", QA), asks("b1", PB)
        )
        assert b_exact == ["MISS"] * len(QA), "team B was served team A's exact answers"
        assert "HIT_EXACT" not in b_paraphrases and "HIT_SEMANTIC" not in b_paraphrases, (
            "team B was served team A's answers to similar questions")  # fmt: skip
        assert a_load.count("HIT_EXACT") >= 3 * len(QA), "team A's keys share their entries"
        assert "HIT_SEMANTIC" in a_load
        await asyncio.sleep(0.5)
        assert set(await asks("b1", QA)) == {"HIT_EXACT"}, "team B has its own entries now"
    finally:
        for client in clients.values():
            await client.close()


def test_provider_keys_only_come_from_the_environment() -> None:
    models = yaml.safe_load(LITELLM_YAML.read_text())["model_list"]
    for entry in models:
        key = entry["litellm_params"].get("api_key")
        assert key is None or str(key).startswith("os.environ/"), entry["model_name"]
