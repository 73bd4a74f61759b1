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
from extensions.router.calibration import calibration_mask, out_of_fold_probabilities
from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Thresholds,
    fit_thresholds,
    train_head,
)
from extensions.router.examples import Example
from extensions.router.settings import Calibration
from extensions.router.settings import Thresholds as ThresholdSettings

CACHE_FORMAT = 4  # bump when what is cached changes
logger = logging.getLogger("gateway.router")


@dataclass(frozen=True)
class TrainedClassifier:
    head: Head
    thresholds: Thresholds
    n_background: int = 0  # background lines in the oos class


def cache_key(
    fingerprint: str,
    examples: Sequence[Example],
    settings: ThresholdSettings,
    validation: Sequence[Example],
    c: float,
    background: Background = NO_BACKGROUND,
) -> str:
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "encoder": fingerprint,
            "c": c,
            "thresholds": settings.model_dump(mode="json"),
            "train": [(e.text, e.label) for e in examples],
            "val": [(e.text, e.label) for e in validation],
            "background": [list(background.texts), background.max_similarity],
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _save(path: Path, trained: TrainedClassifier) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        weights=trained.head.weights,
        bias=trained.head.bias,
        labels=np.array(trained.head.labels),
        thresholds=np.array(
            [
                trained.thresholds.min_confidence,
                trained.thresholds.clarify_margin,
                trained.thresholds.oos_ratio,
            ]
        ),
        n_background=np.array(trained.n_background),
    )
    tmp.replace(path)


def _load(path: Path) -> TrainedClassifier | None:
    try:
        with np.load(path) as data:
            head = Head(
                tuple(str(x) for x in data["labels"]),
                data["weights"].astype(np.float32),
                data["bias"].astype(np.float32),
            )
            t = data["thresholds"]
            thresholds = Thresholds(float(t[0]), float(t[1]), float(t[2]))
            return TrainedClassifier(head, thresholds, int(data["n_background"]))
    except (OSError, KeyError, ValueError, IndexError):  # unreadable or older format: retrain
        return None


def train_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    settings: ThresholdSettings,
    validation: Sequence[Example] = (),
    c: float = 20.0,
    background: Background = NO_BACKGROUND,
) -> TrainedClassifier:
    """Train on ``examples`` (+ background); fit thresholds on ``validation`` or out of fold."""
    x = encode([e.text for e in examples])
    train, x = with_background(examples, x, encode, background)
    labels = [e.label for e in train]
    if validation or settings.calibration is Calibration.HOLDOUT:
        if validation:
            x_fit, fit_labels = x, labels
            x_held = encode([e.text for e in validation])
            held_labels = [e.label for e in validation]
        else:
            held = calibration_mask(train)
            x_fit, fit_labels = x[~held], [lb for lb, h in zip(labels, held, strict=True) if not h]
            x_held, held_labels = x[held], [lb for lb, h in zip(labels, held, strict=True) if h]
        first = train_head(x_fit, fit_labels, c=c)
        fitted = fit_thresholds(
            first,
            first.probabilities(x_held),
            held_labels,
            settings.target_false_refusal,
            settings.target_clarify_rate,
        )
        if validation:  # the head that serves learns from both
            x, labels = np.concatenate([x, x_held]), labels + held_labels
        head = train_head(x, labels, c=c)
    else:
        head = train_head(x, labels, c=c)
        probs, scored = out_of_fold_probabilities(x, labels, head.labels, settings.cv_folds, c)
        fit_labels = [label for label, s in zip(labels, scored, strict=True) if s]
        if all(label == OOS_LABEL for label in fit_labels):
            # too few examples to cross-validate (e.g. one per intent): the head's own
            # probabilities, optimistic; a router this small is checked by hand anyway
            logger.warning(
                "router examples too few for cross-validation: thresholds fitted in-sample"
            )
            probs, fit_labels, scored = head.probabilities(x), labels, np.ones(len(labels), bool)
        fitted = fit_thresholds(
            head,
            probs[scored],
            fit_labels,
            settings.target_false_refusal,
            settings.target_clarify_rate,
        )
    thresholds = Thresholds(
        min_confidence=fitted.min_confidence
        if settings.out_of_scope == "auto"
        else float(settings.out_of_scope),
        clarify_margin=fitted.clarify_margin
        if settings.clarify_margin == "auto"
        else float(settings.clarify_margin),
        oos_ratio=fitted.oos_ratio if settings.out_of_scope == "auto" else 1.0,
    )
    return TrainedClassifier(head, thresholds, len(train) - len(examples))


def cached_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    fingerprint: str,
    settings: ThresholdSettings,
    cache_dir: Path,
    validation: Sequence[Example] = (),
    c: float = 20.0,
    background: Background = NO_BACKGROUND,
) -> TrainedClassifier:
    """``train_classifier`` with its result cached on disk by a hash of every input."""
    key = cache_key(fingerprint, examples, settings, validation, c, background)
    path = cache_dir / "heads" / f"{key}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    trained = train_classifier(examples, encode, settings, validation, c, background)
    _save(path, trained)
    return trained
