"""In-process micro-benchmark for ``loadtests/benchmark.py``: the router classifier and the
semantic-cache lookup on their own, with no load and no server around them.

Builds them exactly as a proxy worker does (``build_routing`` / ``build_caching`` from
``config/gateway.yaml``) and times, one call at a time:

- ``RouterEngine.route``: encode the query (ONNX, on the encoder's thread) + the head
  + the decision, for unique support queries;
- ``ResponseCache.semantic``: neighbours, payload and verification, against an index of
  ``entries`` real embeddings, for paraphrases that hit and numbered queries that miss.

    .venv/bin/python -m loadtests.bench_inprocess [--queries 300] [--entries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from extensions.launcher import DEFAULT_GATEWAY_CONFIG, DEFAULT_LITELLM_CONFIG

SUPPORT_QUERIES = (
    "can I change my username",
    "I forgot my password",
    "my app crashes when I open it",
    "I was charged twice this month",
    "how do I cancel my subscription",
    "what are your support hours",
    "the website shows an error when I log in",
    "do you have a student discount",
    "freeze my account",
    "tell me a joke",
)
HIT_QUERIES = (
    "what is a good way to learn python?",
    "What is a good way to learn Python",
    "What's a good way to learn Python?",
    "What is the best way to learn Python?",
    "what's a good way to learn python",
)
SEED = "What is a good way to learn Python?"


def _stats(ms: list[float]) -> dict[str, float]:
    from loadtests.bench_semantic_lookup import percentiles

    return {"n": len(ms), **percentiles(ms)}


async def run(queries: int, entries: int, gateway_yaml: Path, litellm_yaml: Path) -> dict[str, Any]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download
    from extensions.app.assembly import build_cache, build_router
    from extensions.cache.keys import RequestKey
    from extensions.cache.service import Entry
    from extensions.config.loader import litellm_model_groups, load_gateway_config
    from extensions.embedding.encoder import sentence_encoder

    started = time.perf_counter()
    config = load_gateway_config(gateway_yaml, litellm_model_groups(litellm_yaml), os.environ)
    encoder = sentence_encoder(config.embedding)
    engine, _ = build_router(config, gateway_yaml.parent, encoder)
    requests = build_cache(config, encoder, None, gateway_yaml)
    build_s = time.perf_counter() - started
    out: dict[str, Any] = {"build_s": round(build_s, 1)}

    router = next(iter(config.routers))
    for q in SUPPORT_QUERIES:  # warm up
        await engine.route(router, [{"role": "user", "content": q}])
    ms: list[float] = []
    for i in range(queries):
        text = f"{SUPPORT_QUERIES[i % len(SUPPORT_QUERIES)]} (ticket {i})"
        t = time.perf_counter()
        await engine.route(router, [{"role": "user", "content": text}])
        ms.append((time.perf_counter() - t) * 1000)
    out["classifier"] = {"router": router, **_stats(ms)}

    cache = requests.cache
    texts = [
        f"Benchmark question {i}: how does photosynthesis work in plants?"
        for i in range(entries - 1)
    ] + [SEED]
    vectors = encoder.encode_sync(texts)
    response = {
        "choices": [
            {"message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}
        ]
    }
    for i, (text, vec) in enumerate(zip(texts, vectors, strict=True)):
        key = RequestKey(f"bench-{i}", "bench", text)
        await cache.put(key, vec, Entry(response, text, None, "gpt-sim", time.time()), 3600)
    threshold = config.cache.semantic.threshold
    hit_texts = [HIT_QUERIES[i % len(HIT_QUERIES)] for i in range(queries)]
    miss_texts = [
        f"Benchmark question {entries + i}: how does photosynthesis work in plants?"
        for i in range(queries)
    ]
    for kind, batch in (("hit", hit_texts), ("miss", miss_texts)):
        vecs = encoder.encode_sync(batch)
        ms, found = [], 0
        for i, (text, vec) in enumerate(zip(batch, vecs, strict=True)):
            key = RequestKey(f"q-{kind}-{i}", "bench", text)
            t = time.perf_counter()
            match = await cache.semantic(key, np.asarray(vec, dtype=np.float32), threshold)
            ms.append((time.perf_counter() - t) * 1000)
            found += match.entry is not None
        out[f"semantic_{kind}"] = {**_stats(ms), "found": found, "entries": entries}
    return out


def micro_benchmark(
    queries: int = 300,
    entries: int = 2000,
    gateway_yaml: Path = DEFAULT_GATEWAY_CONFIG,
    litellm_yaml: Path = DEFAULT_LITELLM_CONFIG,
) -> dict[str, Any]:
    return asyncio.run(run(queries, entries, gateway_yaml, litellm_yaml))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--gateway-config", type=Path, default=DEFAULT_GATEWAY_CONFIG)
    parser.add_argument("--config", type=Path, default=DEFAULT_LITELLM_CONFIG)
    args = parser.parse_args()
    print(
        json.dumps(
            micro_benchmark(args.queries, args.entries, args.gateway_config, args.config), indent=2
        )
    )


if __name__ == "__main__":
    main()
