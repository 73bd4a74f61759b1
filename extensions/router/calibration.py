"""Out-of-fold scores: what the head and the neighbours say about examples they were not
built from.

Thresholds fitted on these transfer to unseen queries better than ones fitted on a
single held-out slice: every example is scored once, by a head trained on the other
``k - 1`` folds, so the in-scope quantiles and the out-of-scope recall are estimated
from all the examples instead of a fifth of them. The neighbours' share of the
probabilities (``choose_vote_weight``) is fitted on the same scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL, Matrix, train_head
from extensions.router.examples import BACKGROUND_SOURCE, Example, held_out_mask
from extensions.router.model import blend, neighbour_scores
from extensions.router.neighbours import Neighbours
from extensions.router.settings import NeighbourVote


def fold_ids(labels: Sequence[str], k: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Stratified fold of each row: every label is spread evenly over the ``k`` folds."""
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    folds = np.zeros(len(y), dtype=np.int64)
    offset = 0
    for label in sorted(set(labels)):
        rows = np.flatnonzero(y == label)
        rows = rows[rng.permutation(len(rows))]
        folds[rows] = (np.arange(len(rows)) + offset) % k  # offset: singletons spread out
        offset += len(rows)
    return folds


@dataclass(frozen=True)
class HeldOut:
    """Scores of rows by a head and neighbours that were built without them."""

    probs: Matrix  # (rows, classes): the head's probabilities
    votes: Matrix  # (rows, classes): the neighbours' vote; zeros without neighbours
    nearest: Matrix  # (rows,): mean cosine of the nearest in-scope examples; 1.0 without
    scored: npt.NDArray[np.bool_]  # rows a head could score (see ``out_of_fold_scores``)

    def blended(self, weight: float) -> Matrix:
        return blend(self.probs, self.votes, weight)


def _score(
    x_train: Matrix,
    y_train: Sequence[str],
    x_held: Matrix,
    classes: Sequence[str],
    c: float,
    vote: NeighbourVote | None,
) -> tuple[Matrix, Matrix, Matrix, tuple[str, ...]]:
    head = train_head(x_train, list(y_train), c=c)
    column = {label: i for i, label in enumerate(classes)}
    probs = np.zeros((len(x_held), len(classes)), dtype=np.float32)
    probs[:, [column[label] for label in head.labels]] = head.probabilities(x_held)
    neighbours = Neighbours.from_settings(x_train, y_train, classes, vote) if vote else None
    votes, nearest = neighbour_scores(neighbours, x_held, probs)
    return probs, votes, nearest, head.labels


def out_of_fold_scores(
    x: Matrix,
    labels: Sequence[str],
    classes: Sequence[str],
    k: int,
    c: float,
    vote: NeighbourVote | None = None,
) -> HeldOut:
    """Each row scored by a head (and neighbours) built without its fold.

    A row is left unscored when its fold's other rows hold fewer than two labels (no head
    to train) or lack the row's own label (an intent with one example: its probability
    would be 0, and it would be fitted as if it were off-topic).
    """
    folds = fold_ids(labels, k)
    y = np.asarray(labels)
    probs = np.zeros((len(y), len(classes)), dtype=np.float32)
    votes = np.zeros_like(probs)
    nearest = np.ones(len(y), dtype=np.float32)
    scored = np.zeros(len(y), dtype=bool)
    for fold in range(k):
        held = folds == fold
        train = ~held
        if not held.any() or len(set(y[train])) < 2:
            continue
        rows = np.flatnonzero(held)
        probs[rows], votes[rows], nearest[rows], seen = _score(
            x[train], list(y[train]), x[held], classes, c, vote
        )
        scored |= held & np.isin(y, seen)
    return HeldOut(probs, votes, nearest, scored)


def held_out_scores(
    x_fit: Matrix,
    fit_labels: Sequence[str],
    x_held: Matrix,
    held_labels: Sequence[str],
    classes: Sequence[str],
    c: float,
    vote: NeighbourVote | None = None,
) -> HeldOut:
    """``x_held`` scored by a head (and neighbours) built on ``x_fit`` only."""
    probs, votes, nearest, seen = _score(x_fit, fit_labels, x_held, classes, c, vote)
    return HeldOut(probs, votes, nearest, np.isin(np.asarray(held_labels), seen))


VOTE_WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # the neighbours' share of the probabilities
SIGNIFICANT_Z = 2.0  # McNemar's z the vote must beat the head alone by


def choose_vote_weight(held: HeldOut, labels: Sequence[str], classes: Sequence[str]) -> float:
    """The neighbours' share with the best held-out intent accuracy (ties: the smaller),
    if it beats the head alone significantly (McNemar's test on the rows where exactly
    one of the two is right); otherwise 0: a gain within the noise is not worth the
    vote's cost, and would not transfer."""
    y = np.asarray(labels)
    rows = held.scored & (y != OOS_LABEL)
    if not rows.any():
        return 0.0
    column = {label: i for i, label in enumerate(classes)}
    truth = np.array([column[label] for label in y[rows]])

    def right(weight: float) -> npt.NDArray[np.bool_]:
        probs = held.blended(weight)[rows]
        if OOS_LABEL in column:
            probs[:, column[OOS_LABEL]] = -1.0
        return np.asarray(probs.argmax(axis=1) == truth)

    alone = right(0.0)
    best, best_right = 0.0, alone
    for weight in VOTE_WEIGHTS:
        now = right(weight)
        if now.sum() > best_right.sum():
            best, best_right = weight, now
    gained, lost = int(np.sum(best_right & ~alone)), int(np.sum(alone & ~best_right))
    if gained + lost == 0 or (gained - lost) / np.sqrt(gained + lost) < SIGNIFICANT_Z:
        return 0.0
    return best


HOLDOUT_SHARE = 0.2


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
