"""What a router's classifier computes for a batch of queries: the head's probabilities,
blended with its examples' nearest-neighbour vote, and how near the nearest in-scope
examples are. ``classify_row`` turns one row of these into a verdict."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from extensions.router.classifier import Classification, Head, Matrix, Thresholds, classify_row
from extensions.router.neighbours import Neighbours


@dataclass(frozen=True)
class Scores:
    probs: Matrix  # (queries, labels), rows summing to 1
    nearest: Matrix  # (queries,) mean cosine of the nearest in-scope examples; 1.0 without


@dataclass(frozen=True)
class IntentModel:
    head: Head
    neighbours: Neighbours | None = None
    vote_weight: float = 0.0  # the neighbours' share of ``probs`` (fitted out of fold)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def scores(self, x: Matrix) -> Scores:
        probs = self.head.probabilities(x)
        if self.neighbours is not None and self.vote_weight == 0.0:  # the floor alone
            return Scores(probs, self.neighbours.nearest(x, probs))
        votes, nearest = neighbour_scores(self.neighbours, x, probs)
        return Scores(blend(probs, votes, self.vote_weight), nearest)


def classify(model: IntentModel, scores: Scores, thresholds: Thresholds) -> list[Classification]:
    """A verdict per query from its row of ``scores``."""
    return [
        classify_row(model, probs, thresholds, float(near))
        for probs, near in zip(scores.probs, scores.nearest, strict=True)
    ]


def neighbour_scores(
    neighbours: Neighbours | None, x: Matrix, probs: Matrix
) -> tuple[Matrix, Matrix]:
    """The neighbours' vote and distance for queries ``x`` the head gave ``probs``;
    without neighbours a zero vote and a distance of 1.0 (the floor never refuses)."""
    if neighbours is None:
        return np.zeros_like(probs), np.ones(len(x), dtype=np.float32)
    return neighbours.score(x, probs)


def blend(probs: Matrix, votes: Matrix, weight: float) -> Matrix:
    """``(1 - weight) · probs + weight · votes``."""
    if weight == 0.0:
        return probs
    return np.asarray((1.0 - weight) * probs + weight * votes, dtype=np.float32)
