"""The trained head over sentence embeddings, and how its thresholds are fitted.

Pure numpy, at request time and at training time: a linear layer and a softmax over
L2-normalised embeddings, trained as an L2-regularised multinomial logistic regression
(``logreg``; no scikit-learn in the serving process).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from extensions.router.logreg import fit_multinomial

logger = logging.getLogger("gateway.router")

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


def train_head(
    x: Matrix,
    labels: list[str],
    c: float = 20.0,
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> Head:
    """Multinomial logistic regression; ``labels`` may include ``oos`` as a class of its own.

    ``c`` is the inverse regularisation strength (scikit-learn's ``C``); the solver is
    deterministic. ``sample_weight`` scales each example's share of the loss.
    """
    classes = tuple(sorted(set(labels)))
    if len(classes) < 2:
        raise ValueError("a classifier needs at least two labels")
    index = {label: i for i, label in enumerate(classes)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    fit = fit_multinomial(np.asarray(x, dtype=np.float32), y, len(classes), c, sample_weight)
    if not fit.converged:
        logger.warning(
            "router head: L-BFGS stopped after %d iterations unconverged", fit.iterations
        )
    return Head(labels=classes, weights=fit.weights, bias=fit.bias)


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float  # below: out of scope
    clarify_margin: float  # top1 - top2 below (among in-scope intents): ambiguous
    oos_ratio: float = 1.0  # the oos class refuses when p(oos) >= oos_ratio * p(top intent)
    min_similarity: float = -1.0  # nearest in-scope examples' mean cosine below: out of scope


TOP_RANKED = 3  # intents a Classification names


class Labelled(Protocol):
    @property
    def labels(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    intent: str | None  # top in-scope intent (None when the oos class wins outright)
    confidence: float
    ranked: tuple[tuple[str, float], ...]  # top intents, best first (oos excluded)


def classify_row(
    head: Labelled, probs: Matrix, thresholds: Thresholds, nearest: float = 1.0
) -> Classification:
    """Decide for one row of probabilities; ``nearest``: the mean cosine of the nearest
    in-scope examples (``Neighbours``), 1.0 when the router keeps none."""
    labels = head.labels
    order = np.argsort(-probs)
    ranked = [(labels[i], float(probs[i])) for i in order if labels[i] != OOS_LABEL]
    top1 = ranked[0] if ranked else (None, 0.0)
    p_oos = float(probs[labels.index(OOS_LABEL)]) if OOS_LABEL in labels else 0.0
    oos_wins = OOS_LABEL in labels and p_oos >= thresholds.oos_ratio * top1[1]
    far = nearest < thresholds.min_similarity
    if oos_wins or far or top1[1] < thresholds.min_confidence:
        return Classification(Verdict.OUT_OF_SCOPE, top1[0], top1[1], tuple(ranked[:TOP_RANKED]))
    if len(ranked) > 1 and top1[1] - ranked[1][1] < thresholds.clarify_margin:
        return Classification(Verdict.AMBIGUOUS, top1[0], top1[1], tuple(ranked[:TOP_RANKED]))
    return Classification(Verdict.IN_SCOPE, top1[0], top1[1], tuple(ranked[:TOP_RANKED]))


def _in_scope_top(head: Labelled, probs: Matrix) -> tuple[npt.NDArray[np.int64], Matrix, Matrix]:
    """Index of the best in-scope label, its probability and the runner-up's, per row."""
    masked = probs.copy()
    if OOS_LABEL in head.labels:
        masked[:, head.labels.index(OOS_LABEL)] = -1.0
    order = np.argsort(-masked, axis=1)
    rows = np.arange(len(probs))
    return order[:, 0], masked[rows, order[:, 0]], masked[rows, order[:, 1]]


OOS_RATIOS = (1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, float("inf"))


def _oos_wins(p_oos: Matrix, top1: Matrix, ratio: float) -> npt.NDArray[np.bool_]:
    """Rows the ``oos`` class refuses at ``ratio`` (``inf``: none)."""
    if ratio == float("inf"):
        return np.zeros(len(top1), dtype=bool)
    return np.asarray(p_oos >= ratio * top1)


def _confidence_for_budget(top1: Matrix, allowed: int) -> float:
    """The highest ``min_confidence`` that refuses at most ``allowed`` of these rows."""
    if allowed <= 0 or len(top1) == 0:
        return 0.0
    return float(np.sort(top1)[min(allowed, len(top1) - 1)])  # rows strictly below it are refused


FAR_SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # of the budget, for the similarity floor


def _similarity_floor(nearest: Matrix, allowed: int) -> float:
    """The highest ``min_similarity`` that refuses at most ``allowed`` of these rows."""
    if allowed <= 0 or len(nearest) == 0:
        return -1.0
    return float(np.sort(nearest)[min(allowed, len(nearest) - 1)])


def fit_thresholds(
    head: Labelled,
    probs: Matrix,
    labels: list[str],
    target_false_refusal: float,
    target_clarify_rate: float,
    nearest: Matrix | None = None,
) -> Thresholds:
    """Fit the thresholds on held-out rows (``labels`` may contain ``oos``).

    * The refusal rules (``p(oos) >= oos_ratio * p(top intent)``, the top intent's
      probability below ``min_confidence``, and, given ``nearest``, the nearest in-scope
      examples' mean cosine below ``min_similarity``) together refuse at most
      ``target_false_refusal`` of the in-scope rows. The whole budget is used: for each
      share of it given to the similarity floor (``FAR_SHARES``) and each ``oos_ratio``,
      the highest ``min_confidence`` that stays within what is left, and of those the
      rules that refuse most out-of-scope rows (ties: the higher confidence floor, the
      better guard against off-topic queries unlike any example; then the smaller
      similarity share).
    * ``clarify_margin``: the largest margin that asks on at most
      ``target_clarify_rate`` of the answered in-scope rows.
    """
    y = np.array(labels)
    in_scope = y != OOS_LABEL
    if not in_scope.any():
        raise ValueError("threshold fitting needs in-scope examples")
    _, top1, top2 = _in_scope_top(head, probs)
    allowed = int(np.floor(target_false_refusal * in_scope.sum() + 0.5))  # nearest count
    has_oos = OOS_LABEL in head.labels
    p_oos = probs[:, head.labels.index(OOS_LABEL)] if has_oos else np.zeros_like(top1)
    ratios = OOS_RATIOS if has_oos else (float("inf"),)
    shares = FAR_SHARES if nearest is not None else (0.0,)
    near = nearest if nearest is not None else np.ones_like(top1)
    # every rule's own refusals count against the budget, also when no fitting row is out
    # of scope (then recall is 0 throughout and the highest confidence floor wins)
    best = (-1.0, -1.0, Thresholds(0.0, 0.0, float("inf")))
    for share in shares:
        floor = _similarity_floor(near[in_scope], round(share * allowed))
        far = near < floor
        for r in ratios:
            base = far | _oos_wins(p_oos, top1, r)
            left = allowed - int(base[in_scope].sum())
            if left < 0:
                continue
            t = _confidence_for_budget(top1[in_scope & ~base], left)
            refused = (base | (top1 < t))[~in_scope]
            recall = float(refused.mean()) if len(refused) else 0.0
            if (recall, t) > best[:2]:
                best = (recall, t, Thresholds(t, 0.0, r, floor))
    chosen = best[2]
    refused = (
        (top1 < chosen.min_confidence)
        | _oos_wins(p_oos, top1, chosen.oos_ratio)
        | (near < chosen.min_similarity)
    )
    margins = (top1 - top2)[in_scope & ~refused]
    clarify = (
        float(np.quantile(margins, target_clarify_rate, method="lower")) if len(margins) else 0.0
    )
    # a head without an oos class has no oos rule: its ratio is moot, 1.0 as a pinned one's
    ratio = chosen.oos_ratio if has_oos else 1.0
    return replace(chosen, clarify_margin=max(0.0, clarify), oos_ratio=ratio)
