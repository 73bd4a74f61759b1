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


def child(variant: str, quantize: str, cache: Path, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {"variant": variant, "quantize": quantize}
    rss0 = _rss_mb()
    started = time.perf_counter()
    if variant in ("lean", "import-lean"):
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        import extensions.embedding.encoder
        import extensions.embedding.onnx_encoder  # noqa: F401
    else:
        import sentence_transformers  # noqa: F401
    out["import_s"] = round(time.perf_counter() - started, 3)
    out["rss_start_mb"] = round(rss0, 1)
    out["rss_imported_mb"] = round(_rss_mb(), 1)
    if variant.startswith("import-"):
        return out | _loaded_modules()
    started = time.perf_counter()
    if variant == "lean":
        from extensions.embedding.encoder import sentence_encoder
        from extensions.embedding.settings import Embedding, Quantize

        encoder = sentence_encoder(Embedding(cache_dir=cache, quantize=Quantize(quantize)))
        window = encoder.window
        assert window is not None and window.token_count(QUERY) == QUERY_TOKENS
        encode: Callable[[list[str]], Any] = encoder.encode_sync
    else:
        model = _load_st(cache, quantize)

        def encode(texts: list[str]) -> Any:
            return model.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    out["load_s"] = round(time.perf_counter() - started, 3)
    out["rss_loaded_mb"] = round(_rss_mb(), 1)
    for _ in range(50):
        encode([QUERY])
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        encode([QUERY])
        ms.append((time.perf_counter() - t) * 1000)
    out["rss_after_runs_mb"] = round(_rss_mb(), 1)
    return out | _percentiles(ms) | _loaded_modules()


def _loaded_modules() -> dict[str, Any]:
    heavy = ("torch", "sentence_transformers", "transformers", "optimum")
    return {"torch_stack_loaded": sorted({m.split(".")[0] for m in sys.modules} & set(heavy))}


def _run_child(variant: str, quantize: str, cache: Path, runs: int) -> dict[str, Any]:
    flags = ["--child", variant, "--quantize", quantize, "--cache", str(cache)]
    cmd = [sys.executable, "-m", "loadtests.bench_encoder", *flags, "--runs", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench-encoder"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=[*VARIANTS, "import-lean", "import-st"])
    parser.add_argument("--quantize", choices=["none", "int8"], default="none")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.quantize, args.cache, args.runs)))
        return 0
    rows = [_run_child(v, "none", args.cache, 1) for v in ("import-lean", "import-st")]
    for quantize in ("none", "int8"):
        for variant in VARIANTS:
            _run_child(variant, quantize, args.cache, 1)  # fills the export cache
            rows.append(_run_child(variant, quantize, args.cache, args.runs))
    keys = ["import_s", "rss_imported_mb", "load_s", "rss_loaded_mb", "p50_ms", "p99_ms"]
    print(f"{'variant':<12} {'quantize':<8} " + " ".join(f"{k:>15}" for k in keys))
    for row in rows:
        cells = " ".join(f"{row.get(k, '-')!s:>15}" for k in keys)
        print(f"{row['variant']:<12} {row['quantize']:<8} {cells}  {row['torch_stack_loaded']}")
    if args.json:
        args.json.write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
