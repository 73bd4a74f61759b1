"""Verifiers: does a cached question above the similarity threshold ask the same thing?

``RulesVerifier`` runs the checks of ``verify`` (numbers, negation, names, name
order). ``LearnedVerifier`` scores each candidate with a small pair classifier
(``pair_model``, numpy only) and also applies the enabled checks as hard
filters. ``CrossEncoderVerifier`` reads the most similar ``top`` surviving pairs with a
fine-tuned BERT (``cross_encoder``). All give one ``Verdict`` per candidate;
``passes`` turns a verdict into yes or no for a minimum score, so a calibration can
sweep that minimum without scoring twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from extensions.cache import pair_model
from extensions.cache.cross_encoder import CrossEncoder, load_cross_encoder
from extensions.cache.pair_features import LEXICAL_NAMES, pair_vector, side
from extensions.cache.settings import SemanticCache, Verification, VerifierKind
from extensions.cache.verify import features, same_question
from extensions.embedding.encoder import Vectors
from extensions.embedding.settings import Embedding

LOW_SCORE = "verifier"  # rejected_by when a learned verifier's score is too low
NOT_READ = "verifier_top"  # rejected_by: a cross-encoder did not read it (past ``top``)
TOO_LONG = "verifier_window"  # rejected_by: the pair is longer than a cross-encoder reads


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    vector: Vectors | None  # L2-normalised; None when an entry was stored without it


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float  # P(same question); rules: 1.0 passed, 0.0 failed
    failed: str | None = None  # the hard check that refused the candidate


def passes(verdict: Verdict, min_score: float) -> bool:
    return verdict.failed is None and verdict.score >= min_score


def rejection(verdict: Verdict) -> str:
    return verdict.failed or LOW_SCORE


class CandidateVerifier(Protocol):
    min_score: float
    needs_vectors: bool  # store each entry's embedding with its payload
    inference: bool  # runs a model: keep it off the event loop

    def describe(self) -> dict[str, Any]: ...

    def verdicts(self, query: Question, cached: Sequence[Question]) -> list[Verdict]: ...


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class RulesVerifier:
    min_score = 0.5
    needs_vectors = False
    inference = False

    def __init__(self, checks: Verification) -> None:
        self.checks = checks

    def describe(self) -> dict[str, Any]:
        return {"name": "rules", "checks": self.checks.model_dump()}

    def verdicts(self, query: Question, cached: Sequence[Question]) -> list[Verdict]:
        mine = features(query.text)
        out = []
        for c in cached:
            failed = same_question(mine, features(c.text), self.checks)
            out.append(Verdict(0.0 if failed else 1.0, failed))
        return out


class LearnedVerifier:
    needs_vectors = True
    inference = True

    def __init__(
        self, model: pair_model.PairModel, name: str, min_score: float, checks: Verification
    ) -> None:
        self.model = model
        self.name = name
        self.min_score = min_score
        self.rules = RulesVerifier(checks)
        self.needs_vectors = model.with_embeddings
        # the embedding size the model was trained on (None: it reads no embeddings)
        self.dim = (len(model.mean) - len(LEXICAL_NAMES)) // 2 if model.with_embeddings else None

    def _fits(self, *vectors: Vectors) -> bool:
        return self.dim is None or all(v.size == self.dim for v in vectors)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "learned",
            "model": self.name,
            "sha256_16": self.model.fingerprint,
            "card": self.model.card,
            "min_probability": self.min_score,
            "checks": self.rules.checks.model_dump(),
        }

    def verdicts(self, query: Question, cached: Sequence[Question]) -> list[Verdict]:
        ruled = self.rules.verdicts(query, cached)
        out = list(ruled)
        mine = side(query.text)
        rows, where = [], []
        for i, (c, rule) in enumerate(zip(cached, ruled, strict=True)):
            if rule.failed is not None:
                continue
            if _same_text(query.text, c.text):
                out[i] = Verdict(1.0)
            elif query.vector is None or c.vector is None or not self._fits(c.vector, query.vector):
                continue  # stored without its embedding, or another encoder's: the rules decide
            else:
                where.append(i)
                row = pair_vector(
                    mine,
                    side(c.text),
                    query.vector,
                    c.vector,
                    self.model.idf,
                    self.model.with_embeddings,
                )
                rows.append(row)
        if rows:
            for i, p in zip(where, self.model.probability(np.stack(rows)), strict=True):
                out[i] = Verdict(float(p))
        return out


class CrossEncoderVerifier:
    """The checks as hard filters, then one batched cross-encoder pass over the ``top`` most
    similar candidates that passed them (``cached`` comes most similar first)."""

    needs_vectors = False
    inference = True

    def __init__(
        self, model: CrossEncoder, name: str, min_score: float, top: int, checks: Verification
    ) -> None:
        self.model = model
        self.name = name
        self.min_score = min_score
        self.top = top
        self.rules = RulesVerifier(checks)

    def describe(self) -> dict[str, Any]:
        return {
            "name": "cross-encoder",
            "model": self.name,
            "card": self.model.card,
            "min_probability": self.min_score,
            "top": self.top,
            "checks": self.rules.checks.model_dump(),
        }

    def verdicts(self, query: Question, cached: Sequence[Question]) -> list[Verdict]:
        out = self.rules.verdicts(query, cached)
        where: list[int] = []
        for i, (c, rule) in enumerate(zip(cached, out, strict=True)):
            if rule.failed is not None:
                continue
            if _same_text(query.text, c.text):
                out[i] = Verdict(1.0)
            elif len(where) < self.top:
                where.append(i)
            else:
                out[i] = Verdict(0.0, NOT_READ)
        if where:
            scores = self.model([(query.text, cached[i].text) for i in where])
            for i, p in zip(where, scores, strict=True):
                out[i] = Verdict(0.0, TOO_LONG) if p is None else Verdict(p)
        return out


def build_verifier(
    settings: SemanticCache, embedding: Embedding | None = None
) -> CandidateVerifier:
    """The configured verifier; a model is read from disk here (start-up).

    With ``embedding`` (gateway.yaml's), a learned model trained on another encoder's
    embeddings is refused (its embedding features would mean nothing), and a
    cross-encoder's graph is cached in its ``cache_dir``.
    """
    kind = settings.verifier.kind
    if kind is VerifierKind.CROSS_ENCODER:
        where = embedding or Embedding()
        return CrossEncoderVerifier(
            load_cross_encoder(settings.verifier.model, where, settings.verifier.quantize),
            settings.verifier.model,
            settings.verifier.min_probability,
            settings.verifier.top,
            settings.verification,
        )
    if kind is VerifierKind.LEARNED:
        model = pair_model.load(settings.verifier.model)
        trained = model.card.get("encoder")
        encoder = None if embedding is None else embedding.model
        if encoder is not None and model.with_embeddings and trained not in (None, encoder):
            raise pair_model.PairModelError(
                f"cache.semantic.verifier.model {settings.verifier.model!r} was trained on "
                f"{trained} embeddings, the gateway encodes with {encoder}: retrain it "
                "(gateway train-cache-verifier) or use kind: rules"
            )
        return LearnedVerifier(
            model, settings.verifier.model, settings.verifier.min_probability, settings.verification
        )
    return RulesVerifier(settings.verification)
