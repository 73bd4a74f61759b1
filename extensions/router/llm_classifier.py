"""Optional second opinion from a general model, for queries the embedding classifier
is unsure about. Off by default; bounded by its own latency budget, after which the
embedding classifier's answer stands (fail-open)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from extensions.router.classifier import Classification, Verdict
from extensions.router.settings import Intent, LlmClassifier

logger = logging.getLogger("gateway.router.llm")
NONE_ANSWER = "none"
Complete = Callable[[str, list[dict[str, str]], float], Awaitable[str]]


def build_prompt(description: str, intents: Sequence[Intent]) -> str:
    lines = [f"- {i.name}: {i.description}" for i in intents if i.action != "clarify"]
    return (
        f"You classify messages sent to an assistant. {description}\n"
        "Intents:\n" + "\n".join(lines) + "\n"
        f"Reply with exactly one intent name from the list, or '{NONE_ANSWER}' if the message "
        "fits none of them or is off-topic. Reply with the name only."
    )


def parse_answer(answer: str, intents: Sequence[Intent]) -> str | None:
    """The intent name the model chose, ``none``, or None when the answer is unusable."""
    word = answer.strip().strip("'\"`.").lower()
    names = {i.name.lower(): i.name for i in intents}
    if word in names:
        return names[word]
    return NONE_ANSWER if word == NONE_ANSWER else None


class LlmIntentClassifier:
    def __init__(
        self,
        settings: LlmClassifier,
        description: str,
        intents: Sequence[Intent],
        complete: Complete,
    ) -> None:
        self.settings = settings
        self._intents = list(intents)
        self._prompt = build_prompt(description, intents)
        self._complete = complete
        self.timeouts = 0

    def wanted(self, c: Classification) -> bool:
        return self.settings.enabled and c.confidence < self.settings.below_confidence

    async def classify(self, query: str, fallback: Classification) -> Classification | None:
        budget_s = self.settings.timeout_ms / 1000
        messages = [{"role": "system", "content": self._prompt}, {"role": "user", "content": query}]
        try:
            answer = await asyncio.wait_for(
                self._complete(self.settings.model, messages, budget_s), budget_s
            )
        except TimeoutError:
            self.timeouts += 1
            return None
        except Exception as exc:  # noqa: BLE001 - a second opinion must never fail a request
            logger.warning("LLM classifier failed (%s); keeping the embedding decision",
                           type(exc).__name__)  # fmt: skip
            return None
        chosen = parse_answer(answer, self._intents)
        if chosen is None:
            return None
        if chosen == NONE_ANSWER:
            return Classification(Verdict.OUT_OF_SCOPE, None, fallback.confidence, fallback.ranked)
        return Classification(Verdict.IN_SCOPE, chosen, fallback.confidence, fallback.ranked)


def router_completion(
    model: str, messages: list[dict[str, str]], timeout_s: float
) -> Awaitable[str]:
    """Call a model group through the proxy's own LiteLLM router (its fallbacks apply)."""

    async def call() -> str:
        from litellm.proxy import proxy_server

        llm_router: Any = proxy_server.llm_router
        if llm_router is None:
            raise RuntimeError("the proxy's router is not ready")
        response = await llm_router.acompletion(model=model, messages=messages,
                                                timeout=timeout_s, max_tokens=16,
                                                temperature=0)  # fmt: skip
        return str(response.choices[0].message.content or "")

    return call()
