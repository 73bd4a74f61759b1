"""Out-of-fold probabilities: what the head says about examples it was not trained on.

Thresholds fitted on these transfer to unseen queries better than ones fitted on a
single held-out slice: every example is scored once, by a head trained on the other
``k - 1`` folds, so the in-scope quantiles and the out-of-scope recall are estimated
from all the examples instead of a fifth of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import Matrix, train_head


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
) -> Matrix:
    """Each row's probabilities over ``classes`` from a head trained without its fold.

    A label missing from a fold's training rows (too few examples) gets probability 0
    in that fold.
    """
    folds = fold_ids(labels, k)
    y = np.asarray(labels)
    column = {label: i for i, label in enumerate(classes)}
    out = np.zeros((len(y), len(classes)), dtype=np.float32)
    for fold in range(k):
        held = folds == fold
        if not held.any():
            continue
        train = ~held
        if len(set(y[train])) < 2:
            raise ValueError("cross-validation needs two labels in every fold's training rows")
        head = train_head(x[train], list(y[train]), c=c)
        cols = np.array([column[label] for label in head.labels], dtype=np.int64)
        out[np.ix_(np.flatnonzero(held), cols)] = head.probabilities(x[held])
    return out
