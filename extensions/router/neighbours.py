"""The router's examples kept beside the head: a nearest-neighbour vote and a distance.

Two things the linear head does not see:

* **a vote**: the ``k`` most similar training examples vote for their label, weighted by
  ``exp(cosine / temperature)``. Blended with the head's probabilities (the share is
  fitted out of fold, ``training``) it corrects intents the linear head confuses; an
  ``oos`` example among the neighbours votes for refusal.
* **a distance**: the mean cosine of the ``k`` most similar *in-scope* examples. A query
  unlike every example (far from all intents) is refused on it (``min_similarity``),
  however confident the head is.

Exact search (usearch's brute-force kernels, no index to build): a scan of the examples'
embeddings per query, float32, 384 × 4 bytes per example (about 24 MB for 15,000
examples, which is also what it keeps in memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from usearch.index import search

from extensions.router.classifier import OOS_LABEL, Matrix


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
        queries = np.ascontiguousarray(x, dtype=np.float32)
        n_in = self.n_in_scope
        votes = np.zeros((len(queries), len(self.labels)), dtype=np.float32)
        nearest = np.ones(len(queries), dtype=np.float32)
        if len(self.columns) == 0 or len(queries) == 0:
            votes[:] = 1.0 / len(self.labels)
            return votes, nearest
        # the k nearest of each part; the vote's k nearest overall are among them
        rows, sims = _top_k(self.vectors[:n_in], queries, self.k)
        if n_in:
            nearest = sims.mean(axis=1).astype(np.float32)
        oos_rows, oos_sims = _top_k(self.vectors[n_in:], queries, self.k)
        rows = np.concatenate([rows, oos_rows + n_in], axis=1)
        sims = np.concatenate([sims, oos_sims], axis=1)
        keep = np.argsort(-sims, axis=1, kind="stable")[:, : self.k]
        sims = np.take_along_axis(sims, keep, axis=1)
        labels = self.columns[np.take_along_axis(rows, keep, axis=1)]
        weight = np.exp((sims - sims[:, :1]) / self.temperature)
        np.add.at(votes, (np.arange(len(queries))[:, None], labels), weight)
        votes /= votes.sum(axis=1, keepdims=True)
        return votes, nearest


def _top_k(
    data: Matrix, queries: Matrix, k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Rows of ``data`` most similar to each query (exact search), and their cosines.

    usearch's brute-force kernels scan the rows without materialising the
    ``(queries, rows)`` product. ``(queries, 0)`` arrays when ``data`` is empty.
    """
    k = min(k, len(data))
    if k == 0:
        return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0))
    found = search(data, queries, k, "ip", exact=True, threads=1)
    rows = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), k)
    sims = 1.0 - np.asarray(found.distances, dtype=np.float64).reshape(len(queries), k)
    return rows, sims
