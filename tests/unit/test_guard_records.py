"""Records leaving the process (handoffs): bounded to max bytes, then redacted."""

from __future__ import annotations

from typing import Any

import pytest

from extensions.guard.detectors import Kind
from extensions.guard.records import RecordRedactor, cap, json_size, prepare

pytestmark = pytest.mark.unit

CARD = "4111 1111 1111 1111"
KEY = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
EMAIL = "jane.roe@example.com"


def record(turns: list[Any], **extra: Any) -> dict[str, Any]:
    return {"id": "handoff-1", "router": "support-bot", "conversation": turns, **extra}


def turn(i: int, size: int = 1000) -> dict[str, str]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "x" * size}


def test_small_records_are_left_as_they_are() -> None:
    r = record([turn(0), turn(1)])
    assert cap(r, 65_536) == (r, False)


def test_cap_keeps_the_most_recent_turns_and_marks_what_it_dropped() -> None:
    r = record([turn(i) for i in range(100)])  # about 100 kB
    capped, truncated = cap(r, 10_000)
    assert truncated
    assert json_size(capped) <= 10_000
    kept = capped["conversation"]
    assert kept[-1]["content"].startswith("turn 99 ")
    assert [t["content"].split()[1] for t in kept] == [str(i) for i in range(100 - len(kept), 100)]
    assert capped["truncated"]["dropped_turns"] == 100 - len(kept) > 80
    assert capped["truncated"]["cut_last_turn"] is False
    assert capped["id"] == "handoff-1"


def test_a_last_turn_too_big_on_its_own_is_cut() -> None:
    huge = {"role": "user", "content": [{"type": "text", "text": "é" * 3_500_000}]}
    capped, truncated = cap(record([turn(0), huge]), 4_096)
    assert truncated and json_size(capped) <= 4_096
    (last,) = capped["conversation"]
    assert last["role"] == "user" and last["content"].startswith("éé")
    assert "bytes cut]" in last["content"]
    assert capped["truncated"] == {
        "dropped_turns": 1,
        "cut_last_turn": True,
        "max_record_bytes": 4_096,
    }


def test_without_room_for_any_turn_only_short_fields_remain() -> None:
    capped, truncated = cap(record([turn(0)], notes="n" * 5000, n=3, meta={"a": 1}), 1_024)
    assert truncated and json_size(capped) <= 1_024
    assert capped["id"] == "handoff-1" and capped["n"] == 3 and len(capped["notes"]) == 256
    assert "conversation" not in capped and "meta" not in capped
    assert capped["truncated"]["fields_dropped"] is True


def test_redactor_walks_every_string_and_applies_extra_patterns() -> None:
    redactor = RecordRedactor(patterns=[("order", r"ORD-\d{6}")])
    found: set[str] = set()
    value = redactor.value(
        {
            "key_alias": EMAIL,
            "conversation": [
                {"role": "user", "content": f"card {CARD}, order ORD-123456"},
                {"role": "user", "content": [{"type": "text", "text": f"key {KEY}"}]},
            ],
            "confidence": 0.9,
        },
        found,
    )
    assert value["key_alias"] == "[EMAIL]"
    assert value["conversation"][0]["content"] == "card [CARD], order [order]"
    assert value["conversation"][1]["content"][0] == {"type": "text", "text": "key [SECRET]"}
    assert value["confidence"] == 0.9
    assert found == {"card", "email", "order", "secret"}


def test_redactor_kinds_subset_and_none() -> None:
    text = f"{EMAIL} {CARD}"
    assert RecordRedactor({Kind.CARD}).text(text, set()) == f"{EMAIL} [CARD]"
    assert RecordRedactor(frozenset()).text(text, set()) == text


def test_prepare_bounds_then_redacts() -> None:
    turns = [turn(i) for i in range(50)] + [{"role": "user", "content": f"pay {CARD} {EMAIL}"}]
    prepared = prepare(record(turns), 8_192, RecordRedactor())
    assert prepared.truncated and prepared.redacted == ("card", "email")
    assert json_size(prepared.record) <= 8_192
    assert prepared.record["conversation"][-1]["content"] == "pay [CARD] [EMAIL]"


def test_prepare_stays_within_the_bound_when_labels_are_longer_than_the_data() -> None:
    turns = [{"role": "user", "content": "a@b.co " * 40} for _ in range(20)]  # 7 chars -> [EMAIL]
    r = record(turns)
    limit = json_size(r) - 10  # fits before redaction, not after
    prepared = prepare(r, limit, RecordRedactor())
    assert json_size(prepared.record) <= limit and prepared.truncated
