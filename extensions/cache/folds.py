"""Question-disjoint folds for honest cross-validation on labelled pairs.

``question_folds`` splits pairs so that no question text (lower-cased, spaces
collapsed) is in two folds: pairs that share a question, directly or through
other pairs, stay together. A model evaluated on one fold has never seen any of
its questions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class LabelledPair(Protocol):
    @property
    def a(self) -> str: ...

    @property
    def b(self) -> str: ...

    @property
    def label(self) -> int: ...


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def question_folds(pairs: Sequence[LabelledPair], k: int, seed: int = 0) -> list[int]:
    """A fold number per pair; connected groups of questions never straddle two folds."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        ra, rb = root(normalise(p.a)), root(normalise(p.b))
        if ra != rb:
            parent[ra] = rb
    groups = [root(normalise(p.a)) for p in pairs]
    size: dict[str, int] = defaultdict(int)
    for g in groups:
        size[g] += 1
    names = sorted(size)
    order = np.random.default_rng(seed).permutation(len(names))
    load = [0] * k
    fold_of: dict[str, int] = {}
    for i in sorted(order.tolist(), key=lambda i: -size[names[i]]):  # largest groups first
        fold = int(np.argmin(load))
        fold_of[names[i]] = fold
        load[fold] += size[names[i]]
    return [fold_of[g] for g in groups]
