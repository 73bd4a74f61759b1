"""Key-value stores for cache entries: the ``Store`` protocol, in memory and in Redis.

``MemoryStore``: bounded, with LRU, LFU or FIFO eviction and per-entry TTLs.
``RedisStore``: shared by every worker and replica; Redis expires the entries.
``TieredStore``: memory in front of Redis, read through and written to both.
All are async and never raise for a Redis outage (``RedisLink`` degrades).
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from extensions.backends.redis import RedisLink
from extensions.cache.settings import Eviction


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass(slots=True)
class _Slot:
    value: bytes
    expires: float
    hits: int = 0
    stamp: int = 0  # LFU: version, so stale heap entries are skipped


@dataclass
class MemoryStore:
    """A bounded in-process store; eviction order set by ``policy``."""

    max_entries: int
    policy: Eviction = Eviction.LRU
    clock: Callable[[], float] = time.monotonic
    evictions: int = 0
    _data: OrderedDict[str, _Slot] = field(default_factory=OrderedDict)
    _heap: list[tuple[int, int, str]] = field(default_factory=list)  # LFU: (hits, stamp, key)
    _seq: int = 0

    def __len__(self) -> int:
        return len(self._data)

    def keys(self) -> list[str]:
        return list(self._data)

    def _touch(self, key: str, slot: _Slot) -> None:
        if self.policy is Eviction.LRU:
            self._data.move_to_end(key)
        elif self.policy is Eviction.LFU:
            self._seq += 1
            slot.stamp = self._seq
            heapq.heappush(self._heap, (slot.hits, slot.stamp, key))
            if len(self._heap) > 4 * len(self._data) + 64:  # drop stale heap entries
                self._heap = [(s.hits, s.stamp, k) for k, s in self._data.items()]
                heapq.heapify(self._heap)

    def get_now(self, key: str) -> bytes | None:
        slot = self._data.get(key)
        if slot is None:
            return None
        if slot.expires <= self.clock():
            self._remove(key)
            return None
        slot.hits += 1
        self._touch(key, slot)
        return slot.value

    def set_now(self, key: str, value: bytes, ttl_s: float) -> None:
        slot = self._data.get(key)
        if slot is not None:
            slot.value, slot.expires = value, self.clock() + ttl_s
        else:
            while len(self._data) >= self.max_entries:
                self._evict_one()
            slot = _Slot(value, self.clock() + ttl_s)
            self._data[key] = slot
        self._touch(key, slot)

    def _remove(self, key: str) -> None:
        self._data.pop(key, None)

    def _evict_one(self) -> None:
        now = self.clock()
        expired = next((k for k, s in self._data.items() if s.expires <= now), None)
        if expired is not None and len(self._data) < 4096:  # cheap on small stores only
            self._remove(expired)
            return
        if self.policy is Eviction.LFU:
            while self._heap:
                _, stamp, key = heapq.heappop(self._heap)
                slot = self._data.get(key)
                if slot is not None and slot.stamp == stamp:
                    break
            else:
                key = next(iter(self._data))
        else:  # LRU keeps the least recent first; FIFO never reorders
            key = next(iter(self._data))
        self._remove(key)
        self.evictions += 1

    async def get(self, key: str) -> bytes | None:
        return self.get_now(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.set_now(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        self._remove(key)


class RedisStore:
    """Entries under ``<prefix>c:<key>`` with a Redis TTL; misses when Redis (or, on a
    cluster, the entry's shard) is down. Entries spread over a cluster's shards by hash."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._prefix = f"{link.prefix}c:"

    async def get(self, key: str) -> bytes | None:
        name = self._prefix + key
        value = await self._link.run(lambda r: r.get(name), None, route=name)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        name = self._prefix + key
        ttl_ms = max(1, int(ttl_s * 1000))
        await self._link.run(lambda r: r.set(name, value, px=ttl_ms), None, route=name)

    async def delete(self, key: str) -> None:
        name = self._prefix + key
        await self._link.run(lambda r: r.delete(name), None, route=name)


class TieredStore:
    """This process's memory in front of a shared store (read through, written to both).

    A memory copy lives at most ``memory_ttl_s`` so entries that expired in Redis do
    not linger for long in a worker.
    """

    def __init__(self, memory: MemoryStore, shared: Store, memory_ttl_s: float = 60.0) -> None:
        self.memory = memory
        self.shared = shared
        self._memory_ttl_s = memory_ttl_s

    async def get(self, key: str) -> bytes | None:
        value = self.memory.get_now(key)
        if value is not None:
            return value
        value = await self.shared.get(key)
        if value is not None:
            self.memory.set_now(key, value, self._memory_ttl_s)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.memory.set_now(key, value, min(ttl_s, self._memory_ttl_s))
        await self.shared.set(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        await self.memory.delete(key)
        await self.shared.delete(key)
