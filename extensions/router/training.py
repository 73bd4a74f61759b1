"""Build a router's classifier from its examples: train the head, fit the thresholds,
and cache both by a hash of the examples, the settings and the encoder.

Thresholds are fitted on probabilities the head gives to examples it was not trained
on: out-of-fold probabilities from a k-fold cross-validation (``calibration``), or a
``validation`` set when one is given (a fine-tuned encoder's held-out examples). The
head that serves is then trained on everything. Lines of the shipped background corpus
(``background``) join the ``oos`` class unless they are close to an in-scope example.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extensions.router.background import NO_BACKGROUND, Background, EncodeSync, with_background
from extensions.router.calibration import (
    HeldOut,
    calibration_mask,
    choose_vote_weight,
    held_out_scores,
    out_of_fold_scores,
)
from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Matrix,
    Thresholds,
    fit_thresholds,
    train_head,
)
from extensions.router.examples import Example
from extensions.router.model import IntentModel, neighbour_scores
from extensions.router.neighbours import Neighbours
from extensions.router.settings import Calibration, NeighbourVote
from extensions.router.settings import Thresholds as ThresholdSettings

CACHE_FORMAT = 6  # bump when what is cached changes
logger = logging.getLogger("gateway.router")
DEFAULT_VOTE = NeighbourVote()


@dataclass(frozen=True)
class TrainedClassifier:
    model: IntentModel
    thresholds: Thresholds
    n_background: int = 0  # background lines in the oos class


def cache_key(
    fingerprint: str,
    examples: Sequence[Example],
    settings: ThresholdSettings,
    validation: Sequence[Example],
    c: float,
    background: Background = NO_BACKGROUND,
    vote: NeighbourVote = DEFAULT_VOTE,
) -> str:
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "encoder": fingerprint,
            "c": c,
            "thresholds": settings.model_dump(mode="json"),
            "neighbours": vote.model_dump(mode="json"),
            "train": [(e.text, e.label) for e in examples],
            "val": [(e.text, e.label) for e in validation],
            "background": [list(background.texts), background.max_similarity],
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _save(path: Path, trained: TrainedClassifier) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    model, t = trained.model, trained.thresholds
    neighbours = model.neighbours
    np.savez(
        tmp,
        weights=model.head.weights,
        bias=model.head.bias,
        labels=np.array(model.head.labels),
        thresholds=np.array(
            [t.min_confidence, t.clarify_margin, t.oos_ratio, t.min_similarity, model.vote_weight]
        ),
        n_background=np.array(trained.n_background),
        vectors=neighbours.vectors if neighbours else np.zeros((0, model.head.weights.shape[1])),
        starts=neighbours.starts if neighbours else np.zeros(0, np.int64),
        vote=np.array(
            [neighbours.k, neighbours.temperature, neighbours.candidates]
            if neighbours
            else [0, 0.0, 0]
        ),
    )
    tmp.replace(path)


def _load(path: Path) -> TrainedClassifier | None:
    try:
        with np.load(path) as data:
            labels = tuple(str(x) for x in data["labels"])
            head = Head(labels, data["weights"].astype(np.float32), data["bias"].astype(np.float32))
            t = data["thresholds"]
            vote = data["vote"]
            neighbours = (
                Neighbours(
                    data["vectors"].astype(np.float32),
                    data["starts"].astype(np.int64),
                    labels,
                    int(vote[0]),
                    float(vote[1]),
                    int(vote[2]),
                )
                if int(vote[0])
                else None
            )
            thresholds = Thresholds(float(t[0]), float(t[1]), float(t[2]), float(t[3]))
            model = IntentModel(head, neighbours, float(t[4]))
            return TrainedClassifier(model, thresholds, int(data["n_background"]))
    except (OSError, KeyError, ValueError, IndexError):  # unreadable or older format: retrain
        return None


def _split_for_holdout(
    x: Matrix, labels: list[str], train: Sequence[Example]
) -> tuple[Matrix, list[str], Matrix, list[str]]:
    """The share a fine-tuned encoder kept unseen (``calibration_mask``) and the rest."""
    held = calibration_mask(train)
    fit = [lb for lb, h in zip(labels, held, strict=True) if not h]
    unseen = [lb for lb, h in zip(labels, held, strict=True) if h]
    return x[~held], fit, x[held], unseen


def _in_sample(model: IntentModel, x: Matrix) -> HeldOut:
    """The model's scores of its own examples, as if they were held out."""
    probs = model.head.probabilities(x)
    votes, nearest = neighbour_scores(model.neighbours, x, probs)
    return HeldOut(probs, votes, nearest, np.ones(len(x), dtype=bool))


def train_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    settings: ThresholdSettings,
    validation: Sequence[Example] = (),
    c: float = 20.0,
    background: Background = NO_BACKGROUND,
    vote: NeighbourVote = DEFAULT_VOTE,
) -> TrainedClassifier:
    """Train on ``examples`` (+ background, + ``validation``); fit the vote's share and the
    thresholds on ``validation``, the held-out share, or out of fold."""
    x = encode([e.text for e in examples])
    train, x = with_background(examples, x, encode, background)
    labels = [e.label for e in train]
    neighbour_vote = vote if vote.enabled else None
    x_all, labels_all = x, labels
    if validation:
        x_val = encode([e.text for e in validation])
        x_all, labels_all = np.concatenate([x, x_val]), labels + [e.label for e in validation]
    classes = tuple(sorted(set(labels_all)))
    if validation or settings.calibration is Calibration.HOLDOUT:
        if validation:
            x_fit, fit_labels, x_held, held_labels = x, labels, x_val, labels_all[len(labels) :]
        else:
            x_fit, fit_labels, x_held, held_labels = _split_for_holdout(x, labels, train)
        held = held_out_scores(x_fit, fit_labels, x_held, held_labels, classes, c, neighbour_vote)
    else:
        held_labels = labels
        held = out_of_fold_scores(x, labels, classes, settings.cv_folds, c, neighbour_vote)
    head = train_head(x_all, labels_all, c=c)
    neighbours = (
        Neighbours.from_settings(x_all, labels_all, head.labels, neighbour_vote)
        if neighbour_vote
        else None
    )
    if all(lb == OOS_LABEL for lb, s in zip(held_labels, held.scored, strict=True) if s):
        # too few examples to cross-validate (e.g. one per intent): the model's own
        # scores, optimistic; a router this small is checked by hand anyway
        logger.warning("router examples too few for cross-validation: thresholds fitted in-sample")
        held, held_labels = _in_sample(IntentModel(head, neighbours), x_all), labels_all
    weight = choose_vote_weight(held, held_labels, classes) if neighbours else 0.0
    fit_labels = [lb for lb, s in zip(held_labels, held.scored, strict=True) if s]
    fitted = fit_thresholds(
        head,
        held.blended(weight)[held.scored],
        fit_labels,
        settings.target_false_refusal,
        settings.target_clarify_rate,
        held.nearest[held.scored] if neighbours else None,
    )
    pinned = settings.out_of_scope != "auto"
    thresholds = Thresholds(
        min_confidence=float(settings.out_of_scope) if pinned else fitted.min_confidence,
        clarify_margin=fitted.clarify_margin
        if settings.clarify_margin == "auto"
        else float(settings.clarify_margin),
        oos_ratio=1.0 if pinned else fitted.oos_ratio,
        min_similarity=-1.0 if pinned else fitted.min_similarity,
    )
    if weight == 0.0 and thresholds.min_similarity == -1.0:
        neighbours = None  # neither the vote nor the floor is used: keep no examples
    model = IntentModel(head, neighbours, weight)
    return TrainedClassifier(model, thresholds, len(train) - len(examples))


def cached_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    fingerprint: str,
    settings: ThresholdSettings,
    cache_dir: Path,
    validation: Sequence[Example] = (),
    c: float = 20.0,
    background: Background = NO_BACKGROUND,
    vote: NeighbourVote = DEFAULT_VOTE,
) -> TrainedClassifier:
    """``train_classifier`` with its result cached on disk by a hash of every input."""
    key = cache_key(fingerprint, examples, settings, validation, c, background, vote)
    path = cache_dir / "heads" / f"{key}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    trained = train_classifier(examples, encode, settings, validation, c, background, vote)
    _save(path, trained)
    return trained
