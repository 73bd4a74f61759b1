"""Request-time routing: encode once (off the loop), classify, decide.

Fail-open: if the encoder fails, the request goes to the router's default model
(counted and logged by the caller), never to an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extensions.embedding.encoder import BatchingEncoder, Vectors
from extensions.router.background import Background
from extensions.router.classifier import (
    Classification,
    Thresholds,
    Verdict,
)
from extensions.router.conversation import find_follow_up, text_to_classify
from extensions.router.decide import DEFAULT_INTENT, Decision, decide
from extensions.router.examples import router_examples
from extensions.router.llm_classifier import LlmIntentClassifier
from extensions.router.model import IntentModel, Scores, classify
from extensions.router.settings import Router
from extensions.router.training import cached_classifier


@dataclass(frozen=True)
class CompiledRouter:
    name: str
    spec: Router
    model: IntentModel
    thresholds: Thresholds

    def classify(self, scores: Scores) -> list[Classification]:
        return classify(self.model, scores, self.thresholds)


@dataclass(frozen=True)
class Routed:
    decision: Decision
    query: str
    embedding: Vectors | None  # reused by the semantic cache: one embedding per request
    classify_ms: float


def resolve_follow_up(
    labels: Sequence[str], probs: Vectors, candidates: Sequence[str]
) -> Classification:
    """Pick among the intents we offered, using the probabilities of the whole exchange."""
    idx = [labels.index(c) for c in candidates if c in labels]
    sub = probs[idx]
    total = float(sub.sum()) or 1.0
    order = np.argsort(-sub)
    ranked = tuple((labels[idx[i]], float(sub[i]) / total) for i in order)
    return Classification(Verdict.IN_SCOPE, ranked[0][0], ranked[0][1], ranked)


NEW_SUBJECT_CONFIDENCE = 0.5
OFF_LOOP_ROWS = 4096  # a query that may scan this many examples is scored on a thread


async def scores_of(model: IntentModel, vectors: Vectors) -> Scores:
    """The model's scores: off the event loop when a query may scan many examples, inline
    otherwise (a few hundred rows cost about as much as the thread hop, ~0.1 ms)."""
    if model.neighbours is not None and model.neighbours.scanned_rows >= OFF_LOOP_ROWS:
        return await asyncio.to_thread(model.scores, vectors)
    return model.scores(vectors)


def changed_subject(
    alone: Classification, whole: Classification, candidates: Sequence[str]
) -> bool:
    """Is the answer to our clarifying question really a new question?

    Yes when it confidently names another intent on its own ("I forgot my password"),
    or when both it and the whole exchange are out of scope ("never mind, the
    weather?"). A bare "my account" is an answer, not a new question.
    """
    if alone.verdict is Verdict.OUT_OF_SCOPE:
        return whole.verdict is Verdict.OUT_OF_SCOPE
    return (
        alone.intent not in candidates
        and alone.intent != DEFAULT_INTENT
        and alone.confidence >= NEW_SUBJECT_CONFIDENCE
    )


class RouterEngine:
    def __init__(
        self,
        routers: Mapping[str, CompiledRouter],
        encoder: BatchingEncoder,
        llm: Mapping[str, LlmIntentClassifier] | None = None,
    ) -> None:
        self._routers = dict(routers)
        self.encoder = encoder
        self._llm = dict(llm or {})

    def handles(self, model: object) -> bool:
        return isinstance(model, str) and model in self._routers

    def router(self, name: str) -> CompiledRouter:
        return self._routers[name]

    async def route(self, name: str, messages: Sequence[Mapping[str, object]]) -> Routed:
        compiled = self._routers[name]
        spec = compiled.spec
        started = time.perf_counter()
        query = text_to_classify(messages, spec.classify)
        if not query.strip():  # nothing to classify (no user text): the default model answers
            default = Classification(Verdict.IN_SCOPE, None, 0.0, ())
            return Routed(decide(spec, default, query), query, None, 0.0)
        follow_up = find_follow_up(messages, spec.clarify.question, spec.intents)
        if follow_up is None:
            text = query
            vectors = await self.encoder.encode([text])
            classification = compiled.classify(await scores_of(compiled.model, vectors))[0]
            llm = self._llm.get(name)
            if llm is not None and llm.wanted(classification):
                classification = await llm.classify(text, classification) or classification
        else:  # the whole exchange, and the answer alone in case it is a new question
            text = f"{follow_up.original_query}\n{follow_up.answer}"
            vectors = await self.encoder.encode([text, follow_up.answer])
            scores = await scores_of(compiled.model, vectors)
            whole, alone = compiled.classify(scores)
            if changed_subject(alone, whole, follow_up.candidates):
                text, classification = follow_up.answer, alone
            else:
                classification = resolve_follow_up(
                    compiled.model.labels, scores.probs[0], follow_up.candidates
                )
        elapsed_ms = (time.perf_counter() - started) * 1000
        return Routed(decide(spec, classification, text), query, vectors[0], elapsed_ms)


def compile_routers(
    routers: Mapping[str, Router], encoder: BatchingEncoder, base_dir: Path, cache_dir: Path
) -> dict[str, CompiledRouter]:
    """Train (or load from cache) every router's classifier; runs at start-up, off any loop."""
    out: dict[str, CompiledRouter] = {}
    for name, spec in routers.items():
        background = Background.from_settings(spec.out_of_scope.background)
        trained = cached_classifier(
            router_examples(spec, base_dir),
            encoder.encode_sync,
            encoder.fingerprint,
            spec.thresholds,
            cache_dir,
            background=background,
            vote=spec.neighbours,
        )
        out[name] = CompiledRouter(name, spec, trained.model, trained.thresholds)
    return out
