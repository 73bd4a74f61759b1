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
    return Head(
        labels=ordered,
        weights=np.asarray(model.coef_, dtype=np.float32),
        bias=np.asarray(model.intercept_, dtype=np.float32),
    )


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float  # below: out of scope
    clarify_margin: float  # top1 - top2 below (among in-scope intents): ambiguous


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
    best_label = head.labels[int(order[0])]
    top1 = ranked[0] if ranked else (None, 0.0)
    if best_label == OOS_LABEL or top1[1] < thresholds.min_confidence:
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
    """Fit both thresholds on held-out rows (``labels`` may contain ``oos``).

    * ``min_confidence``: with out-of-scope examples, the value that maximises
      in-scope accuracy + out-of-scope recall subject to refusing at most
      ``target_false_refusal`` of the in-scope rows; without them, the quantile
      that refuses exactly that share of the in-scope rows.
    * ``clarify_margin``: the largest margin that asks on at most
      ``target_clarify_rate`` of the in-scope rows.
    """
    y = np.array(labels)
    in_scope = y != OOS_LABEL
    best_idx, top1, top2 = _in_scope_top(head, probs)
    oos_col = head.labels.index(OOS_LABEL) if OOS_LABEL in head.labels else None
    oos_wins = (
        np.argmax(probs, axis=1) == oos_col if oos_col is not None else np.zeros(len(y), bool)
    )
    predicted = np.array(head.labels)[best_idx]
    if not in_scope.any():
        raise ValueError("threshold fitting needs in-scope examples")
    cap = (
        float(np.quantile(top1[in_scope], target_false_refusal, method="lower"))
        if target_false_refusal
        else 0.0
    )
    min_conf = cap
    if (~in_scope).any():
        best_score = -1.0
        for t in np.unique(np.concatenate([[0.0], top1])):
            if t > cap:
                break
            refused = oos_wins | (top1 < t)
            acc = float(np.mean((predicted == y)[in_scope] & ~refused[in_scope]))
            recall = float(np.mean(refused[~in_scope]))
            if acc + recall > best_score:
                best_score, min_conf = acc + recall, float(t)
    margins = (top1 - top2)[in_scope & ~oos_wins & (top1 >= min_conf)]
    clarify = (
        float(np.quantile(margins, target_clarify_rate, method="lower")) if len(margins) else 0.0
    )
    return Thresholds(min_confidence=min_conf, clarify_margin=max(0.0, clarify))
