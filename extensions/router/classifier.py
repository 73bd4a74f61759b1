"""The trained head over sentence embeddings, and how its thresholds are fitted.

Pure numpy at request time: a linear layer and a softmax over L2-normalised
embeddings. Training uses scikit-learn's logistic regression (multinomial).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]
OOS_LABEL = "oos"


class Verdict(StrEnum):
    IN_SCOPE = "in_scope"
    OUT_OF_SCOPE = "out_of_scope"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Head:
    """Softmax classifier: ``probs = softmax(x @ weights.T + bias)``."""

    labels: tuple[str, ...]
    weights: Matrix  # (k, d)
    bias: Matrix  # (k,)

    def probabilities(self, x: Matrix) -> Matrix:
        logits = x @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits


def train_head(x: Matrix, labels: list[str], c: float = 20.0, seed: int = 0) -> Head:
    """Multinomial logistic regression; ``labels`` may include ``oos`` as a class of its own."""
    from sklearn.linear_model import LogisticRegression

    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError("a classifier needs at least two labels")
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    model.fit(x, labels)
    ordered = tuple(str(label) for label in model.classes_)
    weights = np.asarray(model.coef_, dtype=np.float32)
    bias = np.asarray(model.intercept_, dtype=np.float32)
    if len(ordered) == 2:  # sklearn keeps one row for two classes: softmax([0, z]) = sigmoid(z)
        weights = np.vstack([np.zeros_like(weights), weights])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return Head(labels=ordered, weights=weights, bias=bias)


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float  # below: out of scope
    clarify_margin: float  # top1 - top2 below (among in-scope intents): ambiguous
    oos_ratio: float = 1.0  # the oos class refuses when p(oos) >= oos_ratio * p(top intent)


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    intent: str | None  # top in-scope intent (None when the oos class wins outright)
    confidence: float
    ranked: tuple[tuple[str, float], ...]  # top intents, best first (oos excluded)


def classify_row(head: Head, probs: Matrix, thresholds: Thresholds, top: int = 3) -> Classification:
    """Decide for one row of probabilities."""
    order = np.argsort(-probs)
    ranked = [(head.labels[i], float(probs[i])) for i in order if head.labels[i] != OOS_LABEL]
    top1 = ranked[0] if ranked else (None, 0.0)
    p_oos = float(probs[head.labels.index(OOS_LABEL)]) if OOS_LABEL in head.labels else 0.0
    oos_wins = OOS_LABEL in head.labels and p_oos >= thresholds.oos_ratio * top1[1]
    if oos_wins or top1[1] < thresholds.min_confidence:
        return Classification(Verdict.OUT_OF_SCOPE, top1[0], top1[1], tuple(ranked[:top]))
    if len(ranked) > 1 and top1[1] - ranked[1][1] < thresholds.clarify_margin:
        return Classification(Verdict.AMBIGUOUS, top1[0], top1[1], tuple(ranked[:top]))
    return Classification(Verdict.IN_SCOPE, top1[0], top1[1], tuple(ranked[:top]))


def _in_scope_top(head: Head, probs: Matrix) -> tuple[npt.NDArray[np.int64], Matrix, Matrix]:
    """Index of the best in-scope label, its probability and the runner-up's, per row."""
    masked = probs.copy()
    if OOS_LABEL in head.labels:
        masked[:, head.labels.index(OOS_LABEL)] = -1.0
    order = np.argsort(-masked, axis=1)
    rows = np.arange(len(probs))
    return order[:, 0], masked[rows, order[:, 0]], masked[rows, order[:, 1]]


def fit_thresholds(
    head: Head,
    probs: Matrix,
    labels: list[str],
    target_false_refusal: float,
    target_clarify_rate: float,
) -> Thresholds:
    """Fit the thresholds on held-out rows (``labels`` may contain ``oos``).

    * Without out-of-scope rows: ``min_confidence`` is the quantile that refuses
      ``target_false_refusal`` of the in-scope rows.
    * With them: ``min_confidence`` and ``oos_ratio`` (how much likelier than the
      best intent the ``oos`` class must be) maximise in-scope accuracy +
      out-of-scope recall while refusing at most ``target_false_refusal`` of the
      in-scope rows, counting refusals by either rule.
    * ``clarify_margin``: the largest margin that asks on at most
      ``target_clarify_rate`` of the answered in-scope rows.
    """
    y = np.array(labels)
    in_scope = y != OOS_LABEL
    if not in_scope.any():
        raise ValueError("threshold fitting needs in-scope examples")
    best_idx, top1, top2 = _in_scope_top(head, probs)
    correct = np.array(head.labels)[best_idx] == y
    p_oos = probs[:, head.labels.index(OOS_LABEL)] if OOS_LABEL in head.labels else None
    min_conf = (
        float(np.quantile(top1[in_scope], target_false_refusal, method="lower"))
        if target_false_refusal
        else 0.0
    )
    ratio = 1.0
    if (~in_scope).any():
        allowed = target_false_refusal * in_scope.sum() + 1e-9
        candidates = np.unique(np.quantile(top1, np.linspace(0.0, 1.0, 201)))
        best = (-1.0, 0.0, float("inf"))
        for r in (1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, float("inf")):
            oos_wins = p_oos >= r * top1 if p_oos is not None else np.zeros(len(y), bool)
            for t in np.concatenate([[0.0], candidates]):
                refused = oos_wins | (top1 < t)
                if refused[in_scope].sum() > allowed:
                    continue
                score = float(np.mean(correct[in_scope] & ~refused[in_scope])) + float(
                    np.mean(refused[~in_scope])
                )
                if score > best[0]:
                    best = (score, float(t), r)
        _, min_conf, ratio = best
    oos_wins = p_oos >= ratio * top1 if p_oos is not None else np.zeros(len(y), bool)
    margins = (top1 - top2)[in_scope & ~oos_wins & (top1 >= min_conf)]
    clarify = (
        float(np.quantile(margins, target_clarify_rate, method="lower")) if len(margins) else 0.0
    )
    return Thresholds(min_confidence=min_conf, clarify_margin=max(0.0, clarify), oos_ratio=ratio)
