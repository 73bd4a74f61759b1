"""Audited semantic hits: a sample of served ``HIT_SEMANTIC`` answers is re-checked off the
request path, and entries whose answer turns out wrong are evicted.

The check asks the model that made the entry to answer the query afresh (through the
same upstream as any request, charged to no key, its cost counted) and compares the two
answers' embeddings: below ``answer_threshold`` the cached answer did not answer this
query, and the entry goes. The share of audits that passed, over the last ``window``
audits, estimates the precision of the hits being served at the current hit rate
(``gateway_cache_audit_precision``). Audits wait in a bounded queue; a full queue skips
(counted), so the request path never waits for one. Fail-open: a failing audit is
counted and logged, and leaves the entry alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extensions.cache.service import ResponseCache
from extensions.cache.settings import Audit
from extensions.embedding.encoder import Encoder
from extensions.pipeline.context import ChatRequest
from extensions.pipeline.upstream import Call, Upstream
from extensions.protocols.chunks import answer_text

logger = logging.getLogger("gateway.cache.audit")


@dataclass(frozen=True, slots=True)
class AuditCase:
    """A served semantic hit: the query as it came, and the entry that answered it."""

    request_id: str
    entry_id: str
    namespace: str
    model_group: str
    request: ChatRequest  # the neutral request (its messages and parameters)
    cached_answer: str
    similarity: float | None


@dataclass
class AuditCounters:
    submitted: int = 0
    skipped: int = 0  # not sampled, or the queue was full
    passed: int = 0
    failed: int = 0  # evicted
    errors: int = 0
    cost_usd: float = 0.0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=200))

    @property
    def precision(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None


class Auditor:
    def __init__(
        self,
        settings: Audit,
        cache: ResponseCache,
        encoder: Encoder,
        upstream: Upstream,
        on_result: Callable[[str, float, float | None], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.encoder = encoder
        self.upstream = upstream
        self.on_result = on_result  # (result, cost, precision) for the metrics
        self.rng = rng or random.Random()
        self.counters = AuditCounters(recent=deque(maxlen=settings.window))
        self._queue: asyncio.Queue[AuditCase] | None = None
        self._worker: asyncio.Task[None] | None = None

    def submit(self, case: AuditCase) -> bool:
        """Sample the hit and queue its audit (never waits); True when queued."""
        self.counters.submitted += 1
        if self.rng.random() >= self.settings.sample_rate:
            self.counters.skipped += 1
            return False
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue(maxsize=self.settings.queue_size)
            self._worker = asyncio.get_running_loop().create_task(self._work(self._queue))
        try:
            self._queue.put_nowait(case)
        except asyncio.QueueFull:
            self.counters.skipped += 1
            return False
        return True

    async def drain(self) -> None:
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self, queue: asyncio.Queue[AuditCase]) -> None:
        while True:
            case = await queue.get()
            try:
                await self.audit(case)
            except Exception:
                self.counters.errors += 1
                logger.warning("cache audit of %s failed", case.entry_id, exc_info=True)
                self._report("error", 0.0)
            finally:
                queue.task_done()

    async def audit(self, case: AuditCase) -> bool:
        """Ask afresh, compare the answers, evict on a mismatch; True when the hit passed."""
        request = ChatRequest(case.model_group, case.request.messages, dict(case.request.params))
        reply = await self.upstream.complete(
            Call(f"audit-{uuid.uuid4().hex}", case.model_group, request)
        )
        fresh = answer_text(reply.body)
        vectors = await self.encoder.encode([case.cached_answer, fresh])
        agreement = float(np.dot(vectors[0], vectors[1]))
        passed = agreement >= self.settings.answer_threshold
        self.counters.cost_usd += reply.served.cost_usd
        self.counters.recent.append(passed)
        if passed:
            self.counters.passed += 1
        else:
            self.counters.failed += 1
            await self.cache.evict(case.namespace, case.entry_id)
        logger.info("%s", json.dumps(self._line(case, agreement, passed, reply.served.cost_usd)))
        self._report("pass" if passed else "fail", reply.served.cost_usd)
        return passed

    def _report(self, result: str, cost: float) -> None:
        if self.on_result is not None:
            self.on_result(result, cost, self.counters.precision)

    def summary(self) -> dict[str, Any]:
        """This worker's audits, for the dashboard."""
        c = self.counters
        return {
            "audited": c.passed + c.failed,
            "passed": c.passed,
            "failed": c.failed,
            "errors": c.errors,
            "skipped": c.skipped,
            "precision": c.precision,
            "cost_usd": round(c.cost_usd, 8),
        }

    def _line(self, case: AuditCase, agreement: float, passed: bool, cost: float) -> dict[str, Any]:
        return {
            "event": "cache_audit",
            "request_id": case.request_id,
            "entry": case.entry_id[:16],
            "model_group": case.model_group,
            "query_similarity": case.similarity,
            "answer_agreement": round(agreement, 4),
            "result": "pass" if passed else "fail (evicted)",
            "cost_usd": round(cost, 10),
            "precision": self.counters.precision,
        }
