"""Vector indexes for the semantic cache: the ``VectorIndex`` protocol, in memory and in Redis.

Vectors are L2-normalised, so similarity is the cosine (1 = same direction).
``MemoryVectorIndex``: one HNSW graph (usearch) per namespace, bounded in size
(oldest entries evicted first). ``RedisVectorIndex``: one Redis 8 vector set per
namespace (``VADD``/``VSIM``, HNSW inside Redis), shared by every worker.
Entries' payloads and TTLs live in a ``Store``; an index only finds ids.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from extensions.backends.redis import RedisLink
from extensions.embedding.encoder import Vectors

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Neighbour:
    entry_id: str
    similarity: float


class VectorIndex(Protocol):
    async def add(self, namespace: str, entry_id: str, vector: Vectors, ttl_s: float) -> None: ...

    async def search(self, namespace: str, vector: Vectors, k: int) -> list[Neighbour]: ...

    async def remove(self, namespace: str, entry_id: str) -> None: ...


class _Graph:
    """One namespace's HNSW graph with string ids and first-in-first-out eviction."""

    def __init__(self, dim: int) -> None:
        from usearch.index import Index

        self.index = Index(ndim=dim, metric="cos", dtype="f32", connectivity=16,
                           expansion_add=64, expansion_search=48)  # fmt: skip
        self.ids: OrderedDict[str, int] = OrderedDict()  # entry id -> label, oldest first
        self.names: dict[int, str] = {}


class MemoryVectorIndex:
    """In-process HNSW indexes; at most ``max_entries`` vectors over all namespaces."""

    def __init__(self, dim: int, max_entries: int) -> None:
        self._dim = dim
        self._max = max_entries
        self._graphs: dict[str, _Graph] = {}
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._labels = itertools.count(1)
        # usearch graphs and the maps around them are not safe to change while another
        # thread searches them: every operation runs on this one thread, in order,
        # off the event loop
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vector-index")
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._order)

    def _remove_now(self, namespace: str, entry_id: str) -> None:
        graph = self._graphs.get(namespace)
        if graph is None:
            return
        label = graph.ids.pop(entry_id, None)
        if label is not None:
            graph.names.pop(label, None)
            graph.index.remove(label)
        self._order.pop((namespace, entry_id), None)
        if not graph.ids:
            del self._graphs[namespace]

    def add_now(self, namespace: str, entry_id: str, vector: Vectors) -> None:
        self._remove_now(namespace, entry_id)
        while len(self._order) >= self._max:
            (old_ns, old_id), _ = self._order.popitem(last=False)
            self._order[(old_ns, old_id)] = None  # _remove_now pops it again
            self._remove_now(old_ns, old_id)
            self.evictions += 1
        graph = self._graphs.get(namespace)
        if graph is None:
            graph = self._graphs[namespace] = _Graph(self._dim)
        label = next(self._labels)
        graph.index.add(label, np.asarray(vector, dtype=np.float32).reshape(-1))
        graph.ids[entry_id] = label
        graph.names[label] = entry_id
        self._order[(namespace, entry_id)] = None

    def add_many(self, namespace: str, entry_ids: list[str], vectors: Vectors) -> None:
        """Bulk load (warm start, benchmarks): one multi-threaded insert, no eviction."""
        if len(self._order) + len(entry_ids) > self._max:
            raise ValueError("bulk load larger than max_entries")
        graph = self._graphs.get(namespace)
        if graph is None:
            graph = self._graphs[namespace] = _Graph(self._dim)
        labels = np.array([next(self._labels) for _ in entry_ids], dtype=np.uint64)
        graph.index.add(labels, np.asarray(vectors, dtype=np.float32), threads=0)
        for entry_id, label in zip(entry_ids, labels, strict=True):
            graph.ids[entry_id] = int(label)
            graph.names[int(label)] = entry_id
            self._order[(namespace, entry_id)] = None

    async def _on_index_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def add(self, namespace: str, entry_id: str, vector: Vectors, ttl_s: float) -> None:
        await self._on_index_thread(self.add_now, namespace, entry_id, vector)

    def search_now(self, namespace: str, vector: Vectors, k: int) -> list[Neighbour]:
        graph = self._graphs.get(namespace)
        if graph is None or not graph.ids:
            return []
        found = graph.index.search(np.asarray(vector, dtype=np.float32).reshape(-1), k)
        out = []
        for label, distance in zip(found.keys, found.distances, strict=False):
            name = graph.names.get(int(label))
            if name is not None:
                out.append(Neighbour(name, 1.0 - float(distance)))
        return out

    async def search(self, namespace: str, vector: Vectors, k: int) -> list[Neighbour]:
        return await self._on_index_thread(self.search_now, namespace, vector, k)

    async def remove(self, namespace: str, entry_id: str) -> None:
        await self._on_index_thread(self._remove_now, namespace, entry_id)


class RedisVectorIndex:
    """Redis 8 vector sets, one per namespace (``<prefix>v:<namespace>``).

    On a cluster a namespace's set lives on one shard (namespaces spread by hash); the
    payloads it points to live wherever their own keys hash (nothing reads the two
    atomically). Vector sets have no per-element TTL: an id whose payload expired is removed
    when a search finds it (``remove``), and each set is capped at ``max_entries``
    by removing random members once it grows past the cap.
    """

    def __init__(self, link: RedisLink, max_entries: int) -> None:
        self._link = link
        self._prefix = f"{link.prefix}v:"
        self._max = max_entries

    async def add(self, namespace: str, entry_id: str, vector: Vectors, ttl_s: float) -> None:
        key = self._prefix + namespace
        blob = np.asarray(vector, dtype=np.float32).reshape(-1).tobytes()

        async def op(r):  # type: ignore[no-untyped-def]
            pipe = r.pipeline(transaction=False)
            _cmd(pipe, "VADD", key, "FP32", blob, entry_id, "Q8")
            _cmd(pipe, "VCARD", key)
            _, size = await pipe.execute()
            if int(size) > self._max:
                extra = await _cmd(r, "VRANDMEMBER", key, int(size) - self._max)
                for member in extra or []:
                    await _cmd(r, "VREM", key, member)
            # the set lives a little longer than its newest entry's payload
            await r.expire(key, int(ttl_s) + 60)

        await self._link.run(op, None, route=key)

    async def search(self, namespace: str, vector: Vectors, k: int) -> list[Neighbour]:
        key = self._prefix + namespace
        blob = np.asarray(vector, dtype=np.float32).reshape(-1).tobytes()
        raw = await self._link.run(
            lambda r: _cmd(r, "VSIM", key, "FP32", blob, "WITHSCORES", "COUNT", k), None, route=key
        )
        if not raw:
            return []
        if isinstance(raw, dict):
            pairs = list(raw.items())
        else:
            pairs = list(zip(raw[::2], raw[1::2], strict=False))
        # Redis scores are (1 + cosine) / 2: back to the cosine
        return [Neighbour(_text(m), 2.0 * float(s) - 1.0) for m, s in pairs]

    async def remove(self, namespace: str, entry_id: str) -> None:
        key = self._prefix + namespace
        await self._link.run(lambda r: _cmd(r, "VREM", key, entry_id), None, route=key)


def _cmd(client: Any, *args: Any) -> Any:
    """Redis 8 vector-set commands have no typed redis-py method."""
    return client.execute_command(*args)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
