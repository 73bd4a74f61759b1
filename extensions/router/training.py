"""Build a router's classifier from its examples: train the head, fit the thresholds,
and cache both by a hash of the examples, the settings and the encoder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extensions.router.classifier import (
    OOS_LABEL,
    Head,
    Matrix,
    Thresholds,
    fit_thresholds,
    train_head,
)
from extensions.router.decide import DEFAULT_INTENT
from extensions.router.settings import Router
from extensions.router.settings import Thresholds as ThresholdSettings

EncodeSync = Callable[[list[str]], Matrix]
HOLDOUT_SHARE = 0.2
CACHE_FORMAT = 2  # bump when what is cached changes


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str = ""  # the file split it came from, for per-source figures


@dataclass(frozen=True)
class TrainedClassifier:
    head: Head
    thresholds: Thresholds


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


def stratified_split(
    examples: Sequence[Example], share: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Hold out ``share`` of each label (at least one, if the label has two or more)."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[Example]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    train: list[Example] = []
    held: list[Example] = []
    for label in sorted(by_label):
        items = by_label[label]
        order = rng.permutation(len(items))
        n_held = max(round(len(items) * share), 1) if len(items) > 1 else 0
        held += [items[i] for i in order[:n_held]]
        train += [items[i] for i in order[n_held:]]
    return train, held


def cache_key(
    fingerprint: str,
    examples: Sequence[Example],
    settings: ThresholdSettings,
    validation: Sequence[Example],
    c: float,
) -> str:
    payload = json.dumps({
        "format": CACHE_FORMAT, "encoder": fingerprint, "c": c,
        "thresholds": settings.model_dump(mode="json"),
        "train": [(e.text, e.label) for e in examples],
        "val": [(e.text, e.label) for e in validation],
    })  # fmt: skip
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def _save(path: Path, trained: TrainedClassifier) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, weights=trained.head.weights, bias=trained.head.bias,
             labels=np.array(trained.head.labels),
             thresholds=np.array([trained.thresholds.min_confidence,
                                  trained.thresholds.clarify_margin,
                                  trained.thresholds.oos_ratio]))  # fmt: skip
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
            return TrainedClassifier(head, Thresholds(float(t[0]), float(t[1]), float(t[2])))
    except (OSError, KeyError, ValueError, IndexError):  # unreadable or older format: retrain
        return None


def train_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    settings: ThresholdSettings,
    validation: Sequence[Example] = (),
    c: float = 20.0,
) -> TrainedClassifier:
    """Train on ``examples``; fit thresholds on ``validation`` or on a held-out share."""
    fit_on = list(validation)
    train = list(examples)
    if not fit_on:
        train, fit_on = stratified_split(examples, HOLDOUT_SHARE)
    x_train = encode([e.text for e in train])
    head = train_head(x_train, [e.label for e in train], c=c)
    probs = head.probabilities(encode([e.text for e in fit_on]))
    fitted = fit_thresholds(
        head,
        probs,
        [e.label for e in fit_on],
        settings.target_false_refusal,
        settings.target_clarify_rate,
    )
    if not validation:  # retrain on everything now that the thresholds are fitted
        head = train_head(
            np.concatenate([x_train, encode([e.text for e in fit_on])]),
            [e.label for e in train] + [e.label for e in fit_on],
            c=c,
        )
    thresholds = Thresholds(
        min_confidence=fitted.min_confidence if settings.out_of_scope == "auto"
        else float(settings.out_of_scope),
        clarify_margin=fitted.clarify_margin if settings.clarify_margin == "auto"
        else float(settings.clarify_margin),
        oos_ratio=fitted.oos_ratio if settings.out_of_scope == "auto" else 1.0,
    )  # fmt: skip
    return TrainedClassifier(head, thresholds)


def cached_classifier(
    examples: Sequence[Example],
    encode: EncodeSync,
    fingerprint: str,
    settings: ThresholdSettings,
    cache_dir: Path,
    validation: Sequence[Example] = (),
    c: float = 20.0,
) -> TrainedClassifier:
    """``train_classifier`` with its result cached on disk by a hash of every input."""
    path = cache_dir / "heads" / f"{cache_key(fingerprint, examples, settings, validation, c)}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    trained = train_classifier(examples, encode, settings, validation, c)
    _save(path, trained)
    return trained
