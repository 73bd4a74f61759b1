"""Simulated automatic prefix caching (OpenAI; Gemini implicit caching): pure logic.

No request marker is needed. A ``Prompt`` (``build_prompt``) is a sequence of ``Piece``s
(tools, then each turn's marker and text, in the order the provider reads them). Every
prefix of ``min_tokens``, ``min_tokens + increment``, ... tokens (up to the prompt's size)
is remembered per model until ``ttl_s`` after its last use; a request is served from cache
for the longest of its prefixes already remembered. Prompts shorter than ``min_tokens`` are
never cached and cost no hashing.

Where a prefix boundary falls inside a piece, the piece's text is cut at
``CHARS_PER_TOKEN`` characters per token (the simulator's token rule), so two prompts
share a prefix exactly when their first pieces and the text up to the cut are equal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .text import CHARS_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS, estimate_tokens

_SEPARATOR = b"\x1e"


@dataclass(frozen=True, slots=True)
class Piece:
    """One run of prompt text and the tokens it counts for."""

    text: str
    tokens: int


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt as the simulator sees it: text for answer generation, token estimate, and
    the pieces in cache order (tools first, then each turn's marker and text)."""

    text: str
    tokens: int
    pieces: tuple[Piece, ...]


def build_prompt(turns: Sequence[tuple[str, str]], tools: Any) -> Prompt:
    """``turns``: (role, text) in order. Each turn costs ``MESSAGE_OVERHEAD_TOKENS`` plus
    its text; the tools' JSON is estimated as text."""
    pieces: list[Piece] = []
    if tools:
        tools_json = json.dumps(tools, separators=(",", ":"), sort_keys=True)
        pieces.append(Piece(tools_json, estimate_tokens(tools_json)))
    lines: list[str] = []
    for role, text in turns:
        lines.append(f"{role}: {text}")
        pieces.append(Piece(f"<|{role}|>", MESSAGE_OVERHEAD_TOKENS))
        pieces.append(Piece(text, estimate_tokens(text)))
    return Prompt("\n".join(lines), sum(p.tokens for p in pieces), tuple(pieces))


def boundaries(total: int, min_tokens: int, increment: int) -> range:
    """Token counts of the cacheable prefixes of a ``total``-token prompt."""
    start = min_tokens if min_tokens > 0 else increment
    return range(start, total + 1, increment)


def prefix_hashes(
    pieces: Sequence[Piece], min_tokens: int, increment: int
) -> list[tuple[int, str]]:
    """``(tokens, hash)`` of every cacheable prefix, shortest first (one pass over the text)."""
    total = sum(p.tokens for p in pieces)
    cuts = iter(boundaries(total, min_tokens, increment))
    nxt = next(cuts, None)
    if nxt is None:
        return []
    found: list[tuple[int, str]] = []
    hasher = hashlib.sha256()
    before = 0
    for piece in pieces:
        fed = 0
        while nxt is not None and nxt <= before + piece.tokens:
            cut = min(len(piece.text), (nxt - before) * CHARS_PER_TOKEN)
            hasher.update(piece.text[fed:cut].encode("utf-8", "surrogatepass"))
            fed = max(fed, cut)
            found.append((nxt, hasher.copy().hexdigest()))
            nxt = next(cuts, None)
        hasher.update(piece.text[fed:].encode("utf-8", "surrogatepass"))
        hasher.update(_SEPARATOR)
        before += piece.tokens
        if nxt is None:
            break
    return found


class AutoPrefixCache:
    """Remembered prefixes per (model, prefix hash) with their expiry."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._expiry: dict[tuple[str, str], float] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry)

    def clear(self) -> None:
        self._expiry.clear()

    def lookup(
        self, model: str, prefixes: Sequence[tuple[int, str]], ttl_s: float, now: float
    ) -> int:
        """Cached tokens for this prompt (0 on a miss); remembers all its prefixes."""
        if not prefixes:
            return 0
        cached = 0
        for tokens, key in reversed(prefixes):
            expiry = self._expiry.get((model, key))
            if expiry is not None and expiry > now:
                cached = tokens
                break
        for _, key in prefixes:
            self._expiry[(model, key)] = now + ttl_s
        if len(self._expiry) > self._max_entries:
            self._prune(now)
        return cached

    def live_entries(self, now: float) -> dict[str, int]:
        """Unexpired remembered prefixes per model."""
        counts: dict[str, int] = {}
        for (model, _), expiry in self._expiry.items():
            if expiry > now:
                counts[model] = counts.get(model, 0) + 1
        return counts

    def _prune(self, now: float) -> None:
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]
        while len(self._expiry) > self._max_entries:
            self._expiry.pop(next(iter(self._expiry)))
