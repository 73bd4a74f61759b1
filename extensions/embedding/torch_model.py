"""``embedding.backend: torch``: the model run by sentence-transformers on PyTorch.

For commands on a machine with the training extras (``make train-deps``); the
serving install has no torch and uses the ONNX backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from extensions.embedding.pooling import Vectors
from extensions.embedding.window import TokenWindow


class TorchSentenceEncoder:
    """A ``SentenceTransformer`` on the CPU behind the same interface as the ONNX encoder."""

    def __init__(self, source: Path, max_seq_length: int, batch_size: int) -> None:
        from extensions.embedding.training_deps import require_training_deps

        require_training_deps("embedding.backend: torch")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # from disk only, never the hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model: Any = SentenceTransformer(str(source), device="cpu")
        self.model.max_seq_length = max_seq_length
        self._batch_size = batch_size
        tokenizer = self.model.tokenizer
        self.window = TokenWindow(lambda text: len(tokenizer(text)["input_ids"]), max_seq_length)
        dimension = getattr(self.model, "get_embedding_dimension", None)
        self.dim = int((dimension or self.model.get_sentence_embedding_dimension)())

    def __call__(self, texts: list[str]) -> Vectors:
        out = self.model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)
