"""The serving encoder against the one it replaced: import, load, memory and latency.

    .venv/bin/python -m loadtests.bench_encoder [--runs 1000] [--json out.json]

Every figure comes from a fresh process, after a first process has filled the export
cache (so "load" is a warm start, as a restarted worker sees it):

- ``lean``: ``sentence_encoder`` as the gateway runs it (ONNX graph written from the
  weights, the tokenizers library, numpy pooling; no torch);
- ``st``: the previous encoder: sentence-transformers' ONNX backend (exported by
  optimum, int8 by ``export_dynamic_quantized_onnx_model``), needs the training extras;
- ``import-lean`` / ``import-st``: a process that only imports the lean encoder's
  modules, or sentence_transformers.

Latency: one 24-token query (special tokens included), one call at a time, on one
ONNX thread (``embedding.onnx_threads``' default), ``--runs`` calls after 50 warm-up.
Accuracy: cosine with sentence-transformers on PyTorch (fp32) on the 30 sample sentences
of the encoder's tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUERY = (
    "Please summarise the attached quarterly sales report and list the three biggest risks"
    " for next year in short bullet points"
)
QUERY_TOKENS = 24
VARIANTS = ("lean", "st")


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 2**20)


def _percentiles(ms: list[float]) -> dict[str, float]:
    import numpy as np

    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 99)}


def _load_st(cache: Path, quantize: str) -> Any:
    """The previous ``load_sentence_transformer`` (ONNX backend), export included."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    from extensions.embedding.encoder import resolve_model_path
    from extensions.embedding.onnx_encoder import onnx_session_options
    from extensions.embedding.onnx_export import int8_config

    folder = cache / f"st-onnx-{quantize}"
    name = "onnx/model.onnx" if quantize == "none" else f"onnx/model_qint8_{int8_config()}.onnx"
    if not (folder / name).is_file():
        source = str(resolve_model_path("builtin:all-MiniLM-L6-v2"))
        model = SentenceTransformer(source, backend="onnx", device="cpu")
        model.save_pretrained(str(folder))
        if quantize == "int8":
            export_dynamic_quantized_onnx_model(model, int8_config(), str(folder))
    kwargs = {"file_name": name, "session_options": onnx_session_options(1)}
    model = SentenceTransformer(str(folder), backend="onnx", device="cpu", model_kwargs=kwargs)
    model.max_seq_length = 64
    return model


def _import(variant: str) -> None:
    if variant == "lean":
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        import extensions.embedding.encoder
        import extensions.embedding.onnx_encoder  # noqa: F401
    else:
        import sentence_transformers  # noqa: F401


def _encoder(variant: str, quantize: str, cache: Path) -> Callable[[list[str]], Any]:
    if variant == "lean":
        from extensions.embedding.encoder import sentence_encoder
        from extensions.embedding.settings import Embedding, Quantize

        encoder = sentence_encoder(Embedding(cache_dir=cache, quantize=Quantize(quantize)))
        window = encoder.window
        assert window is not None and window.token_count(QUERY) == QUERY_TOKENS
        return encoder.encode_sync
    model = _load_st(cache, quantize)
    return lambda texts: model.encode(texts, normalize_embeddings=True, show_progress_bar=False)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(mark: tuple[float, float]) -> dict[str, float]:
    wall, cpu = _clock()
    return {"wall_s": round(wall - mark[0], 3), "cpu_s": round(cpu - mark[1], 3)}


def child_memory(variant: str, quantize: str, cache: Path, load: bool) -> dict[str, Any]:
    """Import (and load, and encode 200 times) in this fresh process; time and RSS."""
    out: dict[str, Any] = {"variant": variant, "quantize": quantize if load else "-"}
    mark = _clock()
    _import(variant)
    out["import"] = _since(mark)
    out["rss_imported_mb"] = round(_rss_mb(), 1)
    if load:
        mark = _clock()
        encode = _encoder(variant, quantize, cache)
        out["load"] = _since(mark)
        for _ in range(200):
            encode([QUERY])
        out["rss_loaded_mb"] = round(_rss_mb(), 1)
    return out | _loaded_modules()


def child_latency(quantize: str, cache: Path, runs: int) -> dict[str, Any]:
    """Both encoders in one process, alternating blocks of 50 calls, so that whatever else
    the machine does slows both alike."""
    encoders = {v: _encoder(v, quantize, cache) for v in VARIANTS}
    ms: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for encode in encoders.values():
        for _ in range(50):
            encode([QUERY])
    while len(ms["lean"]) < runs:
        for variant, encode in encoders.items():
            for _ in range(50):
                t = time.perf_counter()
                encode([QUERY])
                ms[variant].append((time.perf_counter() - t) * 1000)
    return {"quantize": quantize, "runs": runs} | {v: _percentiles(ms[v]) for v in VARIANTS}


def accuracy(cache: Path) -> dict[str, dict[str, float]]:
    """Cosine of each ONNX encoder's vectors with sentence-transformers on PyTorch (fp32),
    on the sample sentences of tests/unit/test_lean_encoder.py."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from extensions.embedding.encoder import resolve_model_path
    from tests.unit.test_lean_encoder import SAMPLE

    reference = SentenceTransformer(str(resolve_model_path("builtin:all-MiniLM-L6-v2")))
    reference.max_seq_length = 64
    want = reference.encode(SAMPLE, normalize_embeddings=True)
    out = {}
    for variant in VARIANTS:
        for quantize in ("none", "int8"):
            cos = (np.asarray(_encoder(variant, quantize, cache)(SAMPLE)) * want).sum(axis=1)
            out[f"{variant} {quantize}"] = {
                "min_cosine": round(float(cos.min()), 4),
                "mean_cosine": round(float(cos.mean()), 4),
                "max_distance": float(f"{float(1 - cos.min()):.2e}"),
            }
    return out


def _loaded_modules() -> dict[str, Any]:
    heavy = ("torch", "sentence_transformers", "transformers", "optimum")
    return {"torch_stack_loaded": sorted({m.split(".")[0] for m in sys.modules} & set(heavy))}


def _run_child(*flags: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "loadtests.bench_encoder", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench-encoder"))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--child", choices=[*VARIANTS, "latency", "accuracy"], help=argparse.SUPPRESS
    )
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    parser.add_argument("--import-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "accuracy":
        print(json.dumps(accuracy(args.cache)))
        return 0
    if args.child == "latency":
        print(json.dumps(child_latency(args.quantize, args.cache, args.runs)))
        return 0
    if args.child:
        result = child_memory(args.child, args.quantize, args.cache, not args.import_only)
        print(json.dumps(result))
        return 0
    cache = ["--cache", str(args.cache)]
    memory = [_run_child("--child", v, "--import-only", *cache) for v in VARIANTS]
    latency = []
    for quantize in ("none", "int8"):
        for variant in VARIANTS:  # the first load fills the export cache
            _run_child("--child", variant, "--quantize", quantize, *cache)
            memory.append(_run_child("--child", variant, "--quantize", quantize, *cache))
        flags = ["--child", "latency", "--quantize", quantize, "--runs", str(args.runs)]
        latency.append(_run_child(*flags, *cache))
    head = ["encoder", "quantize", "import wall/cpu s", "RSS MB", "load wall/cpu s", "RSS MB"]
    print(" | ".join([*head, "torch stack loaded"]))
    for row in memory:
        imp, load = row["import"], row.get("load")
        cells = [
            row["variant"],
            row["quantize"],
            f"{imp['wall_s']}/{imp['cpu_s']}",
            str(row["rss_imported_mb"]),
            f"{load['wall_s']}/{load['cpu_s']}" if load else "-",
            str(row.get("rss_loaded_mb", "-")),
            ",".join(row["torch_stack_loaded"]) or "-",
        ]
        print(" | ".join(cells))
    for row in latency:
        for variant in VARIANTS:
            stats = row[variant]
            print(
                f"{variant:<8} {row['quantize']:<8} one {QUERY_TOKENS}-token query, "
                f"{row['runs']} calls: p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms"
            )
    scores = _run_child("--child", "accuracy", *cache)
    for name, score in scores.items():
        print(f"{name:<13} vs sentence-transformers fp32 on PyTorch, {score}")
    if args.json:
        result = {"memory": memory, "latency": latency, "accuracy": scores}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
