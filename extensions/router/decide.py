"""Pure: from a classification to the action (ROUTE, RESPOND, HANDOFF, CLARIFY, REFUSE)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from extensions.router.classifier import Classification, Verdict
from extensions.router.conversation import render_clarify
from extensions.router.settings import PLACEHOLDER, Action, Intent, Router

DEFAULT_INTENT = "default"


@dataclass(frozen=True)
class Decision:
    action: Action
    intent: str | None
    confidence: float
    model: str | None = None  # ROUTE: the model group to call
    system_prompt: str | None = None
    text: str | None = None  # RESPOND, HANDOFF, CLARIFY, REFUSE: the answer to send
    queue: str | None = None  # HANDOFF
    sink: str | None = None  # HANDOFF
    candidates: tuple[str, ...] = ()  # CLARIFY


def render_template(text: str, variables: dict[str, str]) -> str:
    """Substitute ``{name}`` from configured variables only; nothing else is evaluated."""
    return PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _pick(options: list[str], query: str) -> str:
    digest = hashlib.sha256(query.encode("utf-8")).digest()
    return options[digest[0] % len(options)]


def _clarify(router: Router, names: tuple[str, ...], c: Classification) -> Decision:
    by_name = {i.name: i for i in router.intents}
    candidates = [by_name[n] for n in names if n in by_name]
    return Decision(Action.CLARIFY, c.intent, c.confidence,
                    text=render_clarify(router.clarify.question, candidates),
                    candidates=tuple(i.name for i in candidates))  # fmt: skip


def _same_target(a: Intent, b: Intent) -> bool:
    return a.action == b.action and (a.route, a.respond, a.handoff) == (
        b.route,
        b.respond,
        b.handoff,
    )


def _for_intent(router: Router, intent: Intent, c: Classification) -> Decision:
    if intent.route is not None:
        return Decision(Action.ROUTE, intent.name, c.confidence, model=intent.route.model,
                        system_prompt=intent.route.system_prompt)  # fmt: skip
    if intent.respond is not None:
        text = render_template(intent.respond.text, intent.respond.variables)
        return Decision(Action.RESPOND, intent.name, c.confidence, text=text)
    if intent.handoff is not None:
        return Decision(Action.HANDOFF, intent.name, c.confidence, text=intent.handoff.message,
                        queue=intent.handoff.queue, sink=intent.handoff.sink)  # fmt: skip
    assert intent.clarify is not None
    return _clarify(router, tuple(intent.clarify.between), c)


def decide(router: Router, c: Classification, query: str) -> Decision:
    """What to do with a classified query."""
    if c.verdict is Verdict.OUT_OF_SCOPE:
        return Decision(Action.REFUSE, None, c.confidence,
                        text=_pick(router.out_of_scope.responses, query))  # fmt: skip
    if c.intent == DEFAULT_INTENT or c.intent is None:
        return Decision(Action.ROUTE, DEFAULT_INTENT, c.confidence, model=router.default.model,
                        system_prompt=router.default.system_prompt)  # fmt: skip
    by_name = {i.name: i for i in router.intents}
    intent = by_name[c.intent]
    if c.verdict is Verdict.AMBIGUOUS and len(c.ranked) > 1:
        runner_up = by_name.get(c.ranked[1][0])
        if runner_up is not None and not _same_target(intent, runner_up):
            return _clarify(router, (intent.name, runner_up.name), c)
    return _for_intent(router, intent, c)
