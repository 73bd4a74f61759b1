"""``embedding`` section of gateway.yaml."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field

from extensions.config.base import StrictModel


class Backend(StrEnum):
    ONNX = "onnx"
    TORCH = "torch"


class Quantize(StrEnum):
    NONE = "none"
    INT8 = "int8"  # dynamic int8 ONNX (for the CPU's instruction set): ~2x faster


class Embedding(StrictModel):
    """The one sentence encoder shared by the router and the semantic cache."""

    model: str = "builtin:all-MiniLM-L6-v2"
    backend: Backend = Backend.ONNX
    quantize: Quantize = Quantize.NONE  # onnx backend only
    max_seq_length: int = Field(64, ge=8, le=512)
    max_batch_size: int = Field(32, ge=1, le=512)
    batch_window_ms: float = Field(0.0, ge=0, le=50)
    cache_dir: Path = Path(".cache/gateway")
    # ONNX Runtime threads per encoder. One thread, without spin-waiting, leaves the
    # other cores to the event loops: ONNX's default (a spinning thread per core) made
    # every cache miss slower under load (loadtests/benchmark.py, README).
    onnx_threads: int = Field(1, ge=1, le=64)
