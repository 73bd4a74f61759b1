"""The guardrail policy: YAML section, per-route actions, verdicts, chat messages, counters."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import ValidationError

from extensions.guard import policy as policy_module
from extensions.guard.detectors import ALL_KINDS, Kind
from extensions.guard.guard import Guard
from extensions.guard.messages import message_texts, with_texts
from extensions.guard.policy import Outcome, apply, apply_async
from extensions.guard.settings import GuardAction, Guardrails, RoutePolicy

pytestmark = pytest.mark.unit

CARD = "4111 1111 1111 1111"
EMAIL = "jane.roe@example.com"
TEXTS = [f"my card is {CARD}", "nothing here", f"write to {EMAIL}"]


def test_no_section_is_off_and_a_route_detects_every_kind_by_default() -> None:
    assert Guardrails().policy_for("anything").action is GuardAction.OFF
    g = Guardrails.model_validate({"routes": {"*": {}}})
    assert g.policy_for("anything") == RoutePolicy(action=GuardAction.DETECT, kinds=ALL_KINDS)
    assert g.policy_for(None).action is GuardAction.DETECT


def test_route_policy_from_yaml_shaped_data() -> None:
    g = Guardrails.model_validate(
        {
            "routes": {
                "*": {"action": "off"},
                "support-bot": {"action": "redact", "kinds": ["email", "card"]},
                "gpt-sim": {"action": "block", "kinds": ["secret"]},
            }
        }
    )
    assert g.policy_for("support-bot").kinds == {Kind.EMAIL, Kind.CARD}
    assert g.policy_for("gpt-sim").action is GuardAction.BLOCK
    assert g.policy_for("other").action is GuardAction.OFF


def test_without_a_default_unknown_routes_are_off() -> None:
    g = Guardrails(routes={"gpt-sim": RoutePolicy(action=GuardAction.BLOCK)})
    assert g.policy_for("claude-sim").action is GuardAction.OFF


@pytest.mark.parametrize(
    "routes",
    [
        {"*": {"action": "mask"}},  # no such action
        {"*": {"kinds": ["passport"]}},  # no such kind
        {"*": {"kinds": []}},  # nothing to look for
        {"*": {"action": "detect", "mode": "fast"}},  # unknown key
        {"bad name!": {"action": "detect"}},
    ],
)
def test_bad_sections_are_refused(routes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Guardrails.model_validate({"routes": routes})


def test_off_does_not_scan() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.OFF), TEXTS)
    assert (verdict.action, verdict.kinds, verdict.texts) == (Outcome.CLEAN, (), tuple(TEXTS))


def test_clean_texts() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.BLOCK), ["hello", "how are you?"])
    assert verdict.action is Outcome.CLEAN and not verdict.blocked


def test_detect_keeps_the_texts_and_names_the_kinds() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.DETECT), TEXTS)
    assert verdict.action is Outcome.DETECTED
    assert verdict.texts == tuple(TEXTS)
    assert verdict.kinds == (Kind.CARD, Kind.EMAIL)
    assert [f.text for f in verdict.findings] == [0, 2]


def test_redact_replaces_the_data_with_its_kind() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.REDACT), TEXTS)
    assert verdict.action is Outcome.REDACTED
    assert verdict.texts == ("my card is [CARD]", "nothing here", "write to [EMAIL]")


def test_block_names_the_kinds_but_never_the_data() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.BLOCK), TEXTS)
    assert verdict.blocked
    message = verdict.refusal()
    assert "card, email" in message
    assert CARD not in message and EMAIL not in message and "1111" not in message


def test_only_the_enabled_kinds_count() -> None:
    verdict = apply(RoutePolicy(action=GuardAction.REDACT, kinds=frozenset({Kind.EMAIL})), TEXTS)
    assert verdict.texts == (f"my card is {CARD}", "nothing here", "write to [EMAIL]")
    assert verdict.kinds == (Kind.EMAIL,)


async def test_apply_async_matches_apply_and_uses_a_thread_for_long_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = RoutePolicy(action=GuardAction.REDACT)
    threaded: list[int] = []
    real = asyncio.to_thread

    async def spy(fn: Any, *args: Any) -> Any:
        threaded.append(1)
        return await real(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    assert await apply_async(policy, TEXTS) == apply(policy, TEXTS)
    assert threaded == []
    long_texts = [*TEXTS, "x" * policy_module.INLINE_CHARS]
    assert (await apply_async(policy, long_texts)).texts[:3] == apply(policy, TEXTS).texts
    assert threaded == [1]


def chat() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"card {CARD}"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "and mail " + EMAIL},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1"}]},
        {"role": "user", "content": "thanks"},
    ]


def test_message_texts_reads_strings_and_text_parts_in_order() -> None:
    assert message_texts(chat()) == ["be brief", f"card {CARD}", f"and mail {EMAIL}", "thanks"]


def test_with_texts_copies_only_what_changed() -> None:
    messages = chat()
    out = with_texts(messages, ["be brief", "card [CARD]", "and mail [EMAIL]", "thanks"])
    assert out[1]["content"][0]["text"] == "card [CARD]"
    assert out[1]["content"][1] == messages[1]["content"][1]
    assert out[1]["content"][2]["text"] == "and mail [EMAIL]"
    assert out[0] is messages[0] and out[2] is messages[2] and out[3] is messages[3]
    assert messages[1]["content"][0]["text"] == f"card {CARD}"  # the input is unchanged
    with pytest.raises(ValueError):
        with_texts(messages, ["too few"])


def test_guard_redacts_messages_counts_and_logs_kinds_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guard = Guard(Guardrails(routes={"support-bot": RoutePolicy(action=GuardAction.REDACT)}))
    with caplog.at_level(logging.WARNING, logger="gateway.guard"):
        verdict, messages = guard.check("support-bot", chat())
        clean, same = guard.check("other-route", chat())
    assert verdict.action is Outcome.REDACTED
    assert message_texts(messages)[1:3] == ["card [CARD]", "and mail [EMAIL]"]
    assert clean.action is Outcome.CLEAN and same == chat()
    assert guard.outcomes == {Outcome.REDACTED: 1, Outcome.CLEAN: 1}
    assert guard.found == {Kind.CARD: 1, Kind.EMAIL: 1}
    assert "card=1, email=1" in caplog.text
    assert CARD not in caplog.text and EMAIL not in caplog.text


async def test_guard_block_leaves_messages_and_gives_the_refusal() -> None:
    guard = Guard(Guardrails(routes={"*": RoutePolicy(action=GuardAction.BLOCK)}))
    verdict, messages = await guard.check_async("gpt-sim", chat())
    assert verdict.blocked and messages == chat()
    assert "card" in verdict.refusal()
