"""``apply(policy, texts) -> Verdict``: what a route's guardrail does with some texts (pure)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from extensions.guard.detectors import Finding, Kind, redact_text, scan
from extensions.guard.settings import GuardAction, RoutePolicy

# Texts longer than this (all together; about 2 ms of scanning) go to a thread in apply_async.
INLINE_CHARS = 8_000


class Outcome(StrEnum):
    CLEAN = "clean"  # scanned, nothing found (or the route is off)
    DETECTED = "detected"  # found, request unchanged
    REDACTED = "redacted"  # found and replaced by [KIND]
    BLOCKED = "blocked"  # found; the request must be refused with a 400


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Outcome
    texts: tuple[str, ...]  # what to send on: redacted if action is REDACTED, else the input
    kinds: tuple[Kind, ...]  # kinds found, sorted by name
    findings: tuple[Finding, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.action is Outcome.BLOCKED

    def refusal(self) -> str:
        """The 400 message of a blocked request: the kinds, never the data."""
        names = ", ".join(kind.value for kind in self.kinds)
        return (
            f"Request blocked by the gateway's data guardrail: it contains {names}. "
            "Remove that data and send the request again."
        )


def apply(policy: RoutePolicy, texts: Sequence[str]) -> Verdict:
    """Scan ``texts`` for the policy's kinds and act on what is found."""
    if policy.action is GuardAction.OFF:
        return Verdict(Outcome.CLEAN, tuple(texts), ())
    findings = scan(texts, policy.kinds)
    if not findings:
        return Verdict(Outcome.CLEAN, tuple(texts), ())
    kinds = tuple(sorted({f.kind for f in findings}, key=lambda k: k.value))
    if policy.action is GuardAction.DETECT:
        return Verdict(Outcome.DETECTED, tuple(texts), kinds, tuple(findings))
    if policy.action is GuardAction.BLOCK:
        return Verdict(Outcome.BLOCKED, tuple(texts), kinds, tuple(findings))
    per_text: dict[int, list[Finding]] = {}
    for f in findings:
        per_text.setdefault(f.text, []).append(f)
    redacted = tuple(redact_text(t, per_text.get(i, [])) for i, t in enumerate(texts))
    return Verdict(Outcome.REDACTED, redacted, kinds, tuple(findings))


async def apply_async(policy: RoutePolicy, texts: Sequence[str]) -> Verdict:
    """``apply``, in a worker thread when the texts are long (see INLINE_CHARS).

    Regular expressions hold the GIL, so the thread does not add CPU; it lets the
    event loop interleave other requests while a large conversation is scanned.
    """
    if sum(len(t) for t in texts) <= INLINE_CHARS:
        return apply(policy, texts)
    return await asyncio.to_thread(apply, policy, list(texts))
