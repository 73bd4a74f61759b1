"""Measure the semantic cache on labelled question pairs and pick its operating point.

Two views of the same data (``text_a, text_b, label``; 1 = same question):

- pairwise: is ``text_b`` served ``text_a``'s answer (similarity >= threshold and
  the verifier passes it)?
- cache simulation: every ``text_a`` is stored in a real ``ResponseCache``
  (memory store + HNSW index + the configured verifier: the gateway's own code),
  every ``text_b`` is looked up through ``ResponseCache.candidates`` and decided
  by ``pick``, exactly as ``ResponseCache.semantic`` decides. A hit on the same
  text, or on an entry labelled a duplicate of the query, is right; on an entry
  labelled different, it is wrong. ``sim_precision`` is over those judged hits; a
  hit on a pair with no label may be either, and ``sim_precision_lower_bound``
  counts all of those wrong. ``sim_recall`` is over the queries that could be
  answered right (a labelled duplicate, or the same text, is stored).

Candidates are scored once at the lowest threshold of a sweep; every operating
point (threshold, minimum verifier score) is then decided from those scores.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from extensions.cache.bootstrap import intervals
from extensions.cache.folds import normalise, question_folds
from extensions.cache.keys import RequestKey
from extensions.cache.pairs import Pair, PairsError, read_pairs
from extensions.cache.service import Entry, ResponseCache, pick
from extensions.cache.settings import CacheSettings
from extensions.cache.store import MemoryStore
from extensions.cache.vectors import MemoryVectorIndex
from extensions.cache.verifiers import CandidateVerifier, Question, Verdict, passes
from extensions.embedding.encoder import Vectors

__all__ = ["Pair", "PairsError", "read_pairs"]

GRID = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))  # thresholds 0.70 .. 0.99
SCORE_GRID = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))  # min. scores 0.50 .. 0.99
FLOOR_GRID = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94)  # thresholds swept with the scores
Encode = Callable[[list[str]], Vectors]


class Status(IntEnum):
    WRONG = -1
    UNJUDGED = 0
    RIGHT = 1


@dataclass(frozen=True, slots=True)
class Option:
    """A candidate a lookup found: its similarity, verdict, and whether serving it is right."""

    similarity: float
    verdict: Verdict
    status: Status


@dataclass(frozen=True, slots=True)
class Trial:
    """One ``text_b`` looked up in the simulated cache."""

    answerable: bool
    options: tuple[Option, ...]  # most similar first
    lookup_ms: float
    paraphrase: bool = False  # a labelled duplicate is stored, its own text is not


@dataclass(frozen=True, slots=True)
class Scored:
    """One labelled pair, pairwise."""

    label: int
    cosine: float
    verdict: Verdict


@dataclass(frozen=True)
class Evidence:
    trials: list[Trial]
    scored: list[Scored]

    def __add__(self, other: Evidence) -> Evidence:
        return Evidence(self.trials + other.trials, self.scored + other.scored)


@dataclass(frozen=True)
class Point:
    threshold: float
    min_score: float
    pairwise_precision: float
    pairwise_recall: float
    raw_precision: float  # without verification
    raw_recall: float
    sim_hit_rate: float
    sim_precision: float
    sim_recall: float
    sim_precision_lower_bound: float
    sim_unjudged_share: float  # hits on pairs with no label
    paraphrase_served: float = 0.0  # of the paraphrase trials, served a right answer


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def embed(pairs: Sequence[Pair], encode: Encode) -> dict[str, Vectors]:
    unique = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    return dict(zip(unique, encode(unique), strict=True))


def score_pairs(
    pairs: Sequence[Pair], texts: dict[str, Vectors], verifier: CandidateVerifier
) -> list[Scored]:
    """Each pair as the verifier sees it: ``text_b`` the query, ``text_a`` the cached one."""
    out = []
    for p in pairs:
        va, vb = texts[p.a], texts[p.b]
        (verdict,) = verifier.verdicts(Question(p.b, vb), [Question(p.a, va)])
        out.append(Scored(p.label, float(np.dot(va, vb)), verdict))
    return out


async def simulate(
    pairs: Sequence[Pair],
    texts: dict[str, Vectors],
    settings: CacheSettings,
    verifier: CandidateVerifier,
    floor: float,
) -> list[Trial]:
    """Store every text_a, look up every text_b with the candidates at or above ``floor``."""
    unique_a = list(dict.fromkeys(p.a for p in pairs))
    dim = len(next(iter(texts.values())))
    store = MemoryStore(len(unique_a) + 1)
    index = MemoryVectorIndex(dim, len(unique_a) + 1)
    cache = ResponseCache(settings, store, index, verifier=verifier)
    duplicates: dict[str, set[str]] = defaultdict(set)
    different: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        (duplicates if p.label else different)[p.b].add(p.a)
    response: dict[str, Any] = {"choices": []}
    for i, a in enumerate(unique_a):
        key = RequestKey(f"a{i}", "calibration", a)
        vector = texts[a] if verifier.needs_vectors else None
        entry = Entry(response, a, None, None, time.time(), vector=vector)
        await store.set(key.exact, entry.to_bytes(), 86400)
        index.add_now(key.namespace, key.exact, texts[a])  # bulk load: no loop to keep free
    stored = {normalise(a) for a in unique_a}
    out = []
    for j, b in enumerate(dict.fromkeys(p.b for p in pairs)):
        started = time.perf_counter()
        found = await cache.candidates(RequestKey(f"b{j}", "calibration", b), texts[b], floor)
        pick(found, floor, verifier.min_score)  # what a request pays: lookup and decision
        elapsed = (time.perf_counter() - started) * 1000

        def status(a: str, b: str = b) -> Status:
            if a in duplicates.get(b, ()) or normalise(a) == normalise(b):
                return Status.RIGHT
            return Status.WRONG if a in different.get(b, ()) else Status.UNJUDGED

        options = tuple(Option(c.similarity, c.verdict, status(c.entry.query)) for c in found.found)
        own = normalise(b) in stored
        out.append(
            Trial(
                bool(duplicates.get(b)) or own,
                options,
                elapsed,
                bool(duplicates.get(b)) and not own,
            )
        )
    return out


def gather(
    pairs: Sequence[Pair],
    texts: dict[str, Vectors],
    settings: CacheSettings,
    verifier: CandidateVerifier,
    floor: float,
) -> Evidence:
    trials = asyncio.run(simulate(pairs, texts, settings, verifier, floor))
    return Evidence(trials, score_pairs(pairs, texts, verifier))


def cross_validated(
    pairs: Sequence[Pair],
    texts: dict[str, Vectors],
    settings: CacheSettings,
    verifier_for: Callable[[list[Pair]], CandidateVerifier],
    floor: float,
    folds: int,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _: None,
) -> Evidence:
    """K question-disjoint folds: a verifier from ``verifier_for(the other folds' pairs)``,
    a cache holding only this fold's ``text_a``, looked up with this fold's ``text_b``."""
    fold_of = question_folds(pairs, folds, seed)
    evidence = Evidence([], [])
    for k in range(folds):
        train = [p for p, f in zip(pairs, fold_of, strict=True) if f != k]
        held_out = [p for p, f in zip(pairs, fold_of, strict=True) if f == k]
        if not held_out:
            continue
        verifier = verifier_for(train)
        evidence = evidence + gather(held_out, texts, settings, verifier, floor)
        progress(f"fold {k + 1}/{folds}: {len(train)} pairs to train, {len(held_out)} held out")
    return evidence


def outcomes(trials: Sequence[Trial], threshold: float, min_score: float) -> np.ndarray:
    """Per trial: the status of the served option, or 2 for no hit."""
    out = np.full(len(trials), 2, dtype=np.int8)
    for i, trial in enumerate(trials):
        for option in trial.options:
            if option.similarity < threshold:
                break
            if passes(option.verdict, min_score):
                out[i] = int(option.status)
                break
    return out


def evaluate(evidence: Evidence, points: Sequence[tuple[float, float]]) -> list[Point]:
    """Every operating point ``(threshold, min_score)``, pairwise and simulated."""
    labels = np.array([s.label for s in evidence.scored], dtype=bool)
    cosine = np.array([s.cosine for s in evidence.scored])
    answerable = sum(t.answerable for t in evidence.trials)
    paraphrase = np.array([t.paraphrase for t in evidence.trials], dtype=bool)
    result = []
    for threshold, min_score in points:
        raw = cosine >= threshold
        verified = np.array([passes(s.verdict, min_score) for s in evidence.scored], dtype=bool)
        hit = raw & verified
        served = outcomes(evidence.trials, threshold, min_score)
        hits = int((served != 2).sum())
        right = int((served == Status.RIGHT).sum())
        wrong = int((served == Status.WRONG).sum())
        result.append(
            Point(
                threshold=float(threshold),
                min_score=float(min_score),
                pairwise_precision=_ratio(labels[hit].sum(), hit.sum()),
                pairwise_recall=_ratio(labels[hit].sum(), labels.sum()),
                raw_precision=_ratio(labels[raw].sum(), raw.sum()),
                raw_recall=_ratio(labels[raw].sum(), labels.sum()),
                sim_hit_rate=_ratio(hits, len(evidence.trials)),
                sim_precision=_ratio(right, right + wrong),
                sim_recall=_ratio(right, answerable),
                sim_precision_lower_bound=_ratio(right, hits),
                sim_unjudged_share=_ratio(hits - right - wrong, hits),
                paraphrase_served=_ratio(
                    int((served[paraphrase] == Status.RIGHT).sum()), int(paraphrase.sum())
                ),
            )
        )
    return result


def confidence(
    evidence: Evidence, point: Point, resamples: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """Bootstrap 95% intervals of the simulation's precision, recall, hit rate and share of
    paraphrases served (looked-up questions resampled with replacement; seeded)."""
    served = outcomes(evidence.trials, point.threshold, point.min_score)
    right = (served == Status.RIGHT).astype(float)
    judged = right + (served == Status.WRONG)
    ones = np.ones(len(served))
    answerable = np.array([t.answerable for t in evidence.trials], dtype=float)
    paraphrase = np.array([t.paraphrase for t in evidence.trials], dtype=float)
    found = intervals(
        {
            "sim_precision": (right, judged),
            "sim_recall": (right, answerable),
            "sim_hit_rate": ((served != 2).astype(float), ones),
            "paraphrase_served": (right * paraphrase, paraphrase),
        },
        resamples,
        seed,
    )
    return {name: [round(low, 4), round(high, 4)] for name, (low, high) in found.items()}


def lookup_ms(evidence: Evidence) -> dict[str, float]:
    times = np.array([t.lookup_ms for t in evidence.trials])
    if not len(times):
        return {}
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


def recommend(points: Sequence[Point], target_precision: float) -> Point | None:
    """The point with the most correct hits whose cache precision meets the target
    (ties: the lowest threshold, then the lowest minimum score)."""
    ok = [p for p in points if p.sim_precision >= target_precision and p.sim_hit_rate > 0]
    if not ok:
        return None
    return max(ok, key=lambda p: (p.sim_recall, p.sim_hit_rate, -p.threshold, -p.min_score))


def table(points: Sequence[Point]) -> str:
    rows = [
        "threshold  min score  pair P  pair R  (no verif. P   R)   sim hit  sim P  sim R"
        "  (sim P lower bound, unjudged)"
    ]
    for p in points:
        rows.append(
            f"{p.threshold:9.2f}  {p.min_score:9.2f}  {p.pairwise_precision:6.3f}"
            f"  {p.pairwise_recall:6.3f}  ({p.raw_precision:6.3f} {p.raw_recall:6.3f})"
            f"   {p.sim_hit_rate:7.3f}  {p.sim_precision:5.3f}  {p.sim_recall:5.3f}"
            f"  ({p.sim_precision_lower_bound:5.3f}, {p.sim_unjudged_share:5.3f})"
        )
    return "\n".join(rows)


def run(
    pairs: Sequence[Pair],
    encode: Encode,
    settings: CacheSettings,
    points: Sequence[tuple[float, float]],
    verifier: CandidateVerifier,
) -> list[Point]:
    """Embed every text once, then score pairwise and through the cache simulation."""
    texts = embed(pairs, encode)
    floor = min(t for t, _ in points)
    return evaluate(gather(pairs, texts, settings, verifier, floor), points)


def write_json(path: Path, chosen: Point, points: Sequence[Point], extra: dict[str, Any]) -> None:
    body = {**asdict(chosen), **extra, "grid": [asdict(p) for p in points]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
