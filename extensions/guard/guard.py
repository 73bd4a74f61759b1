"""The guardrail for the request path: route → policy → verdict on chat messages, counted.

Call ``check`` (or ``check_async``) with the route name(s) the client sent and the
request's OpenAI-format messages. It returns the verdict and the messages to send:
redacted copies for ``redact``, the same list otherwise. On ``verdict.blocked`` the
caller answers 400 with ``verdict.refusal()``. The log line names kinds and counts only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from extensions.guard.detectors import Kind
from extensions.guard.messages import message_texts, with_texts
from extensions.guard.policy import Outcome, Verdict, apply, apply_async
from extensions.guard.settings import Guardrails, RoutePolicy

logger = logging.getLogger("gateway.guard")


class Guard:
    def __init__(self, settings: Guardrails) -> None:
        self.settings = settings
        self.outcomes: Counter[Outcome] = Counter()  # requests per outcome
        self.found: Counter[Kind] = Counter()  # requests in which each kind was found

    def policy(self, route: str | None) -> RoutePolicy:
        return self.settings.policy_for(route)

    def check(self, route: str | None, messages: Sequence[Any]) -> tuple[Verdict, list[Any]]:
        verdict = apply(self.policy(route), message_texts(messages))
        return verdict, self._finish(route, verdict, messages)

    async def check_async(
        self, route: str | None, messages: Sequence[Any]
    ) -> tuple[Verdict, list[Any]]:
        verdict = await apply_async(self.policy(route), message_texts(messages))
        return verdict, self._finish(route, verdict, messages)

    def _finish(self, route: str | None, verdict: Verdict, messages: Sequence[Any]) -> list[Any]:
        self.outcomes[verdict.action] += 1
        if verdict.action is Outcome.CLEAN:
            return list(messages)
        self.found.update(verdict.kinds)
        counts = Counter(f.kind.value for f in verdict.findings)
        found = ", ".join(f"{k}={n}" for k, n in sorted(counts.items()))
        logger.warning("guardrail %s on route %r: %s", verdict.action.value, route, found)
        if verdict.action is Outcome.REDACTED:
            return with_texts(messages, verdict.texts)
        return list(messages)
