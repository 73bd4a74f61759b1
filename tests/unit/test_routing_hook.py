"""The routing adapter: writes decisions back into LiteLLM's request, fails open."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from extensions.embedding.encoder import BatchingEncoder
from extensions.hooks.routing import META_KEY, RoutingHook
from extensions.router.classifier import OOS_LABEL, Head, Thresholds
from extensions.router.engine import CompiledRouter, RouterEngine
from extensions.router.handoff import HandoffDispatcher
from tests.unit.test_router_logic import router

pytestmark = pytest.mark.unit
LABELS = ("reset", "bill", "tech", "tech2", "freeze", "ambig", OOS_LABEL)


class RecordingSink:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[dict[str, Any]] = []
        self.fail = fail

    async def deliver(self, record: Any) -> None:
        if self.fail:
            raise ConnectionError("sink down")
        self.records.append(dict(record))


def engine_for(label: str | None) -> RouterEngine:
    """An engine whose 'encoder' puts all weight on ``label`` (or raises when None)."""

    def encode(texts: list[str]) -> np.ndarray:
        if label is None:
            raise RuntimeError("encoder crashed")
        v = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        v[:, LABELS.index(label)] = 10.0
        return v

    head = Head(LABELS, np.eye(len(LABELS), dtype=np.float32), np.zeros(len(LABELS), np.float32))
    compiled = CompiledRouter("bot", router(), head, Thresholds(0.3, 0.05))
    return RouterEngine({"bot": compiled}, BatchingEncoder(encode, len(LABELS), "fake"))


def request(text: str) -> dict[str, Any]:
    return {"model": "bot", "messages": [{"role": "user", "content": text}]}


async def test_route_rewrites_model_and_prepends_system_prompt() -> None:
    hook = RoutingHook(engine_for("tech"), HandoffDispatcher({}))
    data = request("app broken")
    await hook.apply(data, "alice")
    assert data["model"] == "claude-sim"
    assert data["messages"][0] == {"role": "system", "content": "be technical"}
    assert data["metadata"][META_KEY]["action"] == "ROUTE"
    assert "mock_response" not in data


async def test_respond_sets_a_zero_usage_mock_response() -> None:
    hook = RoutingHook(engine_for("reset"), HandoffDispatcher({}))
    data = request("forgot password")
    await hook.apply(data, None)
    response = data["mock_response"]
    assert response.choices[0].message.content == "Go to https://r.example now"
    assert response.usage.total_tokens == 0
    assert data["model"] == "gpt-sim"  # a real group for LiteLLM; no provider is called


async def test_handoff_record_reaches_sink() -> None:
    sink = RecordingSink()
    dispatcher = HandoffDispatcher({"log": sink})
    hook = RoutingHook(engine_for("bill"), dispatcher)
    data = request("charged twice")
    await hook.apply(data, "alice")
    await dispatcher.close()  # delivery happens off the request path; close waits for it
    assert len(sink.records) == 1
    record = sink.records[0]
    assert (record["queue"], record["intent"], record["key_alias"]) == ("billing", "bill", "alice")
    assert record["id"] == data["metadata"][META_KEY]["handoff_id"]
    assert record["conversation"][-1]["content"] == "charged twice"


async def test_failing_sink_dead_letters_and_still_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = HandoffDispatcher({"log": RecordingSink(fail=True)})
    hook = RoutingHook(engine_for("bill"), dispatcher)
    data = request("charged twice")
    await hook.apply(data, None)
    assert data["mock_response"].choices[0].message.content == "wait"
    await dispatcher.close()
    assert dispatcher.failures == 1
    assert '"reason": "ConnectionError: sink down"' in caplog.text


async def test_classifier_failure_fails_open_to_default_model() -> None:
    hook = RoutingHook(engine_for(None), HandoffDispatcher({}))
    data = request("anything")
    await hook.apply(data, None)
    assert data["model"] == "gpt-sim"
    assert data["metadata"][META_KEY]["intent"] == "default"
    assert hook.failures == 1
    assert "mock_response" not in data


async def test_refusal_for_out_of_scope() -> None:
    hook = RoutingHook(engine_for(OOS_LABEL), HandoffDispatcher({}))
    data = request("weather?")
    await hook.apply(data, None)
    assert data["metadata"][META_KEY]["action"] == "REFUSE"
    assert data["mock_response"].choices[0].message.content in {"no", "nope"}


async def test_no_user_text_goes_to_the_default_model() -> None:
    hook = RoutingHook(engine_for(OOS_LABEL), HandoffDispatcher({}))
    data = {"model": "bot", "messages": [{"role": "system", "content": "hi"}]}
    await hook.apply(data, None)
    assert data["model"] == "gpt-sim"
    assert data["metadata"][META_KEY]["action"] == "ROUTE"
