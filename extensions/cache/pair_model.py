"""A small paraphrase classifier over ``pair_features``, run with numpy alone.

One hidden ReLU layer on standardised features, a logistic output. The file is a
``.npz`` holding the weights, the scaler, the inverse document frequencies the
lexical features use, and a JSON ``card`` (feature layout, what it was trained
on, its licence). Training (scikit-learn) lives in ``train_verifier``; the
serving process only loads and multiplies.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from extensions.cache.pair_features import FEATURES_VERSION, Idf

Matrix = npt.NDArray[np.float32]
BUILTIN_MODELS = {"builtin:qqp-pair-mlp": Path(__file__).parent / "models" / "qqp_pair_mlp.npz"}


class PairModelError(ValueError):
    pass


@dataclass(frozen=True)
class PairModel:
    mean: Matrix
    scale: Matrix
    hidden_w: Matrix
    hidden_b: Matrix
    out_w: Matrix
    out_b: float
    idf: Idf
    with_embeddings: bool
    card: dict[str, Any]
    fingerprint: str = ""  # sha256 of the file it came from, first 16 hex digits

    def probability(self, rows: Matrix) -> npt.NDArray[np.float64]:
        """P(same question) for each row of features."""
        x = (np.asarray(rows, dtype=np.float32) - self.mean) / self.scale
        hidden = np.maximum(x @ self.hidden_w + self.hidden_b, 0.0)
        logit = (hidden @ self.out_w).reshape(-1).astype(np.float64) + self.out_b
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -40.0, 40.0)))

    def to_bytes(self) -> bytes:
        words = sorted(self.idf.weights)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            mean=self.mean,
            scale=self.scale,
            hidden_w=self.hidden_w,
            hidden_b=self.hidden_b,
            out_w=self.out_w,
            out_b=np.array([self.out_b], dtype=np.float32),
            idf_words=np.array("\n".join(words)),
            idf_weights=np.array([self.idf.weights[w] for w in words], dtype=np.float16),
            idf_unseen=np.array([self.idf.unseen], dtype=np.float32),
            card=np.array(json.dumps({**self.card, "with_embeddings": self.with_embeddings})),
        )
        return buffer.getvalue()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "model") -> PairModel:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                card = json.loads(str(z["card"]))
                words = str(z["idf_words"]).split("\n")
                weights = z["idf_weights"].astype(np.float64)
                model = cls(
                    mean=z["mean"].astype(np.float32),
                    scale=z["scale"].astype(np.float32),
                    hidden_w=z["hidden_w"].astype(np.float32),
                    hidden_b=z["hidden_b"].astype(np.float32),
                    out_w=z["out_w"].astype(np.float32),
                    out_b=float(z["out_b"][0]),
                    idf=Idf(
                        dict(zip(words, weights.tolist(), strict=True)), float(z["idf_unseen"][0])
                    ),
                    with_embeddings=bool(card["with_embeddings"]),
                    card=card,
                    fingerprint=hashlib.sha256(raw).hexdigest()[:16],
                )
        except (OSError, ValueError, KeyError) as exc:
            raise PairModelError(f"{source}: not a pair model ({exc})") from exc
        if card.get("features") != FEATURES_VERSION:
            raise PairModelError(
                f"{source}: trained on features {card.get('features')!r}, "
                f"this gateway computes {FEATURES_VERSION!r}: retrain it"
            )
        return model


def resolve(model: str) -> Path:
    """``builtin:qqp-pair-mlp`` is the file shipped in ``extensions/cache/models``."""
    if model.startswith("builtin:"):
        if model not in BUILTIN_MODELS:
            raise PairModelError(f"unknown builtin model {model!r} (have {sorted(BUILTIN_MODELS)})")
        return BUILTIN_MODELS[model]
    return Path(model).expanduser()


def load(model: str) -> PairModel:
    path = resolve(model)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PairModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return PairModel.from_bytes(raw, str(path))
