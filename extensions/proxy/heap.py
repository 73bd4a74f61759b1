"""Move the start-up heap out of the garbage collector's reach (``gc.freeze``).

A worker starts with millions of long-lived objects (LiteLLM, pydantic models, the
model's Python side). CPython's full collections walk all of them, on whatever thread
triggered the collection: usually the event loop. The benchmark's GC probe saw
stalls of up to 0.8 s per full collection under load; with the start-up heap frozen,
the longest was 34 ms (``loadtests/benchmark.py --gc-probe``, README).

Frozen objects are never collected: that is right for objects that live as long as
the worker. A later config reload builds new objects; they stay collectable.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("gateway.heap")

# LiteLLM imports our callbacks midway through its start-up; it finishes building its
# router and routes within a few seconds. Freezing later only leaves more to collect.
SETTLE_S = 5.0


def freeze_heap() -> int:
    """Collect once, then freeze what survives; the number of objects frozen."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "froze the start-up heap: %d objects in %.0f ms",
        frozen,
        (time.perf_counter() - started) * 1000,
    )
    return frozen


def freeze_after_start(loop: asyncio.AbstractEventLoop, settle_s: float = SETTLE_S) -> None:
    """Freeze the heap ``settle_s`` after the worker's start-up, before steady traffic."""
    loop.call_later(settle_s, freeze_heap)
