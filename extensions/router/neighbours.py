"""The router's examples kept beside the head: a nearest-neighbour vote and a distance.

Two things the linear head does not see:

* **a vote**: the ``k`` most similar training examples vote for their label, weighted by
  ``exp(cosine / temperature)``. Blended with the head's probabilities (the share is
  fitted out of fold, ``training``) it corrects intents the linear head confuses; an
  ``oos`` example among the neighbours votes for refusal.
* **a distance**: the mean cosine of the ``k`` most similar *in-scope* examples. A query
  unlike every example (far from all intents) is refused on it (``min_similarity``),
  however confident the head is.

Both look only at the examples of the head's ``candidates`` most probable intents and of
the ``oos`` class (two-stage retrieval: the head proposes, the examples decide). A query
then scans a few hundred rows instead of all of them: a router with 15,000 examples
would otherwise read 24 MB per query, over a millisecond on this CPU. Rows are grouped
by label, so each candidate's examples are one contiguous slice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL, Matrix
from extensions.router.settings import NeighbourVote


@dataclass(frozen=True)
class Neighbours:
    """Training embeddings grouped by label: label ``c``'s rows are
    ``vectors[starts[c]:starts[c + 1]]``."""

    vectors: Matrix  # (n, d) L2-normalised training embeddings
    starts: npt.NDArray[np.int64]  # (len(labels) + 1,)
    labels: tuple[str, ...]  # the head's labels: the vote's columns
    k: int = 10
    temperature: float = 0.05
    candidates: int = 10  # the head's most probable intents whose examples are searched

    @classmethod
    def build(
        cls,
        x: Matrix,
        row_labels: Sequence[str],
        labels: Sequence[str],
        k: int = 10,
        temperature: float = 0.05,
        candidates: int = 10,
    ) -> Neighbours:
        column = {label: i for i, label in enumerate(labels)}
        columns = np.array([column[label] for label in row_labels], dtype=np.int64)
        order = np.argsort(columns, kind="stable")
        counts = np.bincount(columns, minlength=len(labels))
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        vectors = np.ascontiguousarray(np.asarray(x, dtype=np.float32)[order])
        return cls(vectors, starts, tuple(labels), k, temperature, candidates)

    @classmethod
    def from_settings(
        cls, x: Matrix, row_labels: Sequence[str], labels: Sequence[str], vote: NeighbourVote
    ) -> Neighbours:
        return cls.build(x, row_labels, labels, vote.k, vote.temperature, vote.candidates)

    @cached_property
    def oos(self) -> int:
        """The ``oos`` label's column, -1 without one."""
        return self.labels.index(OOS_LABEL) if OOS_LABEL in self.labels else -1

    @cached_property
    def scanned_rows(self) -> int:
        """The most rows one query can scan: the largest ``candidates`` intents' and the
        out-of-scope ones."""
        counts = np.diff(self.starts)
        if self.oos < 0:
            return int(np.sort(counts)[::-1][: self.candidates].sum())
        intents = np.delete(counts, self.oos)
        return int(counts[self.oos] + np.sort(intents)[::-1][: self.candidates].sum())

    def score(self, x: Matrix, probs: Matrix) -> tuple[Matrix, Matrix]:
        """The vote, ``(queries, labels)`` rows summing to 1, and the mean cosine of the
        ``k`` nearest in-scope examples per query; ``probs``: the head's, over ``labels``."""
        votes = np.zeros((len(x), len(self.labels)), dtype=np.float32)
        nearest = np.ones(len(x), dtype=np.float32)
        for i, (sims, cols) in enumerate(self._scans(x, probs)):
            nearest[i] = self._nearest_of(sims, cols)
            votes[i] = self._vote_of(sims, cols)
        return votes, nearest

    def nearest(self, x: Matrix, probs: Matrix) -> Matrix:
        """The distance of ``score`` alone (a router whose vote has no share)."""
        nearest = np.ones(len(x), dtype=np.float32)
        for i, (sims, cols) in enumerate(self._scans(x, probs)):
            nearest[i] = self._nearest_of(sims, cols)
        return nearest

    def _scans(self, x: Matrix, probs: Matrix) -> Iterator[tuple[Matrix, npt.NDArray[np.int64]]]:
        """Per query: cosines to the examples of the head's candidate intents and of
        ``oos``, and their labels."""
        ranking = probs.copy()
        if self.oos >= 0:
            ranking[:, self.oos] = -1.0
        m = min(self.candidates, len(self.labels) - (self.oos >= 0))
        top = np.argpartition(-ranking, m - 1, axis=1)[:, :m] if m else ranking[:, :0]
        for i, query in enumerate(np.asarray(x, dtype=np.float32)):
            chosen = [int(c) for c in top[i]] + ([self.oos] if self.oos >= 0 else [])
            if not chosen:
                yield np.zeros(0, np.float32), np.zeros(0, np.int64)
                continue
            sims = [self.vectors[self.starts[c] : self.starts[c + 1]] @ query for c in chosen]
            cols = [np.full(len(s), c, dtype=np.int64) for c, s in zip(chosen, sims, strict=True)]
            yield np.concatenate(sims), np.concatenate(cols)

    def _nearest_of(self, sims: Matrix, cols: npt.NDArray[np.int64]) -> float:
        inside = sims[cols != self.oos]
        if len(inside) == 0:
            return 1.0
        k = min(self.k, len(inside))
        return float(np.partition(inside, len(inside) - k)[-k:].mean())

    def _vote_of(self, sims: Matrix, cols: npt.NDArray[np.int64]) -> Matrix:
        vote = np.zeros(len(self.labels), dtype=np.float32)
        if len(sims) == 0:
            vote[:] = 1.0 / len(self.labels)
            return vote
        k = min(self.k, len(sims))
        best = np.argpartition(-sims, k - 1)[:k]
        np.add.at(vote, cols[best], np.exp((sims[best] - sims[best].max()) / self.temperature))
        vote /= vote.sum()
        return vote
