"""A cross-encoder verifier model: both questions read together by one BERT pass.

A frozen sentence embedding sees each question alone; a cross-encoder attends from
every word of one question to every word of the other, which is what tells "the
best way to brew tea" from "the best way to drink brewed tea". The folder that
``gateway train-cache-verifier --kind cross-encoder`` writes is a sentence-transformers
folder (BERT weights, ``tokenizer.json``, mean pooling) plus ``pair_head.json``: a
logistic layer over the pooled pair, the token budget and a card saying what it was
trained on. Serving reuses the lean encoder's pieces: the graph is built by
``bert_graph`` and cached by ``onnx_export`` (no torch), the pair is tokenised as
``[CLS] cached [SEP] query [SEP]`` with one segment id, as in training. A pair longer
than the model's token budget is not scored (and so not served).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from extensions.cache.pair_model import PairModelError
from extensions.embedding.encoder import exported_onnx
from extensions.embedding.folder import ModelFolder, ModelFolderError
from extensions.embedding.onnx_encoder import bert_tokenizer, hidden_states, open_session
from extensions.embedding.pooling import pool
from extensions.embedding.settings import Embedding, Quantize

HEAD_FILE = "pair_head.json"
HEAD_FORMAT = "gateway-cross-encoder-1"


class CrossEncoderError(PairModelError):
    """The folder is not a cross-encoder this gateway wrote (or it is damaged)."""


class HeadFile(BaseModel):
    """``pair_head.json``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["gateway-cross-encoder-1"]
    weight: list[float] = Field(min_length=1)
    bias: float
    max_tokens: int = Field(ge=8, le=8192)  # both questions together, special tokens included
    card: dict[str, Any] = {}


def pair_encoding(tokenizer: Any, query: str, cached: str) -> Any:
    """``[CLS] cached [SEP] query [SEP]`` (the stored question first, as ``text_a`` is in
    training), cut at the tokenizer's truncation; ``.overflowing`` is non-empty when cut.
    Training and serving both tokenise through here."""
    return tokenizer.encode(cached, query)


@dataclass(frozen=True)
class PairHead:
    weight: npt.NDArray[np.float32]  # over the pooled pair
    bias: float
    max_tokens: int  # both questions together, special tokens included
    card: dict[str, Any]

    def to_json(self) -> str:
        weight = [float(w) for w in self.weight]
        body = HeadFile(
            format=HEAD_FORMAT,
            weight=weight,
            bias=self.bias,
            max_tokens=self.max_tokens,
            card=self.card,
        )
        return json.dumps(body.model_dump(), indent=1)

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
        try:
            head = HeadFile.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()
            )
            raise CrossEncoderError(f"{path}: {problems}") from exc
        weight = np.asarray(head.weight, dtype=np.float32)
        return cls(weight, head.bias, head.max_tokens, head.card)


class CrossEncoder:
    """P(same question) for (query, cached) pairs; synchronous, run on the verifier's thread."""

    def __init__(self, folder: ModelFolder, head: PairHead, model_file: Path, threads: int) -> None:
        if head.weight.size != folder.dim:
            raise CrossEncoderError(
                f"{folder.root / HEAD_FILE}: {head.weight.size} weights for a "
                f"{folder.dim}-wide pooled pair"
            )
        self.folder = folder
        self.head = head
        self.max_tokens = min(head.max_tokens, folder.config.max_position_embeddings)
        self._tokenizer, self._pad_id = bert_tokenizer(folder, self.max_tokens)
        self.session = open_session(model_file, threads)

    @property
    def card(self) -> dict[str, Any]:
        return self.head.card

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        """``pairs`` as (query, cached); P(same question) per pair, None for a pair longer
        than ``max_tokens``: cut, two questions that differ at their ends would read alike."""
        encodings = [pair_encoding(self._tokenizer, query, cached) for query, cached in pairs]
        fits = [i for i, e in enumerate(encodings) if not e.overflowing]
        out: list[float | None] = [None] * len(pairs)
        if not fits:
            return out
        hidden, mask = hidden_states(self.session, [encodings[i].ids for i in fits], self._pad_id)
        pooled = pool(hidden, mask, self.folder.pooling)
        logit = (pooled @ self.head.weight).astype(np.float64) + self.head.bias
        for i, p in zip(fits, 1.0 / (1.0 + np.exp(-np.clip(logit, -40.0, 40.0))), strict=True):
            out[i] = float(p)
        return out


def load_cross_encoder(path: str, embedding: Embedding, quantize: Quantize) -> CrossEncoder:
    """Read and check the folder, export its graph once into the embedding cache folder, and
    score one pair; any failure is a ``CrossEncoderError`` naming the folder."""
    root = Path(path).expanduser().resolve()
    head = PairHead.read(root)
    # exported and cached as the encoder's graph is (the head is applied in numpy)
    graph = embedding.model_copy(update={"model": str(root), "quantize": quantize})
    try:
        folder, model_file = exported_onnx(graph)
        model = CrossEncoder(folder, head, model_file, embedding.onnx_threads)
        model([("a question", "a cached question")])  # a graph that fails only when run
    except CrossEncoderError:
        raise
    except ModelFolderError as exc:
        raise CrossEncoderError(str(exc)) from exc
    except Exception as exc:  # tokenizers, safetensors, onnx: each has its own error types
        raise CrossEncoderError(f"{root}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return model
