"""Sentence vectors from token vectors: pooling over real tokens, then L2 normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from extensions.embedding.folder import Pooling

Vectors = npt.NDArray[np.float32]


def pool(hidden: Vectors, mask: npt.NDArray[np.int64], modes: Sequence[Pooling]) -> Vectors:
    """``hidden`` (batch, tokens, dim) and ``mask`` (batch, tokens) → (batch, dim·len(modes)),
    the modes concatenated in the order given, as sentence-transformers does."""
    weights = mask[:, :, None].astype(np.float32)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    parts = []
    for mode in modes:
        if mode is Pooling.CLS:
            parts.append(hidden[:, 0])
        elif mode is Pooling.MAX:
            parts.append(np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1))
        elif mode is Pooling.MEAN:
            parts.append((hidden * weights).sum(axis=1) / counts)
        else:  # Pooling.MEAN_SQRT_LEN
            parts.append((hidden * weights).sum(axis=1) / np.sqrt(counts))
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return np.asarray(out, dtype=np.float32)


def l2_normalise(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
