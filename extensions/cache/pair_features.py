"""Pure: the features a learned verifier reads from a (query, cached question) pair.

Three groups, all symmetric in the two questions:

- similarity: the embeddings' cosine and two shapes of it;
- lexical: word, content-word and character-trigram overlap, coverage, length,
  and how rare the words are that only one side has (inverse document
  frequencies from the training questions: "YouTube" vs "education" weighs more
  than "best" vs "good"), plus the rule checks of ``verify`` as 0/1 features;
- embedding: ``|u - v|`` and ``u * v`` of the two L2-normalised vectors.

``FEATURES_VERSION`` names this layout; a model file records the version it was
trained on and is refused by any other.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extensions.cache.verify import Features, features, names_match, order_match

FEATURES_VERSION = "pair-features/1"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SUFFIXES = ("ing", "ed", "es", "s", "ly")
_STOP_TEXT = (
    "a an the is are was were be been being am do does did of to in on at for from by with and"
    " or but if then so than as it its this that these those i me my we our you your he she"
    " they them their his her what which who whom whose why how when where can could should"
    " would will shall may might must have has had there here about into over any some all"
    " more most very just also get got one"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())
LEXICAL_NAMES = (
    "cosine",
    "cosine_squared",
    "cosine_above_0.9",
    "word_jaccard",
    "content_jaccard",
    "trigram_jaccard",
    "min_coverage",
    "max_coverage",
    "length_ratio",
    "length_difference",
    "content_difference",
    "one_sided_difference",
    "idf_overlap",
    "idf_only_min",
    "idf_only_max",
    "idf_only_sum",
    "idf_only_top1",
    "idf_only_top2",
    "same_content_words",
    "numbers_agree",
    "negation_agrees",
    "names_agree",
    "name_order_agrees",
    "question_word_agrees",
    "first_word_agrees",
    "last_word_agrees",
    "has_numbers",
    "has_names",
)
Vector = npt.NDArray[np.float32]


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased, crudely stemmed words ("questions" and "question" are one word)."""
    return [_stem(w) for w in _WORD.findall(text.lower())]


@dataclass(frozen=True)
class Idf:
    """Inverse document frequency of each word; unseen words count as the rarest."""

    weights: Mapping[str, float]
    unseen: float

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 2) -> Idf:
        counts: Counter[str] = Counter()
        n = 0
        for text in texts:
            counts.update(set(tokens(text)))
            n += 1
        weights = {w: math.log((n + 1) / (c + 1)) for w, c in counts.items() if c >= min_count}
        return cls(weights, math.log(n + 1))

    def __call__(self, word: str) -> float:
        return self.weights.get(word, self.unseen)


@dataclass(frozen=True, slots=True)
class Side:
    """One question's text-derived parts, computed once per text."""

    words: tuple[str, ...]
    trigrams: frozenset[str]
    checks: Features


def side(text: str) -> Side:
    joined = " " + " ".join(_WORD.findall(text.lower())) + " "
    grams = frozenset(joined[i : i + 3] for i in range(len(joined) - 2))
    return Side(tuple(tokens(text)), grams, features(text))


def _jaccard(x: frozenset[str] | set[str], y: frozenset[str] | set[str]) -> float:
    return len(x & y) / max(1, len(x | y))


def lexical(a: Side, b: Side, idf: Idf, cosine: float) -> list[float]:
    """The similarity and lexical features, in ``LEXICAL_NAMES`` order."""
    sa, sb = set(a.words), set(b.words)
    ca, cb = sa - STOP_WORDS, sb - STOP_WORDS
    shared = sum(idf(w) for w in sa & sb)
    total = sum(idf(w) for w in sa) + sum(idf(w) for w in sb)
    only_a = sorted((idf(w) for w in sa - sb), reverse=True)
    only_b = sorted((idf(w) for w in sb - sa), reverse=True)
    oa, ob = sum(only_a), sum(only_b)
    tops = [*sorted(only_a[:2] + only_b[:2], reverse=True), 0.0, 0.0]
    cover_a = len(ca & cb) / max(1, len(ca))
    cover_b = len(ca & cb) / max(1, len(cb))
    la, lb = len(a.words), len(b.words)
    fa, fb = a.checks, b.checks
    return [
        cosine,
        cosine * cosine,
        max(0.0, cosine - 0.9) * 10,
        _jaccard(sa, sb),
        _jaccard(ca, cb),
        _jaccard(a.trigrams, b.trigrams),
        min(cover_a, cover_b),
        max(cover_a, cover_b),
        min(la, lb) / max(1, la, lb),
        abs(la - lb) / 10,
        min(len(ca ^ cb), 8) / 8,
        min(len(ca - cb), len(cb - ca)) / 4,
        2 * shared / max(total, 1e-9),
        min(oa, ob) / 10,
        max(oa, ob) / 10,
        (oa + ob) / 20,
        tops[0] / 10,
        tops[1] / 10,
        float(ca == cb),
        float(fa.numbers == fb.numbers),
        float(fa.negated == fb.negated),
        float(names_match(fa, fb)),
        float(order_match(fa, fb)),
        float(fa.question_word == fb.question_word),
        float(a.words[:1] == b.words[:1]),
        float(a.words[-1:] == b.words[-1:]),
        float(bool(fa.numbers or fb.numbers)),
        float(bool(fa.names or fb.names)),
    ]


def pair_vector(a: Side, b: Side, u: Vector, v: Vector, idf: Idf, with_embeddings: bool) -> Vector:
    """The model's input row for one pair (``u``, ``v``: the two L2-normalised embeddings)."""
    cosine = float(np.dot(u, v))
    row = np.asarray(lexical(a, b, idf, cosine), dtype=np.float32)
    if not with_embeddings:
        return row
    return np.concatenate([row, np.abs(u - v), u * v]).astype(np.float32)
