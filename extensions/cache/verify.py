"""Pure: does a cached question really ask the same thing as the new one?

Similar embeddings are not enough: templated questions that differ in one detail
("capital of Vietnam" / "capital of Laos", "2 weeks" / "3 weeks", "with" /
"without", "Messi better than Ronaldo" / the reverse) embed almost identically
but need different answers. Each check compares one such detail; a candidate
must pass all enabled checks. Measured on QQP: see ``gateway calibrate-cache``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from extensions.cache.settings import Verification

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'&+.-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "can't",
        "cannot",
        "won't",
        "wouldn't",
        "shouldn't",
        "couldn't",
        "haven't",
        "hasn't",
        "hadn't",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "cant",
        "wont",
    }
)
QUESTION_WORDS = ("what", "why", "how", "who", "when", "where", "which", "whom", "whose")
NOT_NAMES = frozenset({"i", "i'm", "i've", "i'd", "i'll"} | set(QUESTION_WORDS))


@dataclass(frozen=True, slots=True)
class Features:
    """What the checks compare, computed once per text."""

    words: tuple[str, ...]  # lower-cased
    numbers: frozenset[str]
    negated: bool
    names: tuple[str, ...]  # lower-cased words written with a capital inside the sentence
    question_word: str | None


def features(text: str) -> Features:
    raw = [w.rstrip(".") for w in _WORD.findall(text)]
    words = tuple(w.lower() for w in raw)
    names = tuple(
        w.lower()
        for i, w in enumerate(raw)
        if i > 0 and w[:1].isupper() and w.lower() not in NOT_NAMES
    )
    qword = next((w for w in words[:4] if w in QUESTION_WORDS), None)
    return Features(
        words=words,
        numbers=frozenset(n.replace(",", "") for n in _NUMBER.findall(text)),
        negated=any(w in NEGATIONS for w in words),
        names=names,
        question_word=qword,
    )


def names_match(a: Features, b: Features) -> bool:
    """Every name in either text appears (in any case) in the other."""
    wa, wb = set(a.words), set(b.words)
    return all(n in wb for n in a.names) and all(n in wa for n in b.names)


def order_match(a: Features, b: Features) -> bool:
    """Names both texts share appear in the same order ("X better than Y" vs "Y ... X")."""
    shared = (set(a.names) | set(b.names)) & set(a.words) & set(b.words)
    if len(shared) < 2:
        return True
    seq_a = [w for w in dict.fromkeys(a.words) if w in shared]
    seq_b = [w for w in dict.fromkeys(b.words) if w in shared]
    return seq_a == seq_b


def same_question(query: Features, cached: Features, checks: Verification) -> str | None:
    """None if ``cached`` passes every enabled check, else the name of the failed check."""
    if not checks.enabled:
        return None
    if checks.numbers and query.numbers != cached.numbers:
        return "numbers"
    if checks.negation and query.negated != cached.negated:
        return "negation"
    if checks.entities and not names_match(query, cached):
        return "entities"
    if checks.question_word and query.question_word != cached.question_word:
        return "question_word"
    if checks.word_order and not order_match(query, cached):
        return "word_order"
    return None
