"""The serving encoder: the tokenizers library, an ONNX Runtime session and numpy.

No torch, transformers or sentence-transformers is imported: the graph is built by
``bert_graph`` (once, cached by ``onnx_export``), texts are tokenised from the
folder's ``tokenizer.json`` (truncated at ``max_seq_length``, padded to the longest
text of the batch), and pooling and normalisation are numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from extensions.embedding.folder import ModelFolder
from extensions.embedding.pooling import Vectors, l2_normalise, pool
from extensions.embedding.window import TokenWindow


def onnx_session_options(threads: int) -> Any:
    """``threads`` intra-op threads that sleep when idle (ONNX's default spins a thread per
    core between calls, taking CPU from the event loops on the same cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def bert_tokenizer(folder: ModelFolder, max_tokens: int) -> tuple[Any, int]:
    """The folder's ``tokenizer.json``, cutting at ``max_tokens`` (a pair: the longer side
    first) and not padding (``hidden_states`` pads per batch), and its padding id."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder.tokenizer))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    pad = tokenizer.token_to_id("[PAD]")
    return tokenizer, folder.config.pad_token_id if pad is None else pad


def open_session(model_file: Path, threads: int) -> Any:
    """An ONNX Runtime session on the CPU with ``onnx_session_options``."""
    import onnxruntime as ort

    options = onnx_session_options(threads)
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def hidden_states(
    session: Any, encoded: list[list[int]], pad_id: int
) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """The BERT graph's token vectors for token id lists padded to the longest, and the mask."""
    ids = np.full((len(encoded), max(map(len, encoded))), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, tokens in enumerate(encoded):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return hidden, mask


class OnnxSentenceEncoder:
    """Synchronous encoder. Calls from the encoder's thread and from a reload's build may
    overlap: an ONNX Runtime session and a tokenizer's ``encode`` both allow that."""

    def __init__(
        self, folder: ModelFolder, model_file: Path, max_seq_length: int, threads: int
    ) -> None:
        self._folder = folder
        self.max_tokens = min(max_seq_length, folder.config.max_position_embeddings)
        self._tokenizer, self._pad_id = bert_tokenizer(folder, self.max_tokens)
        self.session = open_session(model_file, threads)
        self.window = TokenWindow.from_tokenizer_file(folder.tokenizer, self.max_tokens)

    @property
    def dim(self) -> int:
        return self._folder.dim

    def __call__(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # one text at a time: encode_batch would start a thread pool per core
        encoded = [self._tokenizer.encode(text).ids for text in texts]
        hidden, mask = hidden_states(self.session, encoded, self._pad_id)
        return l2_normalise(pool(hidden, mask, self._folder.pooling))
