"""The router's examples kept beside the head: a nearest-neighbour vote and a distance.

Two things the linear head does not see:

* **a vote**: the ``k`` most similar training examples vote for their label, weighted by
  ``exp(cosine / temperature)``. Blended with the head's probabilities (the share is
  fitted out of fold, ``training``) it corrects intents the linear head confuses; an
  ``oos`` example among the neighbours votes for refusal.
* **a distance**: the mean cosine of the ``k`` most similar *in-scope* examples. A query
  unlike every example (far from all intents) is refused on it (``min_similarity``),
  however confident the head is.

Pure numpy: one ``(queries, examples)`` product per batch. Memory is the examples'
embeddings (float32: 384 × 4 bytes per example, about 24 MB for 15,000 examples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from extensions.router.classifier import OOS_LABEL, Matrix

BLOCK = 1024  # query rows per product, bounding memory at BLOCK × examples floats


@dataclass(frozen=True)
class Neighbours:
    """Training embeddings, in-scope rows first (``build``), and each row's label."""

    vectors: Matrix  # (n, d) L2-normalised training embeddings
    columns: npt.NDArray[np.int64]  # (n,) each row's label, as a column of ``labels``
    labels: tuple[str, ...]  # the head's labels: the vote's columns
    k: int = 10
    temperature: float = 0.05

    @classmethod
    def build(
        cls,
        x: Matrix,
        row_labels: Sequence[str],
        labels: Sequence[str],
        k: int = 10,
        temperature: float = 0.05,
    ) -> Neighbours:
        column = {label: i for i, label in enumerate(labels)}
        columns = np.array([column[label] for label in row_labels], dtype=np.int64)
        order = np.argsort(np.asarray(row_labels) == OOS_LABEL, kind="stable")
        vectors = np.asarray(x, dtype=np.float32)[order]
        return cls(np.ascontiguousarray(vectors), columns[order], tuple(labels), k, temperature)

    @property
    def n_in_scope(self) -> int:
        """In-scope rows: the first ones."""
        if OOS_LABEL not in self.labels:
            return len(self.columns)
        return int(np.sum(self.columns != self.labels.index(OOS_LABEL)))

    def score(self, x: Matrix) -> tuple[Matrix, Matrix]:
        """The vote, ``(queries, labels)`` rows summing to 1, and the mean cosine of the
        ``k`` nearest in-scope examples per query."""
        n = len(self.columns)
        votes = np.zeros((len(x), len(self.labels)), dtype=np.float32)
        nearest = np.ones(len(x), dtype=np.float32)
        if n == 0:
            votes[:] = 1.0 / len(self.labels)
            return votes, nearest
        n_in = self.n_in_scope
        k = min(self.k, n)
        k_in = min(self.k, n_in)
        for start in range(0, len(x), BLOCK):
            sims = np.asarray(x[start : start + BLOCK], dtype=np.float32) @ self.vectors.T
            rows = np.arange(len(sims))[:, None]
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            top_sims = sims[rows, top]
            weight = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / self.temperature)
            block = votes[start : start + len(sims)]
            np.add.at(block, (np.broadcast_to(rows, top.shape), self.columns[top]), weight)
            block /= block.sum(axis=1, keepdims=True)
            if k_in:
                near = np.partition(sims[:, :n_in], n_in - k_in, axis=1)[:, n_in - k_in :]
                nearest[start : start + len(sims)] = near.mean(axis=1)
        return votes, nearest
