"""The learned verifier: features, the numpy model file, verdicts, and the lookup around it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from extensions.cache import pair_model
from extensions.cache.folds import question_folds
from extensions.cache.keys import RequestKey
from extensions.cache.pair_features import FEATURES_VERSION, LEXICAL_NAMES, Idf, pair_vector, side
from extensions.cache.pair_model import PairModel, PairModelError
from extensions.cache.pairs import Pair
from extensions.cache.service import Entry, ResponseCache
from extensions.cache.settings import (
    CacheSettings,
    SemanticCache,
    Verification,
    Verifier,
    VerifierKind,
)
from extensions.cache.store import MemoryStore
from extensions.cache.train_verifier import fit
from extensions.cache.vectors import MemoryVectorIndex
from extensions.cache.verifiers import LearnedVerifier, Question, Verdict, build_verifier

pytestmark = pytest.mark.unit
DIM = 8


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def tiny_model(with_embeddings: bool = True) -> PairModel:
    """A model trained on a toy rule: pairs sharing their last word are the same question
    (every text has the same vector, ``unit(0)``)."""
    words = ["paris", "rome", "oslo", "lima", "kiev", "bern", "riga", "baku"]
    pairs, vectors = [], {}
    for w in words:
        for x in words:
            a, b = f"tell me about {w}", f"what about {x}"
            vectors[a], vectors[b] = unit(0), unit(0)  # the words decide, not the vectors
            pairs.append(Pair(a, b, int(w == x)))
    pairs = (pairs + [p for p in pairs if p.label] * 6) * 20  # balanced, enough steps to learn
    return fit(pairs, vectors, {"trained_on": "toy"}, with_embeddings=with_embeddings, hidden=8)


def test_features_are_symmetric_and_named() -> None:
    idf = Idf.fit(["what is the capital of France", "how do I learn Python", "capital cities"])
    a, b = side("What is the capital of France?"), side("capital of France, what is it")
    u, v = unit(1), unit(2)
    ab, ba = pair_vector(a, b, u, v, idf, True), pair_vector(b, a, v, u, idf, True)
    assert np.allclose(ab, ba)
    assert len(pair_vector(a, b, u, v, idf, False)) == len(LEXICAL_NAMES)
    assert len(ab) == len(LEXICAL_NAMES) + 2 * DIM


def test_rare_unshared_words_weigh_more() -> None:
    idf = Idf.fit(["best way", "good way"] * 50 + ["youtube frustrations", "education"] * 2)
    common = pair_vector(
        side("best way to learn"), side("good way to learn"), unit(1), unit(1), idf, False
    )
    rare = pair_vector(
        side("youtube frustrations"), side("education frustrations"), unit(1), unit(1), idf, False
    )
    top = LEXICAL_NAMES.index("idf_only_top1")
    assert rare[top] > common[top]


def test_model_file_round_trip_and_numpy_matches_training(tmp_path: Path) -> None:
    model = tiny_model()
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = pair_model.load(str(path))
    assert loaded.card["features"] == FEATURES_VERSION and loaded.card["trained_on"] == "toy"
    assert len(loaded.fingerprint) == 16 and loaded.with_embeddings
    row = pair_vector(
        side("tell me about rome"), side("what about rome"), unit(0), unit(0), model.idf, True
    )
    assert loaded.probability(row[None, :])[0] == pytest.approx(
        model.probability(row[None, :])[0], abs=1e-3
    )


def test_model_from_other_feature_layout_is_refused(tmp_path: Path) -> None:
    model = tiny_model(with_embeddings=False)
    old = PairModel(**{**model.__dict__, "card": {**model.card, "features": "pair-features/0"}})
    path = tmp_path / "old.npz"
    old.save(path)
    with pytest.raises(PairModelError, match="retrain it"):
        pair_model.load(str(path))
    with pytest.raises(PairModelError, match="cannot read"):
        pair_model.load(str(tmp_path / "missing.npz"))
    with pytest.raises(PairModelError, match="unknown builtin"):
        pair_model.load("builtin:nope")


def test_learned_verdicts_rules_stay_hard_and_same_text_passes() -> None:
    verifier = LearnedVerifier(tiny_model(), "toy", 0.5, Verification())
    q = Question("what about rome", unit(0))
    same, other, number, no_vector = verifier.verdicts(
        q,
        [
            Question("tell me about rome", unit(0)),
            Question("tell me about oslo", unit(0)),
            Question("what about rome in 2020", unit(0)),
            Question("What about Rome", None),
        ],
    )
    assert same.score > 0.5 > other.score
    assert number == Verdict(0.0, "numbers")
    assert no_vector == Verdict(1.0)  # same text (case and spaces aside)
    (old_entry,) = verifier.verdicts(q, [Question("tell me about oslo", None)])
    assert old_entry == Verdict(1.0)  # stored without its vector: the rules decide


def test_builtin_rules_by_default_and_learned_from_settings(tmp_path: Path) -> None:
    assert (
        build_verifier(SemanticCache(verifier=Verifier(kind=VerifierKind.RULES))).describe()["name"]
        == "rules"
    )
    path = tmp_path / "m.npz"
    tiny_model().save(path)
    learned = build_verifier(SemanticCache(verifier=Verifier(kind="learned", model=str(path))))
    info = learned.describe()
    assert info["name"] == "learned" and info["model"] == str(path) and learned.inference


def test_entry_keeps_its_vector_in_half_precision() -> None:
    vector = unit(3)
    entry = Entry({"choices": []}, "q", None, None, 1.0, 0.0, vector)
    back = Entry.from_bytes(entry.to_bytes())
    assert back is not None and back.vector is not None
    assert np.allclose(back.vector, vector, atol=1e-3)
    plain = Entry.from_bytes(Entry({"choices": []}, "q", None, None, 1.0).to_bytes())
    assert plain is not None and plain.vector is None


async def test_lookup_with_learned_verifier_runs_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    tiny_model().save(path)
    semantic = SemanticCache(
        verifier=Verifier(kind="learned", model=str(path), min_probability=0.5)
    )
    cache = ResponseCache(
        CacheSettings(enabled=True, semantic=semantic), MemoryStore(10), MemoryVectorIndex(DIM, 10)
    )
    stored = RequestKey("k1", "ns", "tell me about rome")
    await cache.put(
        stored, unit(0), Entry({"choices": []}, stored.query, None, None, time.time()), 60
    )
    raw = await cache.store.get("k1")
    assert raw is not None and b'"vec"' in raw  # put() kept the embedding for the verifier
    threads: list[str] = []
    original = cache.verifier.verdicts

    def spy(query: Question, cached: Sequence[Question]) -> list[Verdict]:
        threads.append(threading.current_thread().name)
        return original(query, cached)

    cache.verifier.verdicts = spy  # type: ignore[method-assign]
    hit = await cache.semantic(RequestKey("k2", "ns", "what about rome"), unit(0), 0.9)
    assert hit.entry is not None and hit.score is not None and hit.score > 0.5
    assert threads and threads[0].startswith("cache-verifier")
    miss = await cache.semantic(RequestKey("k3", "ns", "what about oslo"), unit(0), 0.9)
    assert miss.entry is None and miss.rejected_by == "verifier"


def test_question_folds_keep_connected_questions_together() -> None:
    pairs = [
        Pair("A", "b", 1),
        Pair("B ", "c", 0),
        Pair("d", "e", 1),
        Pair("f", "g", 0),
        Pair("x", "y", 1),
        Pair("y", "z", 1),
    ]
    folds = question_folds(pairs, 3, seed=1)
    assert folds[0] == folds[1]  # "b" and "B " are one question
    assert folds[4] == folds[5]
    texts: dict[str, int] = {}
    for p, f in zip(pairs, folds, strict=True):
        for t in (p.a, p.b):
            assert texts.setdefault(" ".join(t.lower().split()), f) == f
    assert question_folds(pairs, 3, seed=1) == folds
