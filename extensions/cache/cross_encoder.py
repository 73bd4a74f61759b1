"""A cross-encoder verifier model: both questions read together by one BERT pass.

A frozen sentence embedding sees each question alone; a cross-encoder attends from
every word of one question to every word of the other, which is what tells "the
best way to brew tea" from "the best way to drink brewed tea". The folder that
``gateway train-cache-verifier --kind cross-encoder`` writes is a sentence-transformers
folder (BERT weights, ``tokenizer.json``, mean pooling) plus ``pair_head.json``: a
logistic layer over the pooled pair, the token budget and a card saying what it was
trained on. Serving reuses the lean encoder's pieces: the graph is built by
``bert_graph`` and cached by ``onnx_export`` (no torch), the pair is tokenised as
``[CLS] cached [SEP] query [SEP]`` with one segment id, as in training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from extensions.cache.pair_model import PairModelError
from extensions.embedding.folder import ModelFolder, ModelFolderError, read_model_folder
from extensions.embedding.onnx_encoder import hidden_states, onnx_session_options
from extensions.embedding.onnx_export import GRAPH_FORMAT, prepare_onnx
from extensions.embedding.pooling import pool
from extensions.embedding.settings import Embedding, Quantize

HEAD_FILE = "pair_head.json"
HEAD_FORMAT = "gateway-cross-encoder-1"


class CrossEncoderError(PairModelError):
    """The folder is not a cross-encoder this gateway wrote (or it is damaged)."""


@dataclass(frozen=True)
class PairHead:
    weight: npt.NDArray[np.float32]  # over the pooled pair
    bias: float
    max_tokens: int  # both questions together, special tokens included
    card: dict[str, Any]

    def to_json(self) -> str:
        body = {
            "format": HEAD_FORMAT,
            "weight": [float(w) for w in self.weight],
            "bias": self.bias,
            "max_tokens": self.max_tokens,
            "card": self.card,
        }
        return json.dumps(body, indent=1)

    @classmethod
    def read(cls, folder: Path) -> PairHead:
        path = folder / HEAD_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise CrossEncoderError(
                f"{path} is missing: not a folder written by "
                "gateway train-cache-verifier --kind cross-encoder"
            ) from exc
        except json.JSONDecodeError as exc:
            raise CrossEncoderError(f"{path}: {exc}") from exc
        if not isinstance(raw, dict) or raw.get("format") != HEAD_FORMAT:
            raise CrossEncoderError(f"{path}: format is not {HEAD_FORMAT!r}")
        return cls(
            np.asarray(raw["weight"], dtype=np.float32),
            float(raw["bias"]),
            int(raw["max_tokens"]),
            dict(raw.get("card") or {}),
        )


def fingerprint(folder: Path, quantize: Quantize) -> str:
    """Identifies the weights, the head and the export: a retrained folder gets a new one."""
    parts = [str(folder.resolve()), quantize.value, GRAPH_FORMAT]
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in {".safetensors", ".json"}:
            parts.append(f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class CrossEncoder:
    """P(same question) for (query, cached) pairs; synchronous, run on the verifier's thread."""

    def __init__(self, folder: ModelFolder, head: PairHead, model_file: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if head.weight.size != folder.dim:
            raise CrossEncoderError(
                f"{folder.root / HEAD_FILE}: {head.weight.size} weights for a "
                f"{folder.dim}-wide pooled pair"
            )
        self.folder = folder
        self.head = head
        self.max_tokens = min(head.max_tokens, folder.config.max_position_embeddings)
        self._tokenizer = Tokenizer.from_file(str(folder.tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens, strategy="longest_first")
        pad = self._tokenizer.token_to_id("[PAD]")
        self._pad_id = folder.config.pad_token_id if pad is None else pad
        self.session = ort.InferenceSession(
            str(model_file), onnx_session_options(threads), providers=["CPUExecutionProvider"]
        )

    @property
    def card(self) -> dict[str, Any]:
        return self.head.card

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> npt.NDArray[np.float64]:
        """``pairs`` as (query, cached); one probability per pair."""
        if not pairs:
            return np.zeros(0)
        # the cached question first, as in training (``text_a`` is the stored one)
        encoded = [self._tokenizer.encode(cached, query).ids for query, cached in pairs]
        hidden, mask = hidden_states(self.session, encoded, self._pad_id)
        pooled = pool(hidden, mask, self.folder.pooling)
        logit = (pooled @ self.head.weight).astype(np.float64) + self.head.bias
        return 1.0 / (1.0 + np.exp(-np.clip(logit, -40.0, 40.0)))


def load_cross_encoder(path: str, embedding: Embedding, quantize: Quantize) -> CrossEncoder:
    """Read and check the folder, export its graph once into the embedding cache folder."""
    root = Path(path).expanduser()
    head = PairHead.read(root)
    try:
        folder = read_model_folder(root)
    except ModelFolderError as exc:
        raise CrossEncoderError(str(exc)) from exc
    target = embedding.cache_dir / "onnx" / f"pair-{fingerprint(root, quantize)}"
    model_file = prepare_onnx(folder, target, quantize)
    return CrossEncoder(folder, head, model_file, embedding.onnx_threads)
