"""Hot reload of gateway.yaml through a running proxy with two workers: a valid edit
reaches every worker without a restart, an invalid one is rejected with the
start-up message while the last good configuration keeps serving, a request in
flight finishes on the generation it started with, and limit counters survive."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.support.stack import TEST_MASTER_KEY, Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration

CANNED = "You can reset your password here:"
KEY = "sk-test-reload-app-51c2"
RPM = 4
AUTH = {"Authorization": f"Bearer {TEST_MASTER_KEY}"}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["reload"] = {"watch": True, "poll_s": 0.5}
        data["cache"]["enabled"] = False
        data["observability"]["request_log"]["dir"] = str(Path(data["_logs"]))
        del data["_logs"]
        data["access"] = {"keys": [{"alias": "reload-app", "owner": "ops", "env": "TEST_RELOAD_KEY",
                                    "models": ["support-bot", "gpt-sim"], "rpm": RPM}]}  # fmt: skip

    folder = tmp_path_factory.mktemp("reload")
    logs = folder / "requests"

    def with_logs(data: dict[str, Any]) -> None:
        data["_logs"] = str(logs)
        edit(data)

    return derive_gateway_config(folder, with_logs)


@pytest.fixture(scope="module")
def reload_gateway(log_dir: Path, sim: SimProvider, config_path: Path) -> Iterator[Proxy]:
    proxy = Proxy(log_dir, sim, gateway_config=config_path, workers=2, name="reload",
                  extra_env={"TEST_RELOAD_KEY": KEY}).start()  # fmt: skip
    yield proxy
    proxy.stop()


def edit_config(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def set_canned(text: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        intent = next(i for i in data["routers"]["support-bot"]["intents"]
                      if i["name"] == "reset_password")  # fmt: skip
        intent["respond"]["text"] = text + " {reset_url}"

    return change


async def canned_answers(proxy: Proxy, n: int) -> set[str]:
    """The canned answer as n fresh connections (both workers) see it."""

    async def one() -> str:
        client = proxy.client()
        try:
            resp = await client.chat.completions.create(
                model="support-bot", messages=[{"role": "user", "content": "I forgot my password"}],
            )  # fmt: skip
            return (resp.choices[0].message.content or "").split(" https://")[0]
        finally:
            await client.close()

    return set(await asyncio.gather(*(one() for _ in range(n))))


async def wait_for(proxy: Proxy, expected: str, timeout_s: float = 15) -> set[str]:
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = await canned_answers(proxy, 12)
        if seen == {expected}:
            return seen
        await asyncio.sleep(0.3)
    return seen


def reload_now(proxy: Proxy, key: str = TEST_MASTER_KEY) -> httpx.Response:
    return httpx.post(
        f"{proxy.base_url}/gateway/reload", headers={"Authorization": f"Bearer {key}"}
    )


async def wait_status(proxy: Proxy, done: Any, timeout_s: float = 15) -> dict[str, Any]:
    """The config status once ``done(status)`` holds in both workers (polled: each worker
    checks the file every 0.5 s, slower on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        statuses = [config_status(proxy) for _ in range(6)]  # new connections: both workers
        if all(done(s) for s in statuses):
            return statuses[0]
        status = statuses[0]
        await asyncio.sleep(0.3)
    return status


async def streamed_record(config_path: Path) -> dict[str, Any]:
    """The log line of the streamed request (written by a thread once the stream ended)."""
    for _ in range(50):
        found = [r for r in request_log(config_path) if r["stream"] and r["route"] == "gpt-sim"]
        if found:
            return found[-1]
        await asyncio.sleep(0.1)
    raise AssertionError("no log line for the streamed request")


def request_log(config_path: Path) -> list[dict[str, Any]]:
    logs = Path(yaml.safe_load(config_path.read_text())["observability"]["request_log"]["dir"])
    return [json.loads(line) for p in logs.glob("requests-*.jsonl")
            for line in p.read_text().splitlines()]  # fmt: skip


def config_status(proxy: Proxy) -> dict[str, Any]:
    return dict(httpx.get(f"{proxy.base_url}/gateway/config", headers=AUTH).json())


async def wait_generation(proxy: Proxy, above: int, timeout_s: float = 60) -> bool:
    """Every worker past generation ``above``: several status reads in a row say so (each
    worker rebuilds on its own, which takes seconds on a busy machine)."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline and streak < 8:
        status = await asyncio.to_thread(config_status, proxy)
        streak = streak + 1 if status["generation"] > above else 0
        await asyncio.sleep(0.1)
    return streak >= 8


def metric(proxy: Proxy, sample: str) -> float:
    text = httpx.get(f"{proxy.base_url}/metrics", headers=AUTH).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


async def test_valid_edit_reaches_every_worker(reload_gateway: Proxy, config_path: Path) -> None:
    assert await canned_answers(reload_gateway, 8) == {CANNED}
    before = config_status(reload_gateway)["generation"]
    edit_config(config_path, set_canned("Reset it at"))
    assert await wait_for(reload_gateway, "Reset it at") == {"Reset it at"}
    assert await wait_generation(reload_gateway, before)
    assert metric(reload_gateway, 'gateway_config_reloads_total{result="ok"}') >= 2  # both


async def test_invalid_edit_is_rejected_and_last_good_keeps_serving(
    reload_gateway: Proxy, config_path: Path
) -> None:
    edit_config(config_path, set_canned("Before the bad edit:"))
    assert await wait_for(reload_gateway, "Before the bad edit:") == {"Before the bad edit:"}
    good = yaml.safe_load(config_path.read_text())  # noqa: ASYNC240
    try:
        edit_config(config_path, lambda d: d["cache"]["semantic"].update(threshold=1.5))
        status = await wait_status(reload_gateway, lambda s: s["last_error"] is not None)
        assert status["last_error"] is not None
        assert str(config_path) in status["last_error"]
        assert "cache.semantic.threshold" in status["last_error"]
        assert "less than or equal to 1" in status["last_error"]
        assert await canned_answers(reload_gateway, 8) == {"Before the bad edit:"}
        forced = reload_now(reload_gateway)
        assert forced.status_code == 422
        assert "cache.semantic.threshold" in forced.json()["last_error"]
        assert metric(reload_gateway, 'gateway_config_reloads_total{result="rejected"}') >= 2
        refused = reload_now(reload_gateway, KEY)
        assert refused.status_code == 403
    finally:
        edit_config(config_path, lambda d: d.update(good))
    status = await wait_status(reload_gateway, lambda s: s["last_error"] is None)
    assert status["last_error"] is None


async def test_in_flight_request_finishes_on_its_generation(
    reload_gateway: Proxy, config_path: Path, clean_sim: SimProvider
) -> None:
    clean_sim.set_model(
        "sim-gpt-a", {"tokens_per_second": 40, "answer_words": {"min": 60, "max": 60}}
    )
    clean_sim.set_model(
        "sim-gpt-b", {"tokens_per_second": 40, "answer_words": {"min": 60, "max": 60}}
    )
    client = reload_gateway.client(timeout=60)
    query = f"a slow streamed answer please {time.time()}"
    async with client.chat.completions.with_streaming_response.create(
        model="gpt-sim", messages=[{"role": "user", "content": query}], stream=True,
    ) as raw:  # fmt: skip
        stream = await raw.parse()
        first = await stream.__anext__()
        started_on = config_status(reload_gateway)["generation"]
        edit_config(config_path, set_canned(f"Mid-stream edit {started_on}:"))
        await asyncio.sleep(1.5)  # the reload happens while the answer still streams
        text = "".join(c.delta.content or "" for c in first.choices)
        async for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
    assert len(text.split()) >= 50
    mine = await streamed_record(config_path)
    assert mine["status"] == 200 and mine["tokens"]["completion"] > 0
    assert isinstance(mine["generation"], int) and mine["generation"] <= started_on + 1
    assert await wait_generation(reload_gateway, started_on), "the reload happened meanwhile"


async def test_limit_counters_survive_a_reload(reload_gateway: Proxy, config_path: Path) -> None:
    into_minute = time.time() % 60
    if into_minute > 40:  # limits count per calendar minute
        await asyncio.sleep(60.5 - into_minute)
    client = reload_gateway.client(api_key=KEY)

    async def attempt() -> str:
        try:
            await client.chat.completions.create(model="gpt-sim", messages=[
                {"role": "user", "content": f"count me {time.time()}"}])  # fmt: skip
            return "200"
        except openai.RateLimitError:
            return "429"

    first = [await attempt() for _ in range(RPM - 1)]
    generation = config_status(reload_gateway)["generation"]
    edit_config(config_path, set_canned(f"Limits stay {generation}:"))
    expected = f"Limits stay {generation}:"
    assert await wait_for(reload_gateway, expected) == {expected}  # every worker reloaded
    rest = [await attempt() for _ in range(2)]
    assert first + rest == ["200"] * RPM + ["429"]
