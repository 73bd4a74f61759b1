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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL, Matrix


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

    @property
    def scanned_rows(self) -> int:
        """The most rows one query can scan: the largest ``candidates`` intents' and the
        out-of-scope ones."""
        counts = np.diff(self.starts)
        if OOS_LABEL in self.labels:
            oos = self.labels.index(OOS_LABEL)
            intents = np.delete(counts, oos)
            return int(counts[oos] + np.sort(intents)[::-1][: self.candidates].sum())
        return int(np.sort(counts)[::-1][: self.candidates].sum())

    def score(self, x: Matrix, probs: Matrix) -> tuple[Matrix, Matrix]:
        """The vote, ``(queries, labels)`` rows summing to 1, and the mean cosine of the
        ``k`` nearest in-scope examples per query; ``probs``: the head's, over ``labels``."""
        votes = np.zeros((len(x), len(self.labels)), dtype=np.float32)
        nearest = np.ones(len(x), dtype=np.float32)
        oos = self.labels.index(OOS_LABEL) if OOS_LABEL in self.labels else -1
        ranking = probs.copy()
        if oos >= 0:
            ranking[:, oos] = -1.0
        n_intents = len(self.labels) - (oos >= 0)
        m = min(self.candidates, n_intents)
        top = np.argpartition(-ranking, m - 1, axis=1)[:, :m] if m else ranking[:, :0]
        for i, query in enumerate(np.asarray(x, dtype=np.float32)):
            sims, cols = self._similarities(query, top[i], oos)
            if len(sims) == 0:
                votes[i] = 1.0 / len(self.labels)
                continue
            inside = sims[cols != oos]
            if len(inside):
                k_in = min(self.k, len(inside))
                nearest[i] = np.partition(inside, len(inside) - k_in)[-k_in:].mean()
            k = min(self.k, len(sims))
            best = np.argpartition(-sims, k - 1)[:k]
            weight = np.exp((sims[best] - sims[best].max()) / self.temperature)
            np.add.at(votes[i], cols[best], weight)
            votes[i] /= votes[i].sum()
        return votes, nearest

    def _similarities(
        self, query: Matrix, intents: npt.NDArray[np.int64], oos: int
    ) -> tuple[Matrix, npt.NDArray[np.int64]]:
        """Cosines to the examples of ``intents`` and of ``oos`` (if any), and their labels."""
        chosen = [int(c) for c in intents] + ([oos] if oos >= 0 else [])
        if not chosen:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        sims = [self.vectors[self.starts[c] : self.starts[c + 1]] @ query for c in chosen]
        cols = [np.full(len(s), c, dtype=np.int64) for c, s in zip(chosen, sims, strict=True)]
        return np.concatenate(sims), np.concatenate(cols)
