"""Counters for the dashboard: what each finished request adds to its minute.

Each request-log record counts in totals, the router's action, the cache outcome,
and breakdowns by model group, deployment, provider, key, team, intent, error,
failed attempt, fallback, degradation and PII finding. Label values are bounded
(``labels.Labels``). On the event loop a request is only its ``signature`` (a tuple
of bounded labels) and amounts, summed per signature in the worker; every few
seconds the sums are expanded into fields (``expand``) and flushed into buckets of
1 minute (kept 3 h: the hour view) and 5 minutes (kept 26 h: the 6-hour and day
views), in this process (``MemoryTimeline``) or in Redis (``RedisTimeline``: one
hash per bucket, shared by workers and replicas, all under one hash tag so a read
is one shard's work on a cluster). Fail-open: a Redis outage loses the increments
of that flush, never a request.

A field is ``dim|value|metric``; the read side is ``observe/series.py``.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from extensions.backends.redis import RedisLink
from extensions.observe.labels import (
    ACTIONS,
    ATTEMPT_ERRORS,
    CACHE_OUTCOMES,
    ERROR_TYPES,
    NONE,
    OTHER,
    PII_ACTIONS,
    PII_KINDS,
    Labels,
    pick,
)

LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
KEEP_S = {1: 3 * 3600, 5: 26 * 3600}  # bucket size in minutes -> seconds kept
Fields = dict[str, float]
Buckets = dict[int, Fields]  # bucket index (epoch minute // size) -> field -> value
ALL = "*"  # the value of the totals' fields


def latency_slot(ms: float) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BOUNDS_MS)


@functools.lru_cache(maxsize=16384)
def split(name: str) -> tuple[str, str, str]:
    """``dim|value|metric`` -> its three parts (a value may itself contain ``|``)."""
    dim, _, rest = name.partition("|")
    value, _, metric = rest.rpartition("|")
    return dim, value, metric


def error_source(record: Mapping[str, Any]) -> str:
    error = record.get("error")
    source = error.get("source") if isinstance(error, Mapping) else None
    return "upstream" if source == "upstream" else "gateway"


def error_class(status: int, kind: str, source: str) -> str:
    """Which of a few operator-facing classes an error answer belongs to."""
    if status == 499:
        return "client_gone"
    if source == "upstream":
        if status == 429:
            cooling = kind == "all_deployments_in_cooldown"
            return "upstream_cooldown" if cooling else "upstream_rate_limit"
        return "upstream_failed" if status >= 500 else "upstream_rejected"
    if status == 429:
        return "gateway_budget" if kind == "budget_exceeded" else "gateway_rate_limit"
    return "gateway_error" if status >= 500 else "client_error"


METRICS = ("n", "err", "usd", "tin", "tout", "saved", "dg", "fb", "ctok", "csav", "csto")
N, ERR, USD, TIN, TOUT, SAVED, DG, FB, CTOK, CSAV, CSTO = range(len(METRICS))
SLOT = len(METRICS)  # names[SLOT + i]: latency slot i


@functools.lru_cache(maxsize=8192)
def names_of(dim: str, value: str) -> tuple[str, ...]:
    """Every field name of one ``dim|value`` (values are bounded, so is this cache)."""
    slots = (f"l{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
    return tuple(f"{dim}|{value}|{metric}" for metric in (*METRICS, *slots))


Signature = tuple[Any, ...]  # what a request was, in bounded labels (see ``signature``)
SUMS = 9  # n, usd, saved, tin, tout, fb and the provider prompt cache's tokens, saved, storage


def signature(record: Mapping[str, Any], labels: Labels) -> tuple[Signature, tuple[float, ...]]:
    """One request-log record as its bounded labels and its amounts. Requests of the same
    signature are summed in the worker (the per-request work on the event loop) and only
    expanded into fields (``expand``) when flushed."""
    status = int(record.get("status") or 0)
    tokens = record.get("tokens") or {}
    total = (record.get("latency_ms") or {}).get("total")
    served = None
    if record.get("deployment") is not None:  # served: by a model, the cache or the router
        served = (
            labels.group(record.get("model_group")),
            labels.deployment(record.get("deployment")),
            labels.provider(record.get("provider")),
        )
    alias, team, router = record.get("key_alias"), record.get("team"), record.get("router")
    error = None
    if status >= 400:
        raw = record.get("error")
        kind = pick(ERROR_TYPES, raw.get("type")) if isinstance(raw, Mapping) else NONE
        error = (status if 100 <= status <= 599 else OTHER, kind, error_source(record))
    failed_attempts = record.get("failed_attempts")
    attempts: tuple[tuple[str, str], ...] = ()
    if failed_attempts:
        attempts = tuple(
            (labels.group(a.get("model_group")), pick(ATTEMPT_ERRORS, a.get("error")))
            for a in failed_attempts
            if isinstance(a, Mapping)
        )
    fallbacks = int(record.get("fallbacks") or 0)
    degraded = record.get("degraded")
    pii = record.get("pii")
    sig = (
        pick(ACTIONS, record.get("action")),
        pick(CACHE_OUTCOMES, record.get("cache")),
        latency_slot(float(total)) if isinstance(total, int | float) else None,
        served,
        None if alias is None else labels.key(alias),
        None if team is None else labels.team(team),
        (labels.router(router), labels.intent(router, record.get("intent"))) if router else None,
        error,
        attempts,
        labels.route(record.get("route")) if fallbacks else None,
        ("cache_only" if str(degraded).startswith("cache_only") else "model") if degraded else None,
        (
            pick(PII_ACTIONS, pii.get("action")),
            tuple(pick(PII_KINDS, k) for k in pii.get("kinds") or ()),
        )
        if pii and isinstance(pii, Mapping)
        else None,
    )
    prompt_cache = record.get("prompt_cache")
    cache = prompt_cache if isinstance(prompt_cache, Mapping) else {}
    amounts = (
        float(record.get("cost_usd") or 0.0),
        float(record.get("saved_usd") or 0.0),
        float(tokens.get("prompt") or 0),
        float(tokens.get("completion") or 0),
        float(fallbacks),
        float(cache.get("read_tokens") or 0),
        float(cache.get("saved_usd") or 0.0),
        float(cache.get("storage_usd") or 0.0),
    )
    return sig, amounts


def expand(into: defaultdict[str, float], sig: Signature, sums: list[float]) -> None:
    """Add the fields of ``sums[0]`` requests of one signature to ``into``."""
    action, cache, slot, served, key, team, intent, error, attempts, route, rung, pii = sig
    n, usd, saved, tin, tout, fb, ctok, csav, csto = sums
    dims = [names_of("T", ALL)]
    if served is not None:
        dims += [names_of("G", served[0]), names_of("D", served[1]), names_of("P", served[2])]
    for names in dims:
        for i, amount in ((N, n), (ERR, n if error else 0), (USD, usd), (TIN, tin), (TOUT, tout),
                          (CTOK, ctok), (CSAV, csav), (CSTO, csto)):  # fmt: skip
            if amount:
                into[names[i]] += amount
        if slot is not None:
            into[names[SLOT + slot]] += n
    into[names_of("A", action)[N]] += n
    into[names_of("C", cache)[N]] += n
    if saved:
        into[dims[0][SAVED]] += saved
        into[names_of("S", "cache" if cache.startswith("HIT") else "router")[USD]] += saved
    for dim, value in (("K", key), ("M", team)):
        if value is not None:
            names = names_of(dim, value)
            for i, amount in ((N, n), (ERR, n if error else 0), (USD, usd), (DG, n if rung else 0)):
                if amount:
                    into[names[i]] += amount
    if intent is not None:
        names = names_of("I", f"{intent[0]}/{intent[1]}")
        for i, amount in ((N, n), (USD, usd), (SAVED, saved)):
            if amount:
                into[names[i]] += amount
    if error is not None:
        into[names_of("E", "/".join(map(str, error)))[N]] += n
    for group, kind in attempts:
        into[names_of("F", f"{group}/{kind}")[N]] += n
    if route is not None:
        into[names_of("B", route)[N]] += n
        into[names_of("B", route)[FB]] += fb
    if rung is not None:
        into[names_of("R", rung)[N]] += n
    if pii is not None:
        into[names_of("X", pii[0])[N]] += n
        for kind in pii[1]:
            into[names_of("Y", kind)[N]] += n


def increments(record: Mapping[str, Any], labels: Labels) -> Fields:
    """What one request-log record adds to its minute."""
    sig, amounts = signature(record, labels)
    into: defaultdict[str, float] = defaultdict(float)
    expand(into, sig, [1.0, *amounts])
    return dict(into)


class Timeline(Protocol):
    async def add(self, minutes: Buckets) -> None:
        """Add per-minute increments to the buckets of every size."""

    async def read(self, size: int, indexes: Iterable[int]) -> Buckets:
        """The buckets of ``size`` minutes at ``indexes`` (missing ones left out)."""


def by_size(minutes: Buckets) -> dict[int, Buckets]:
    """Per-minute increments summed into the buckets of every kept size."""
    out: dict[int, Buckets] = {}
    for size in KEEP_S:
        sized: dict[int, defaultdict[str, float]] = {}
        for minute, fields in minutes.items():
            bucket = sized.setdefault(minute // size, defaultdict(float))
            for name, value in fields.items():
                bucket[name] += value
        out[size] = {index: dict(fields) for index, fields in sized.items()}
    return out


class MemoryTimeline:
    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._buckets: dict[int, dict[int, defaultdict[str, float]]] = {s: {} for s in KEEP_S}

    async def add(self, minutes: Buckets) -> None:
        now_minute = int(self._clock()) // 60
        for size, buckets in by_size(minutes).items():
            held = self._buckets[size]
            for index, fields in buckets.items():
                bucket = held.setdefault(index, defaultdict(float))
                for name, value in fields.items():
                    bucket[name] += value
            oldest = (now_minute - KEEP_S[size] // 60) // size
            for index in [i for i in held if i < oldest]:
                del held[index]

    async def read(self, size: int, indexes: Iterable[int]) -> Buckets:
        held = self._buckets.get(size, {})
        return {i: dict(held[i]) for i in indexes if i in held}


class RedisTimeline:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.prefix = f"{link.prefix}{{tl}}:"  # one hash tag: every bucket on one shard

    def _key(self, size: int, index: int) -> str:
        return f"{self.prefix}{size}:{index}"

    async def add(self, minutes: Buckets) -> None:
        sized = by_size(minutes)

        async def op(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for size, buckets in sized.items():
                for index, fields in buckets.items():
                    key = self._key(size, index)
                    for name, value in fields.items():
                        pipe.hincrbyfloat(key, name, value)
                    pipe.expire(key, KEEP_S[size])
            await pipe.execute()

        await self.link.run(op, None, route=self.prefix)

    async def read(self, size: int, indexes: Iterable[int]) -> Buckets:
        wanted = list(indexes)

        async def op(client: Any) -> Buckets:
            pipe = client.pipeline(transaction=False)
            for index in wanted:
                pipe.hgetall(self._key(size, index))
            rows = await pipe.execute()
            return {
                index: {k.decode(): float(v) for k, v in row.items()}
                for index, row in zip(wanted, rows, strict=True)
                if row
            }

        return await self.link.run(op, {}, route=self.prefix)


class TimelineRecorder:
    """Sums requests by signature in this worker; ``flush`` expands them into fields and
    hands them to the store."""

    def __init__(self, store: Timeline, labels: Labels | None = None) -> None:
        self.store = store
        self.labels = labels or Labels()
        self._pending: dict[int, dict[Signature, list[float]]] = {}

    def add(self, record: Mapping[str, Any], now: float | None = None) -> None:
        minute = int(time.time() if now is None else now) // 60
        sig, amounts = signature(record, self.labels)
        pending = self._pending.get(minute)
        if pending is None:
            pending = self._pending[minute] = {}
        sums = pending.get(sig)
        if sums is None:
            pending[sig] = [1.0, *amounts]
            return
        sums[0] += 1
        for i, amount in enumerate(amounts, 1):
            sums[i] += amount

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        minutes: Buckets = {}
        for minute, by_signature in pending.items():
            into: defaultdict[str, float] = defaultdict(float)
            for sig, sums in by_signature.items():
                expand(into, sig, sums)
            minutes[minute] = dict(into)
        await self.store.add(minutes)
