"""Pure: which text of a conversation is classified, and whether the user is answering
one of our clarifying questions (recognised statelessly by re-rendering it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from extensions.router.settings import Classify, Intent, Turns


def message_text(message: Mapping[str, object]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def user_texts(messages: Sequence[Mapping[str, object]]) -> list[str]:
    return [message_text(m) for m in messages if m.get("role") == "user"]


def text_to_classify(messages: Sequence[Mapping[str, object]], settings: Classify) -> str:
    texts = [t for t in user_texts(messages) if t.strip()]
    if not texts:
        return ""
    if settings.turns is Turns.LAST_USER:
        return texts[-1]
    return "\n".join(texts[-settings.last_n :])


def render_clarify(question: str, candidates: Sequence[Intent]) -> str:
    """The clarifying question naming the candidates in plain words (their descriptions)."""
    descriptions = [c.description for c in candidates]
    if len(descriptions) == 1:
        options = descriptions[0]
    else:
        options = ", ".join(descriptions[:-1]) + " or " + descriptions[-1]
    # str.replace, not str.format: no user or config text is ever evaluated as a template
    return question.replace("{options}", options)


@dataclass(frozen=True)
class FollowUp:
    """The user's answer to our clarifying question."""

    candidates: tuple[str, ...]
    original_query: str
    answer: str


def find_follow_up(
    messages: Sequence[Mapping[str, object]], question: str, intents: Sequence[Intent]
) -> FollowUp | None:
    """If the last user turn answers our clarifying question, which intents were offered."""
    if len(messages) < 3 or messages[-1].get("role") != "user":
        return None
    previous, asked = messages[-2], messages[-3]
    if previous.get("role") != "assistant" or asked.get("role") != "user":
        return None
    said = message_text(previous)
    found = [i for i in intents if i.description in said]
    # "freeze" inside "freeze your account" is not an option of its own
    found = [i for i in found
             if not any(i.description in o.description and i is not o for o in found)]  # fmt: skip
    offered = sorted(found, key=lambda i: said.index(i.description))
    if len(offered) < 2 or render_clarify(question, offered) != said:
        return None
    return FollowUp(tuple(i.name for i in offered), message_text(asked), message_text(messages[-1]))
