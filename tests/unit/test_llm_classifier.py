"""The optional LLM classifier: prompt, parsing, latency budget, fail-open."""

from __future__ import annotations

import asyncio

import pytest

from extensions.router.classifier import Classification, Verdict
from extensions.router.llm_classifier import LlmIntentClassifier, build_prompt, parse_answer
from extensions.router.settings import LlmClassifier
from tests.unit.test_router_logic import router

pytestmark = pytest.mark.unit
UNSURE = Classification(Verdict.IN_SCOPE, "reset", 0.3, (("reset", 0.3), ("tech", 0.25)))


def make(
    answer: str | Exception, delay_s: float = 0.0, budget_ms: int = 200
) -> tuple[LlmIntentClassifier, list[list[dict[str, str]]]]:
    calls: list[list[dict[str, str]]] = []

    async def complete(model: str, messages: list[dict[str, str]], timeout_s: float) -> str:
        calls.append(messages)
        await asyncio.sleep(delay_s)
        if isinstance(answer, Exception):
            raise answer
        return answer

    spec = router()
    settings = LlmClassifier(enabled=True, below_confidence=0.5, timeout_ms=budget_ms)
    return LlmIntentClassifier(settings, "Acme support", spec.intents, complete), calls


def test_prompt_lists_intent_descriptions_not_clarify_intents() -> None:
    prompt = build_prompt("Acme support", router().intents)
    assert "- reset: reset your password" in prompt
    assert "- tech: fix the app" in prompt
    assert "ambig" not in prompt
    assert "'none'" in prompt


@pytest.mark.parametrize(("answer", "expected"),
                         [("tech", "tech"), (" Tech. ", "tech"), ("'bill'", "bill"),
                          ("none", "none"), ("I think it is tech", None), ("", None)])  # fmt: skip
def test_parse_answer(answer: str, expected: str | None) -> None:
    assert parse_answer(answer, router().intents) == expected


def test_only_consulted_below_its_confidence() -> None:
    clf, _ = make("tech")
    assert clf.wanted(UNSURE)
    sure = Classification(Verdict.IN_SCOPE, "reset", 0.9, (("reset", 0.9),))
    assert not clf.wanted(sure)


async def test_model_answer_overrides_when_usable() -> None:
    clf, calls = make("tech")
    c = await clf.classify("the thing is broken", UNSURE)
    assert c is not None and (c.verdict, c.intent) == (Verdict.IN_SCOPE, "tech")
    assert calls[0][1] == {"role": "user", "content": "the thing is broken"}
    none = await make("none")[0].classify("weather?", UNSURE)
    assert none is not None and none.verdict is Verdict.OUT_OF_SCOPE


async def test_budget_exceeded_keeps_embedding_decision() -> None:
    clf, _ = make("tech", delay_s=1.0, budget_ms=50)
    started = asyncio.get_running_loop().time()
    assert await clf.classify("q", UNSURE) is None
    assert asyncio.get_running_loop().time() - started < 0.5
    assert clf.timeouts == 1


async def test_failures_and_gibberish_keep_embedding_decision() -> None:
    assert await make(RuntimeError("upstream down"))[0].classify("q", UNSURE) is None
    assert await make("Simulated reply from sim-gpt-mini: foo")[0].classify("q", UNSURE) is None
