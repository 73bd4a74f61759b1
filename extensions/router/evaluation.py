"""``gateway eval-router``: build a router from labelled data exactly as the gateway
does (same encoder, head, background corpus, threshold fitting), then measure it on an
evaluation set that nothing was fitted on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from extensions.embedding.encoder import BatchingEncoder
from extensions.router.background import NO_BACKGROUND, Background
from extensions.router.classifier import OOS_LABEL, Verdict
from extensions.router.examples import Example
from extensions.router.model import classify
from extensions.router.settings import Calibration, NeighbourVote
from extensions.router.settings import Thresholds as ThresholdSettings
from extensions.router.training import DEFAULT_VOTE, TrainedClassifier, train_classifier


@dataclass(frozen=True)
class EvalReport:
    in_scope_accuracy: float
    oos_recall: float | None
    oos_precision: float | None
    oos_recall_by_source: dict[str, float]
    clarify_rate: float
    accuracy_when_answered: float
    top1_accuracy: float  # in-scope queries whose top intent is right, refused or not
    latency_p50_ms: float
    latency_p99_ms: float
    n_train: int
    n_eval_in_scope: int
    n_eval_oos: int
    n_intents: int
    min_confidence: float
    clarify_margin: float
    oos_ratio: float
    min_similarity: float  # -1: the similarity floor refuses nothing
    vote_weight: float  # the neighbours' share of the probabilities; 0 without
    calibration: str  # what the thresholds were fitted on
    n_background: int  # background lines added to the oos class
    train_seconds: float
    encoder: str

    def table(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        rows = [
            ("in-scope accuracy", pct(self.in_scope_accuracy)),
            ("out-of-scope recall", pct(self.oos_recall)),
            ("out-of-scope precision", pct(self.oos_precision)),
            *((f"  recall on {k}", pct(v)) for k, v in sorted(self.oos_recall_by_source.items())),
            ("clarification rate", pct(self.clarify_rate)),
            ("accuracy when answered", pct(self.accuracy_when_answered)),
            ("top-1 accuracy, no refusal", pct(self.top1_accuracy)),
            ("classification p50", f"{self.latency_p50_ms:.2f} ms"),
            ("classification p99", f"{self.latency_p99_ms:.2f} ms"),
            (
                "intents / train / eval",
                f"{self.n_intents} / {self.n_train} / {self.n_eval_in_scope}+{self.n_eval_oos} oos",
            ),
            (
                "thresholds",
                f"confidence {self.min_confidence:.3f}, "
                f"margin {self.clarify_margin:.3f}, oos ratio {self.oos_ratio:g}, "
                f"similarity {self.min_similarity:.3f}",
            ),
            ("neighbours' share", f"{self.vote_weight:g}"),
            ("fitted on", f"{self.calibration}; {self.n_background} background lines"),
            ("training", f"{self.train_seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


async def _classify_each(
    encoder: BatchingEncoder, trained: TrainedClassifier, texts: Sequence[str], progress: bool
) -> tuple[list[Verdict], list[str | None], list[float]]:
    """One query at a time through the request-time path, timing each."""
    from tqdm import tqdm

    verdicts: list[Verdict] = []
    intents: list[str | None] = []
    latencies: list[float] = []
    for text in tqdm(texts, desc="classifying", unit="q", disable=not progress):
        started = time.perf_counter()
        vectors = await encoder.encode([text])
        (c,) = classify(trained.model, trained.model.scores(vectors), trained.thresholds)
        latencies.append((time.perf_counter() - started) * 1000)
        verdicts.append(c.verdict)
        intents.append(c.intent)
    return verdicts, intents, latencies


def evaluate(
    encoder: BatchingEncoder,
    train: Sequence[Example],
    evaluation: Sequence[Example],
    validation: Sequence[Example] = (),
    settings: ThresholdSettings | None = None,
    progress: bool = True,
    background: Background = NO_BACKGROUND,
    vote: NeighbourVote = DEFAULT_VOTE,
) -> EvalReport:
    settings = settings or ThresholdSettings()
    started = time.perf_counter()
    trained = train_classifier(
        train, encoder.encode_sync, settings, validation, background=background, vote=vote
    )
    train_s = time.perf_counter() - started
    texts = [e.text for e in evaluation]
    verdicts, intents, latencies = asyncio.run(_classify_each(encoder, trained, texts, progress))
    y = np.array([e.label for e in evaluation])
    is_oos = y == OOS_LABEL
    refused = np.array([v is Verdict.OUT_OF_SCOPE for v in verdicts])
    clarified = np.array([v is Verdict.AMBIGUOUS for v in verdicts])
    top1 = np.array([p == t for p, t in zip(intents, y, strict=True)])
    correct = top1 & ~refused
    answered = ~is_oos & ~clarified
    sources = np.array([e.source for e in evaluation])
    by_source = {
        str(src): float(refused[is_oos & (sources == src)].mean())
        for src in sorted(set(sources[is_oos]))
        if src
    }
    return EvalReport(
        in_scope_accuracy=float(correct[~is_oos].mean()) if (~is_oos).any() else 0.0,
        oos_recall=float(refused[is_oos].mean()) if is_oos.any() else None,
        oos_precision=float(is_oos[refused].mean()) if refused.any() and is_oos.any() else None,
        oos_recall_by_source=by_source,
        clarify_rate=float(clarified.mean()),
        accuracy_when_answered=float(correct[answered].mean()) if answered.any() else 0.0,
        top1_accuracy=float(top1[~is_oos].mean()) if (~is_oos).any() else 0.0,
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p99_ms=float(np.percentile(latencies, 99)),
        n_train=len(train),
        n_eval_in_scope=int((~is_oos).sum()),
        n_eval_oos=int(is_oos.sum()),
        n_intents=len({e.label for e in train if e.label != OOS_LABEL}),
        min_confidence=trained.thresholds.min_confidence,
        clarify_margin=trained.thresholds.clarify_margin,
        oos_ratio=trained.thresholds.oos_ratio,
        min_similarity=trained.thresholds.min_similarity,
        vote_weight=trained.model.vote_weight,
        calibration="validation set"
        if validation
        else (
            f"{settings.cv_folds}-fold cross-validation"
            if settings.calibration is Calibration.CROSS_VALIDATION
            else "held-out share of the examples (unseen by a fine-tuned encoder)"
        ),
        n_background=trained.n_background,
        train_seconds=train_s,
        encoder=encoder.fingerprint,
    )


def write_json(report: EvalReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json() + "\n")
