"""Train the learned verifier on labelled pairs (commands only: imports scikit-learn)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from extensions.cache.folds import LabelledPair
from extensions.cache.pair_features import (
    FEATURES_VERSION,
    LEXICAL_NAMES,
    Idf,
    pair_vector,
    side,
)
from extensions.cache.pair_model import PairModel
from extensions.embedding.encoder import Vectors


def feature_rows(
    pairs: Sequence[LabelledPair], vectors: Mapping[str, Vectors], idf: Idf, with_embeddings: bool
) -> np.ndarray:
    sides = {t: side(t) for t in {x for p in pairs for x in (p.a, p.b)}}
    return np.stack(
        [
            pair_vector(sides[p.b], sides[p.a], vectors[p.b], vectors[p.a], idf, with_embeddings)
            for p in pairs
        ]
    )


def fit(
    pairs: Sequence[LabelledPair],
    vectors: Mapping[str, Vectors],
    card: Mapping[str, Any],
    with_embeddings: bool = True,
    hidden: int = 128,
    alpha: float = 1e-3,
    seed: int = 0,
) -> PairModel:
    """Train on ``pairs`` (query = ``b``, cached = ``a``); ``card`` describes the data."""
    from sklearn.neural_network import MLPClassifier

    started = time.monotonic()
    idf = Idf.fit(t for p in pairs for t in (p.a, p.b))
    x = feature_rows(pairs, vectors, idf, with_embeddings)
    y = np.array([p.label for p in pairs])
    # the lexical features are standardised; the embedding features (|u-v|, u*v: hundreds
    # of small values) are left as they are, which keeps their weight in the model small:
    # standardised, they made it over-confident (5-fold on qqp_dev: recall at 95%
    # precision fell from 0.32 to 0.27 at threshold 0.90)
    n = len(LEXICAL_NAMES)
    mean = np.zeros(x.shape[1])
    scale = np.ones(x.shape[1])
    mean[:n] = x[:, :n].mean(axis=0)
    # a floor on the scale: a feature (nearly) constant in training must not blow up
    scale[:n] = np.maximum(x[:, :n].std(axis=0), 1e-3)
    mlp = MLPClassifier(
        hidden_layer_sizes=(hidden,),
        alpha=alpha,
        max_iter=60 if len(pairs) >= 200 else 300,
        early_stopping=len(pairs) >= 200,  # a held-back tenth needs enough pairs to mean much
        random_state=seed,
    )
    mlp.fit((x - mean) / scale, y)
    trained = {
        **card,
        "features": FEATURES_VERSION,
        "pairs": len(pairs),
        "positives": int(y.sum()),
        "hidden": hidden,
        "alpha": alpha,
        "seed": seed,
        "epochs": int(mlp.n_iter_),
        "train_seconds": round(time.monotonic() - started, 1),
    }
    return PairModel(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        hidden_w=mlp.coefs_[0].astype(np.float32),
        hidden_b=mlp.intercepts_[0].astype(np.float32),
        out_w=mlp.coefs_[1].astype(np.float32),
        out_b=float(mlp.intercepts_[1][0]),
        idf=idf,
        with_embeddings=with_embeddings,
        card=trained,
    )
