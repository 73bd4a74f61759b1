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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from extensions.router.background import corpus_lines, far_enough
from extensions.router.calibration import out_of_fold_probabilities
from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Matrix,
    Thresholds,
    fit_thresholds,
    train_head,
)
from extensions.router.decide import DEFAULT_INTENT
from extensions.router.settings import BackgroundCorpus, Calibration, Router
from extensions.router.settings import Thresholds as ThresholdSettings

EncodeSync = Callable[[list[str]], Matrix]
HOLDOUT_SHARE = 0.2
CACHE_FORMAT = 4  # bump when what is cached changes
BACKGROUND_SOURCE = "background"
logger = logging.getLogger("gateway.router")


@dataclass(frozen=True)
class Background:
    """Generic off-topic lines added to the ``oos`` class, minus those near an intent."""

    texts: tuple[str, ...] = ()
    max_similarity: float = 0.6

    @classmethod
    def from_settings(cls, settings: BackgroundCorpus) -> Background:
        if not settings.enabled:
            return cls()
        return cls(tuple(corpus_lines()), settings.max_similarity)


NO_BACKGROUND = Background()


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str = ""  # the file split it came from, for per-source figures


@dataclass(frozen=True)
class TrainedClassifier:
    head: Head
    thresholds: Thresholds
    n_background: int = 0  # background lines in the oos class


def read_examples_file(path: Path) -> list[str]:
    """One example per line; blank lines and lines starting with '#' are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def router_examples(router: Router, base_dir: Path) -> list[Example]:
    """Every labelled example of a router: intents, ``default`` and out-of-scope."""
    out: list[Example] = []
    for intent in router.intents:
        texts = list(intent.examples)
        if intent.examples_file is not None:
            texts += read_examples_file(base_dir / intent.examples_file)
        out += [Example(t, intent.name) for t in texts]
    out += [Example(t, DEFAULT_INTENT) for t in router.default.examples]
    out += [Example(t, OOS_LABEL) for t in router.out_of_scope.examples]
    return out


def held_out_mask(labels: Sequence[str], share: float, seed: int = 0) -> npt.NDArray[np.bool_]:
    """A stratified ``share`` of each label (at least one, if the label has two or more)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    mask = np.zeros(len(labels), dtype=bool)
    for label in sorted(by_label):
        rows = by_label[label]
        order = rng.permutation(len(rows))
        n_held = max(round(len(rows) * share), 1) if len(rows) > 1 else 0
        mask[[rows[i] for i in order[:n_held]]] = True
    return mask


def stratified_split(
    examples: Sequence[Example], share: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out ``share`` of each label (at least one, if the label has two or more)."""
    mask = held_out_mask([e.label for e in examples], share, seed)
    return (
        [e for e, m in zip(examples, mask, strict=True) if not m],
        [e for e, m in zip(examples, mask, strict=True) if m],
    )


def calibration_mask(examples: Sequence[Example]) -> npt.NDArray[np.bool_]:
    """The examples that ``gateway finetune-router`` keeps unseen, for fitting thresholds.

    A stratified ``HOLDOUT_SHARE`` of the router's own examples; background lines by a
    hash of their text, so that which lines an encoder filters out changes nothing.
    """
    own = np.array([e.source != BACKGROUND_SOURCE for e in examples], dtype=bool)
    mask = np.zeros(len(examples), dtype=bool)
    mask[own] = held_out_mask(
        [e.label for e in examples if e.source != BACKGROUND_SOURCE], HOLDOUT_SHARE
    )
    for i in np.flatnonzero(~own):
        digest = hashlib.sha256(examples[int(i)].text.encode("utf-8")).digest()
        mask[i] = digest[0] % round(1 / HOLDOUT_SHARE) == 0
    return mask


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


def with_background(
    examples: Sequence[Example], x: Matrix, encode: EncodeSync, background: Background
) -> tuple[list[Example], Matrix]:
    """``examples`` plus the background lines far enough from every in-scope example."""
    if not background.texts:
        return list(examples), x
    bx = encode(list(background.texts))
    in_scope = np.array([e.label != OOS_LABEL for e in examples], dtype=bool)
    keep = far_enough(bx, x[in_scope], background.max_similarity)
    extra = [
        Example(t, OOS_LABEL, BACKGROUND_SOURCE)
        for t, k in zip(background.texts, keep, strict=True)
        if k
    ]
    return list(examples) + extra, np.concatenate([x, bx[keep]])


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
