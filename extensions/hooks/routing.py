"""Adapter between LiteLLM's request ``data`` and the intent router.

Turns the request into the router's input, runs it, and writes the decision back:
a new model group (ROUTE) or a ready answer (``mock_response``: no upstream call).
Fail-open: if classification fails, the request goes to the router's default model.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import litellm

from extensions.router.decide import DEFAULT_INTENT, Decision
from extensions.router.engine import Routed, RouterEngine
from extensions.router.handoff import HandoffDispatcher
from extensions.router.responses import completion_dict
from extensions.router.settings import Action

logger = logging.getLogger("gateway.router")
META_KEY = "gateway"


class RoutingHook:
    def __init__(self, engine: RouterEngine, handoffs: HandoffDispatcher) -> None:
        self.engine = engine
        self.handoffs = handoffs
        self.failures = 0

    def handles(self, data: dict[str, Any]) -> bool:
        return self.engine.handles(data.get("model"))

    async def apply(self, data: dict[str, Any], key_alias: str | None) -> Routed:
        """Classify, write the decision into ``data`` (in place) and return it."""
        name = str(data["model"])
        compiled = self.engine.router(name)
        messages = data.get("messages") or []
        try:
            routed = await self.engine.route(name, messages)
        except Exception:  # the router fails open to its default model
            self.failures += 1
            logger.exception("router %r failed; sending the request to its default model", name)
            default = compiled.spec.default
            fallback = Decision(Action.ROUTE, DEFAULT_INTENT, 0.0, model=default.model,
                                system_prompt=default.system_prompt)  # fmt: skip
            routed = Routed(fallback, "", None, 0.0)
        decision, classify_ms = routed.decision, routed.classify_ms
        meta = data.setdefault("metadata", {})
        meta.setdefault(META_KEY, {}).update({
            "router": name,
            "intent": decision.intent,
            "confidence": round(decision.confidence, 4),
            "action": decision.action.value,
            "classify_ms": round(classify_ms, 3),
        })  # fmt: skip
        if decision.action is Action.ROUTE:
            assert decision.model is not None
            data["model"] = decision.model
            meta[META_KEY]["model_group"] = decision.model
            if decision.system_prompt:
                data["messages"] = [{"role": "system", "content": decision.system_prompt},
                                    *messages]  # fmt: skip
            return routed
        if decision.action is Action.HANDOFF:
            assert decision.sink is not None
            record = {
                "id": f"handoff-{uuid.uuid4().hex}",
                "time": time.time(),
                "router": name,
                "intent": decision.intent,
                "queue": decision.queue,
                "confidence": decision.confidence,
                "key_alias": key_alias,
                "conversation": messages,
            }
            meta[META_KEY]["handoff_id"] = record["id"]
            await self.handoffs.deliver(decision.sink, record)
        # a ready answer: LiteLLM returns it without calling any provider
        data["model"] = compiled.spec.default.model
        data["mock_response"] = litellm.ModelResponse(**completion_dict(name, decision.text or ""))
        return routed
