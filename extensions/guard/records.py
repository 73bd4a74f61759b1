"""Make a JSON record (a handoff) safe to send out of the process: bounded, then redacted.

``prepare`` keeps the most recent turns of ``record["conversation"]`` that fit in
``max_bytes`` (cutting the last turn's text if it alone is too big) and marks what
it dropped under ``"truncated"``; then every string in the record goes through the
detectors (``[KIND]``) and any extra ``(name, regex)`` patterns (``[name]``).
Cost is bounded by ``max_bytes`` and the number of turns, not by the record's size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extensions.guard.detectors import ALL_KINDS, Kind, redact_text, scan_text
from extensions.guard.messages import message_texts

CONVERSATION = "conversation"
TRUNCATED = "truncated"
_SCALAR_CHARS = 256  # when even the record without its conversation is too big


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str).encode())


class RecordRedactor:
    """Replaces the detectors' findings (of ``kinds``) and extra patterns in every string."""

    def __init__(
        self, kinds: Collection[Kind] = ALL_KINDS, patterns: Sequence[tuple[str, str]] = ()
    ) -> None:
        self.kinds = frozenset(kinds)
        self.patterns = [(re.compile(p), f"[{name}]", name) for name, p in patterns]

    def text(self, text: str, found: set[str]) -> str:
        findings = scan_text(text, self.kinds) if self.kinds else []
        found.update(f.kind.value for f in findings)
        text = redact_text(text, findings)
        for pattern, label, name in self.patterns:
            text, n = pattern.subn(label, text)
            if n:
                found.add(name)
        return text

    def value(self, value: Any, found: set[str]) -> Any:
        if isinstance(value, str):
            return self.text(value, found)
        if isinstance(value, Mapping):
            return {k: self.value(v, found) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, found) for v in value]
        return value


@dataclass(frozen=True, slots=True)
class Prepared:
    record: dict[str, Any]
    redacted: tuple[str, ...]  # kinds and pattern names replaced, sorted
    truncated: bool


def _clip_turn(turn: Any, budget: int) -> dict[str, Any]:
    """The turn's role and the start of its text, within ``budget`` bytes of JSON."""
    role = turn.get("role", "user") if isinstance(turn, Mapping) else "user"
    text = " ".join(message_texts([turn])) if isinstance(turn, Mapping) else str(turn)
    room = max(0, budget - json_size({"role": role, "content": ""}) - 64)
    raw = text.encode()
    clipped = raw[:room].decode(errors="ignore")
    return {"role": role, "content": clipped + f" …[{len(raw) - len(clipped.encode())} bytes cut]"}


def _scalars_only(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, str):
            out[key] = value[:_SCALAR_CHARS]
        elif value is None or isinstance(value, bool | int | float):
            out[key] = value
    return out


def cap(record: Mapping[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """The record within ``max_bytes`` of JSON: the most recent turns that fit, marked."""
    turns = record.get(CONVERSATION)
    turns = turns if isinstance(turns, list) else []
    marker = {"dropped_turns": len(turns), "cut_last_turn": False, "max_record_bytes": max_bytes}
    base = {**record, CONVERSATION: [], TRUNCATED: marker}
    budget = max_bytes - json_size(base)
    if budget < 0:  # even without the conversation: keep short scalar fields only
        return {**_scalars_only(record), TRUNCATED: {**marker, "fields_dropped": True}}, True
    kept: list[Any] = []
    for turn in reversed(turns):
        size = json_size(turn) + 2  # ", " between list items
        if size > budget:
            break
        kept.append(turn)
        budget -= size
    if len(kept) == len(turns):
        return dict(record), False
    if not kept:
        kept.append(_clip_turn(turns[-1], budget))
        marker["cut_last_turn"] = True
    kept.reverse()
    marker["dropped_turns"] = len(turns) - len(kept)
    return {**record, CONVERSATION: kept, TRUNCATED: marker}, True


def prepare(record: Mapping[str, Any], max_bytes: int, redactor: RecordRedactor) -> Prepared:
    """Bounded first (so only what is kept is scanned), then redacted, then re-checked."""
    capped, truncated = cap(record, max_bytes)
    found: set[str] = set()
    redacted = redactor.value(capped, found)
    if json_size(redacted) > max_bytes:  # a label longer than the data it replaced
        redacted, again = cap(redacted, max_bytes)
        truncated = truncated or again
    return Prepared(redacted, tuple(sorted(found)), truncated)
