"""Measure the semantic cache on labelled question pairs and pick its threshold.

Two views of the same data (``text_a, text_b, label``; 1 = same question):

- pairwise: is ``text_b`` served ``text_a``'s answer (similarity >= threshold and
  verification passed)?
- cache simulation: every ``text_a`` is stored in a real ``ResponseCache``
  (memory store + HNSW index, the gateway's own code), every ``text_b`` is looked
  up through ``ResponseCache.semantic``. A hit on the same text, or on an entry
  labelled a duplicate of the query, is right; on an entry labelled different, it
  is wrong. ``sim_precision`` is over those judged hits; a hit on a pair with no
  label may be either, and ``sim_precision_lower_bound`` counts all of those wrong.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extensions.cache.keys import RequestKey
from extensions.cache.service import Entry, ResponseCache
from extensions.cache.settings import CacheSettings, Verification
from extensions.cache.store import MemoryStore
from extensions.cache.vectors import MemoryVectorIndex
from extensions.cache.verify import features, same_question
from extensions.embedding.encoder import Vectors

GRID = tuple(round(0.70 + 0.01 * i, 2) for i in range(30))  # 0.70 .. 0.99


class PairsError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    label: int


def read_pairs(path: Path) -> list[Pair]:
    """TSV or CSV with a header naming ``text_a``, ``text_b`` and ``label``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PairsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    if delimiter == "\t":  # QQP-style TSV: quotes are part of the text
        reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.DictReader(text.splitlines())
    missing = {"text_a", "text_b", "label"} - set(reader.fieldnames or [])
    if missing:
        raise PairsError(f"{path}: missing columns {sorted(missing)} (need text_a, text_b, label)")
    pairs = []
    for n, row in enumerate(reader, start=2):
        label = (row.get("label") or "").strip()
        if label not in {"0", "1"}:
            raise PairsError(f"{path}, line {n}: label must be 0 or 1 (got {label!r})")
        if row["text_a"] and row["text_b"]:
            pairs.append(Pair(row["text_a"], row["text_b"], int(label)))
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    return pairs


@dataclass(frozen=True)
class Point:
    threshold: float
    pairwise_precision: float
    pairwise_recall: float
    raw_precision: float  # without verification
    raw_recall: float
    sim_hit_rate: float
    sim_precision: float
    sim_recall: float
    sim_precision_lower_bound: float
    sim_unjudged_share: float  # hits on pairs with no label


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def pairwise_scores(
    pairs: Sequence[Pair], vec_a: Vectors, vec_b: Vectors, checks: Verification
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of each pair, and whether verification lets the pair through."""
    cos = np.einsum("ij,ij->i", vec_a, vec_b)
    verified = np.array([same_question(features(p.b), features(p.a), checks) is None
                         for p in pairs])  # fmt: skip
    return cos, verified


async def simulate(
    pairs: Sequence[Pair], texts: dict[str, Vectors], settings: CacheSettings
) -> list[tuple[str, str | None, float]]:
    """Store every text_a, look up every text_b: (query, served text_a or None, similarity)."""
    unique_a = list(dict.fromkeys(p.a for p in pairs))
    dim = len(next(iter(texts.values())))
    store = MemoryStore(len(unique_a) + 1)
    index = MemoryVectorIndex(dim, len(unique_a) + 1)
    cache = ResponseCache(settings, store, index)
    response: dict[str, Any] = {"choices": []}
    for i, a in enumerate(unique_a):
        key = RequestKey(f"a{i}", "calibration", a)
        entry = Entry(response, a, None, None, time.time())
        await store.set(key.exact, entry.to_bytes(), 86400)
        index.add_now(key.namespace, key.exact, texts[a])  # bulk load: no loop to keep free
    out = []
    for j, b in enumerate(dict.fromkeys(p.b for p in pairs)):
        match = await cache.semantic(RequestKey(f"b{j}", "calibration", b), texts[b], 0.0)
        served = match.entry.query if match.entry is not None else None
        similarity = match.similarity if served is not None and match.similarity else 0.0
        out.append((b, served, similarity))
    return out


def evaluate(
    pairs: Sequence[Pair],
    cos: np.ndarray,
    verified: np.ndarray,
    simulated: Sequence[tuple[str, str | None, float]],
    thresholds: Sequence[float],
) -> list[Point]:
    labels = np.array([p.label for p in pairs])
    positives = max(int(labels.sum()), 1)
    duplicates: dict[str, set[str]] = defaultdict(set)
    different: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        (duplicates if p.label else different)[p.b].add(p.a)
    stored = {_norm(p.a) for p in pairs}
    # a query can be answered right if a labelled duplicate, or its own text, is stored
    answerable = sum(1 for b, _, _ in simulated if duplicates.get(b) or _norm(b) in stored)

    def right(b: str, a: str) -> bool:
        return a in duplicates.get(b, ()) or _same_text(a, b)

    points = []
    for t in thresholds:
        raw = cos >= t
        hit = raw & verified
        sim_hits = [(b, a) for b, a, s in simulated if a is not None and s >= t]
        correct = sum(1 for b, a in sim_hits if right(b, a))
        wrong = sum(1 for b, a in sim_hits if not right(b, a) and a in different.get(b, ()))
        points.append(Point(
            threshold=float(t),
            pairwise_precision=_ratio(labels[hit].sum(), hit.sum()),
            pairwise_recall=_ratio(labels[hit].sum(), positives),
            raw_precision=_ratio(labels[raw].sum(), raw.sum()),
            raw_recall=_ratio(labels[raw].sum(), positives),
            sim_hit_rate=_ratio(len(sim_hits), len(simulated)),
            sim_precision=_ratio(correct, correct + wrong),
            sim_recall=_ratio(correct, answerable),
            sim_precision_lower_bound=_ratio(correct, len(sim_hits)),
            sim_unjudged_share=_ratio(len(sim_hits) - correct - wrong, len(sim_hits)),
        ))  # fmt: skip
    return points


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _same_text(a: str, b: str) -> bool:
    return _norm(a) == _norm(b)


def recommend(points: Sequence[Point], target_precision: float) -> Point | None:
    """The lowest threshold (most hits) whose cache-simulation precision meets the target."""
    ok = [p for p in points if p.sim_precision >= target_precision and p.sim_hit_rate > 0]
    return min(ok, key=lambda p: p.threshold) if ok else None


def table(points: Sequence[Point]) -> str:
    head = ("threshold  pair P  pair R  (no verif. P   R)   sim hit  sim P  sim R"
            "  (sim P lower bound, unjudged)")  # fmt: skip
    rows = [head]
    for p in points:
        rows.append(f"{p.threshold:9.2f}  {p.pairwise_precision:6.3f}  {p.pairwise_recall:6.3f}"
                    f"  ({p.raw_precision:6.3f} {p.raw_recall:6.3f})   {p.sim_hit_rate:7.3f}"
                    f"  {p.sim_precision:5.3f}  {p.sim_recall:5.3f}"
                    f"  ({p.sim_precision_lower_bound:5.3f},"
                    f" {p.sim_unjudged_share:5.3f})")  # fmt: skip
    return "\n".join(rows)


def run(
    pairs: Sequence[Pair],
    encode: Any,
    settings: CacheSettings,
    thresholds: Sequence[float],
) -> list[Point]:
    """Embed every text once, then score pairwise and through the cache simulation."""
    unique = list(dict.fromkeys([p.a for p in pairs] + [p.b for p in pairs]))
    vectors = encode(unique)
    texts = dict(zip(unique, vectors, strict=True))
    vec_a = np.stack([texts[p.a] for p in pairs])
    vec_b = np.stack([texts[p.b] for p in pairs])
    cos, verified = pairwise_scores(pairs, vec_a, vec_b, settings.semantic.verification)
    simulated = asyncio.run(simulate(pairs, texts, settings))
    return evaluate(pairs, cos, verified, simulated, thresholds)


def write_json(path: Path, chosen: Point, points: Sequence[Point], extra: dict[str, Any]) -> None:
    body = {**chosen.__dict__, **extra, "grid": [p.__dict__ for p in points]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
