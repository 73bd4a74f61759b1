"""Deterministic answers, token estimates and embeddings (pure logic).

Token rule (used for prompts and completions alike): a text costs ``ceil(len(text) / 4)``
tokens (0 for the empty string); each chat message / content turn adds
``MESSAGE_OVERHEAD_TOKENS``. Answers are ``"Simulated reply from {model}: "`` followed by
words drawn from ``VOCABULARY`` by a hash of (model, prompt); the word count is drawn from
the model's ``answer_words`` range. When the text's estimate exceeds the caller's output
limit, it is cut to ``4 * limit`` characters and the finish reason is "length".
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

MESSAGE_OVERHEAD_TOKENS = 4
CHARS_PER_TOKEN = 4

_VOCABULARY_TEXT = (
    "gateway model token latency cache route prompt answer stream request budget policy "
    "tenant quota vector context signal metric replica shard queue batch window header "
    "payload schema retry fallback deploy region cluster throughput bandwidth cost usage "
    "audit trace span log event the a of and to in for with on is quickly steadily reliably "
    "simply clearly often green blue amber silent bright calm rapid gentle solid simulated "
    "deterministic useful stable fresh warm cold small large early late river mountain "
    "forest harbor lantern compass "
)
VOCABULARY: tuple[str, ...] = tuple(_VOCABULARY_TEXT.split())

_CHUNK_RE = re.compile(r"\S+\s*|\s+")


def estimate_tokens(text: str) -> int:
    """``ceil(len(text) / 4)``: the documented token rule for prompts and completions."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def digest(*parts: str) -> bytes:
    """SHA-256 of the parts joined by NUL (stable across processes)."""
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated completion text and whether it was cut by the output limit."""

    text: str
    tokens: int
    truncated: bool


def generate_answer(
    model: str, prompt: str, min_words: int, max_words: int, max_tokens: int | None = None
) -> Answer:
    """Deterministic answer for (model, prompt), capped at ``max_tokens`` if given."""
    rng = random.Random(digest("answer", model, prompt))
    count = rng.randint(min_words, max_words)
    words = rng.choices(VOCABULARY, k=count)
    text = f"Simulated reply from {model}: " + " ".join(words) + "."
    if max_tokens is not None and estimate_tokens(text) > max_tokens:
        cut = text[: max(0, max_tokens) * CHARS_PER_TOKEN]
        return Answer(text=cut, tokens=estimate_tokens(cut), truncated=True)
    return Answer(text=text, tokens=estimate_tokens(text), truncated=False)


def split_chunks(text: str) -> list[str]:
    """Streaming pieces: each word with its trailing whitespace (joins back to ``text``)."""
    return _CHUNK_RE.findall(text)


def split_fixed(text: str, size: int) -> list[str]:
    """Pieces of at most ``size`` characters (for streaming tool-call arguments)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def short_id(*parts: str, length: int = 24) -> str:
    """Deterministic hex id from the parts."""
    return digest(*parts).hex()[:length]


# -------------------------------------------------------------------------------- embeddings


def embedding_vector(text: str, dim: int) -> list[float]:
    """Deterministic unit-norm vector of ``dim`` floats from a hash of ``text``."""
    raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(dim * 2)
    values = [v / 32768.0 - 1.0 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values))
    if norm == 0.0:
        return [1.0] + [0.0] * (dim - 1)
    return [v / norm for v in values]


def encode_base64_floats(vector: Iterable[float]) -> str:
    """Little-endian float32 base64, the OpenAI ``encoding_format: base64`` encoding."""
    floats = list(vector)
    return base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode("ascii")


def decode_base64_floats(data: str) -> list[float]:
    """Inverse of ``encode_base64_floats``."""
    raw = base64.b64decode(data)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
