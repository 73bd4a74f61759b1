"""Gateway keys and teams through the real proxy: 401, 403, allowed keys, cache scopes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from extensions.access.keys import new_key
from tests.integration.test_cache import chat, unique
from tests.support.stack import Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration

SUPPORT_KEY = new_key()  # hashed in gateway.yaml
SUPPORT_KEY_2 = "sk-test-support-two-5f1e"  # from the environment
RESEARCH_KEY = "sk-test-research-8c2a"


@pytest.fixture(scope="module")
def teams_gateway(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["access"] = {
            "teams": {
                "support": {"models": ["support-bot", "gpt-sim*"]},
                "research": {"models": ["gpt-sim", "claude-sim", "embed-sim"]},
            },
            "keys": [
                {"alias": "support-app", "owner": "alice", "team": "support",
                 "key_id": SUPPORT_KEY.key_id, "hash": SUPPORT_KEY.hash},
                {"alias": "support-batch", "owner": "bob", "team": "support",
                 "env": "TEST_SUPPORT_KEY_2"},
                {"alias": "research-app", "owner": "carol", "team": "research",
                 "env": "TEST_RESEARCH_KEY"},
            ],
        }  # fmt: skip
        data["cache"]["scope"] = "team"

    config = derive_gateway_config(tmp_path_factory.mktemp("teams"), edit)
    env = {"TEST_SUPPORT_KEY_2": SUPPORT_KEY_2, "TEST_RESEARCH_KEY": RESEARCH_KEY}
    proxy = Proxy(log_dir, sim, gateway_config=config, extra_env=env, name="teams").start()
    yield proxy
    proxy.stop()


class As(Proxy):
    """The same proxy, with another key."""

    def __init__(self, proxy: Proxy, key: str) -> None:
        self.__dict__.update(proxy.__dict__)
        self.master_key = key


async def test_unknown_key_is_401(teams_gateway: Proxy) -> None:
    client = teams_gateway.client(api_key="sk-gw-12345678.not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(
            model="gpt-sim", messages=[{"role": "user", "content": "hi"}]
        )
    assert "Invalid API key" in str(info.value)


async def test_model_not_allowed_is_403_naming_allowed(teams_gateway: Proxy) -> None:
    client = teams_gateway.client(api_key=SUPPORT_KEY.key)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(
            model="claude-sim", messages=[{"role": "user", "content": "hi"}]
        )
    message = str(info.value)
    assert "may not use model 'claude-sim'" in message and "support-bot, gpt-sim*" in message
    assert SUPPORT_KEY.key not in message


async def test_allowed_keys_work(teams_gateway: Proxy, clean_sim: SimProvider) -> None:
    answer, headers, _ = await chat(As(teams_gateway, SUPPORT_KEY.key), "support-bot",
                                    unique("my app crashes when I log in"))  # fmt: skip
    assert answer.startswith("Simulated reply") and headers["x-gateway-action"] == "ROUTE"
    answer, _, _ = await chat(As(teams_gateway, RESEARCH_KEY), "claude-sim", unique("hello"))
    assert answer.startswith("Simulated reply from sim-claude")


async def test_cache_never_crosses_a_team(teams_gateway: Proxy, clean_sim: SimProvider) -> None:
    text = unique("Explain the difference between TCP and UDP")
    first, h, _ = await chat(As(teams_gateway, SUPPORT_KEY.key), "gpt-sim", text)
    assert h["x-gateway-cache"] == "MISS"
    same_team, h, _ = await chat(As(teams_gateway, SUPPORT_KEY_2), "gpt-sim", text)
    assert h["x-gateway-cache"] == "HIT_EXACT" and same_team == first
    _, h, _ = await chat(As(teams_gateway, RESEARCH_KEY), "gpt-sim", text)
    assert h["x-gateway-cache"] == "MISS"  # another team: never served the first team's answer
    assert clean_sim.stats()["total"] == 2


async def test_semantic_hits_stay_inside_a_team(
    teams_gateway: Proxy, clean_sim: SimProvider
) -> None:
    await chat(As(teams_gateway, SUPPORT_KEY.key), "gpt-sim", "How do I rotate my SSH keys safely?")
    paraphrase = "How can I rotate my SSH keys safely?"
    _, h, _ = await chat(As(teams_gateway, RESEARCH_KEY), "gpt-sim", paraphrase)
    assert h["x-gateway-cache"] == "MISS"
    _, h, _ = await chat(As(teams_gateway, SUPPORT_KEY_2), "gpt-sim", paraphrase)
    assert h["x-gateway-cache"] == "HIT_SEMANTIC"
    assert clean_sim.stats()["total"] == 2


async def test_usage_endpoint_is_for_operators_and_adds_up(
    teams_gateway: Proxy, clean_sim: SimProvider
) -> None:
    import httpx

    url = f"{teams_gateway.base_url}/gateway/usage"
    master = {"Authorization": f"Bearer {teams_gateway.master_key}"}
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 401
        denied = await http.get(url, headers={"Authorization": f"Bearer {RESEARCH_KEY}"})
        assert denied.status_code == 403
        assert denied.json()["error"]["type"] == "permission_denied"
        before = (await http.get(url, headers=master)).json()
        row = before["key"].get("research-app", {"requests": 0, "saved_usd": 0.0})
        text = unique("What is a content delivery network")
        for _ in range(2):  # a miss (spend) then a hit (saving the same amount)
            await chat(As(teams_gateway, RESEARCH_KEY), "gpt-sim", text)
        await asyncio.sleep(0.5)  # spend is counted when LiteLLM logs the answer
        report = (await http.get(url, headers=master)).json()
    key = report["key"]["research-app"]
    assert key["requests"] == row["requests"] + 2
    assert key["saved_usd"] > row["saved_usd"] and key["spend_usd"] > 0
    assert report["team"]["research"]["requests"] >= 2
    assert report["model"]["gpt-sim"]["requests"] >= 2
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "extensions.cli", "usage", "--url", teams_gateway.base_url,
        "--key", teams_gateway.master_key, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await cli.communicate()
    assert cli.returncode == 0
    assert "research-app" in out.decode() and "requests" in out.decode()


async def test_router_answers_count_as_savings(
    teams_gateway: Proxy, clean_sim: SimProvider
) -> None:
    import httpx

    url = f"{teams_gateway.base_url}/gateway/usage"
    master = {"Authorization": f"Bearer {teams_gateway.master_key}"}
    async with httpx.AsyncClient() as http:
        before = (await http.get(url, headers=master)).json()["key"].get("support-batch")
        _, headers, _ = await chat(As(teams_gateway, SUPPORT_KEY_2), "support-bot",
                                        "I forgot my password")  # fmt: skip
        assert headers["x-gateway-action"] == "RESPOND"
        after = (await http.get(url, headers=master)).json()["key"]["support-batch"]
    saved_before = before["saved_usd"] if before else 0.0
    spent_before = before["spend_usd"] if before else 0.0
    assert after["saved_usd"] > saved_before  # what gpt-sim would have cost
    assert after["spend_usd"] == spent_before
    assert clean_sim.stats()["total"] == 0
