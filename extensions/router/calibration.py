"""Out-of-fold probabilities: what the head says about examples it was not trained on.

Thresholds fitted on these transfer to unseen queries better than ones fitted on a
single held-out slice: every example is scored once, by a head trained on the other
``k - 1`` folds, so the in-scope quantiles and the out-of-scope recall are estimated
from all the examples instead of a fifth of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import Matrix, train_head
from extensions.router.examples import BACKGROUND_SOURCE, Example, held_out_mask


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


def out_of_fold_probabilities(
    x: Matrix, labels: Sequence[str], classes: Sequence[str], k: int, c: float
) -> tuple[Matrix, npt.NDArray[np.bool_]]:
    """Each row's probabilities over ``classes`` from a head trained without its fold, and
    which rows were scored.

    A row is left unscored when its fold's other rows hold fewer than two labels (no head
    to train) or lack the row's own label (an intent with one example: its probability
    would be 0, and it would be fitted as if it were off-topic).
    """
    folds = fold_ids(labels, k)
    y = np.asarray(labels)
    column = {label: i for i, label in enumerate(classes)}
    out = np.zeros((len(y), len(classes)), dtype=np.float32)
    scored = np.zeros(len(y), dtype=bool)
    for fold in range(k):
        held = folds == fold
        train = ~held
        if not held.any() or len(set(y[train])) < 2:
            continue
        head = train_head(x[train], list(y[train]), c=c)
        cols = np.array([column[label] for label in head.labels], dtype=np.int64)
        out[np.ix_(np.flatnonzero(held), cols)] = head.probabilities(x[held])
        scored |= held & np.isin(y, head.labels)
    return out, scored


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
