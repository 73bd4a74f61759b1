"""Request-rate, token-rate and parallel-request limits, shared through Redis or in process.

Subjects are a key (``key:<alias>``) and its team (``team:<name>``): a team limit is
shared by all its keys. Windows are calendar minutes. ``admit`` checks every
subject's limits and, only if all pass, counts the request for all of them, in one
atomic step (a Lua script in Redis), so N workers and replicas together admit
exactly the limit. Tokens are counted after the answer (``charge_tokens``): a
subject over its tokens-per-minute is refused until the window ends.
Parallel requests are a sorted set of in-flight request ids with a safety expiry,
so a request that never reports its end cannot hold a slot for ever.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from extensions.access.settings import Access
from extensions.backends.redis import RedisLink

WINDOW_S = 60
IN_FLIGHT_MAX_AGE_S = 600.0


@dataclass(frozen=True, slots=True)
class SubjectLimits:
    subject: str  # "key:<alias>" or "team:<name>"
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    subject: str | None = None  # the subject whose limit refused
    limit: str | None = None  # "rpm", "tpm" or "max_parallel"
    retry_after_s: int = 0


ALLOWED = Verdict(True)


class LimitStore(Protocol):
    async def admit(self, limits: Sequence[SubjectLimits], request_id: str,
                    now: float) -> Verdict: ...  # fmt: skip

    async def release(self, subjects: Sequence[str], request_id: str) -> None: ...

    async def charge_tokens(self, subjects: Sequence[str], tokens: int, now: float) -> None: ...

    async def in_flight(self, subjects: Sequence[str], now: float) -> list[int]: ...


def _window(now: float) -> tuple[int, int]:
    """The current minute and the seconds until it ends (at least 1)."""
    minute = int(now // WINDOW_S)
    return minute, max(1, math.ceil((minute + 1) * WINDOW_S - now))


class MemoryLimits:
    """One process's counters (a single worker)."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, int], int] = defaultdict(int)
        self._tokens: dict[tuple[str, int], int] = defaultdict(int)
        self._in_flight: dict[str, dict[str, float]] = defaultdict(dict)

    def _prune(self, minute: int) -> None:
        for table in (self._requests, self._tokens):
            for k in [k for k in table if k[1] < minute - 1]:
                del table[k]

    async def admit(self, limits: Sequence[SubjectLimits], request_id: str,
                    now: float) -> Verdict:  # fmt: skip
        minute, retry = _window(now)
        self._prune(minute)
        for lim in limits:
            if lim.rpm is not None and self._requests[(lim.subject, minute)] >= lim.rpm:
                return Verdict(False, lim.subject, "rpm", retry)
            if lim.tpm is not None and self._tokens[(lim.subject, minute)] >= lim.tpm:
                return Verdict(False, lim.subject, "tpm", retry)
            if lim.max_parallel is not None:
                flying = self._in_flight[lim.subject]
                for rid in [r for r, t in flying.items() if now - t > IN_FLIGHT_MAX_AGE_S]:
                    del flying[rid]
                if len(flying) >= lim.max_parallel:
                    return Verdict(False, lim.subject, "max_parallel", 1)
        for lim in limits:
            self._requests[(lim.subject, minute)] += 1
            if lim.max_parallel is not None:
                self._in_flight[lim.subject][request_id] = now
        return ALLOWED

    async def release(self, subjects: Sequence[str], request_id: str) -> None:
        for s in subjects:
            self._in_flight[s].pop(request_id, None)

    async def charge_tokens(self, subjects: Sequence[str], tokens: int, now: float) -> None:
        minute, _ = _window(now)
        for s in subjects:
            self._tokens[(s, minute)] += tokens

    async def in_flight(self, subjects: Sequence[str], now: float) -> list[int]:
        return [sum(1 for t in self._in_flight[s].values() if now - t <= IN_FLIGHT_MAX_AGE_S)
                for s in subjects]  # fmt: skip


# KEYS: per subject 3 keys (requests, tokens, in-flight). ARGV: now, request id,
# max in-flight age, window seconds left, then per subject: rpm, tpm, max_parallel
# (-1 = none). Returns {0} or {1-based subject index, limit code}.
ADMIT_LUA = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local max_age = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4]) + 1
local n = #KEYS / 3
for i = 1, n do
  local rpm = tonumber(ARGV[4 + (i - 1) * 3 + 1])
  local tpm = tonumber(ARGV[4 + (i - 1) * 3 + 2])
  local par = tonumber(ARGV[4 + (i - 1) * 3 + 3])
  if rpm >= 0 and tonumber(redis.call('GET', KEYS[(i - 1) * 3 + 1]) or '0') >= rpm then
    return {i, 1}
  end
  if tpm >= 0 and tonumber(redis.call('GET', KEYS[(i - 1) * 3 + 2]) or '0') >= tpm then
    return {i, 2}
  end
  if par >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[(i - 1) * 3 + 3], '-inf', now - max_age)
    if redis.call('ZCARD', KEYS[(i - 1) * 3 + 3]) >= par then
      return {i, 3}
    end
  end
end
for i = 1, n do
  local rkey = KEYS[(i - 1) * 3 + 1]
  redis.call('INCR', rkey)
  redis.call('EXPIRE', rkey, ttl)
  if tonumber(ARGV[4 + (i - 1) * 3 + 3]) >= 0 then
    redis.call('ZADD', KEYS[(i - 1) * 3 + 3], now, rid)
    redis.call('EXPIRE', KEYS[(i - 1) * 3 + 3], max_age)
  end
end
return {0}
"""
LIMIT_CODES = {1: "rpm", 2: "tpm", 3: "max_parallel"}


class RedisLimits:
    """Counters in Redis, shared by every worker and replica.

    If Redis is unreachable, ``fail_open`` decides: admit (logged by the link) or
    refuse with 503-style retry advice (``Verdict.limit == "unavailable"``).
    """

    def __init__(self, link: RedisLink, fail_open: bool) -> None:
        self._link = link
        self._fail_open = fail_open
        self._prefix = f"{link.prefix}rl:"
        self._script: Any = None

    def _keys(self, subject: str, minute: int) -> list[str]:
        return [f"{self._prefix}{subject}:r:{minute}", f"{self._prefix}{subject}:t:{minute}",
                f"{self._prefix}{subject}:p"]  # fmt: skip

    async def admit(self, limits: Sequence[SubjectLimits], request_id: str,
                    now: float) -> Verdict:  # fmt: skip
        minute, retry = _window(now)
        keys: list[str] = []
        args: list[Any] = [now, request_id, IN_FLIGHT_MAX_AGE_S, retry]
        for lim in limits:
            keys += self._keys(lim.subject, minute)
            args += [_or_none(lim.rpm), _or_none(lim.tpm), _or_none(lim.max_parallel)]

        async def op(r: Any) -> Any:
            if self._script is None:
                self._script = r.register_script(ADMIT_LUA)
            return await self._script(keys=keys, args=args)

        result = await self._link.run(op, None)
        if result is None:
            return ALLOWED if self._fail_open else Verdict(False, None, "unavailable", 5)
        if int(result[0]) == 0:
            return ALLOWED
        index, code = int(result[0]) - 1, int(result[1])
        limit = LIMIT_CODES[code]
        return Verdict(False, limits[index].subject, limit, 1 if limit == "max_parallel" else retry)

    async def release(self, subjects: Sequence[str], request_id: str) -> None:
        names = [f"{self._prefix}{s}:p" for s in subjects]

        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.zrem(name, request_id)
            await pipe.execute()

        await self._link.run(op, None)

    async def charge_tokens(self, subjects: Sequence[str], tokens: int, now: float) -> None:
        minute, retry = _window(now)

        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for s in subjects:
                name = f"{self._prefix}{s}:t:{minute}"
                pipe.incrby(name, tokens)
                pipe.expire(name, retry + 1)
            await pipe.execute()

        await self._link.run(op, None)

    async def in_flight(self, subjects: Sequence[str], now: float) -> list[int]:
        names = [f"{self._prefix}{s}:p" for s in subjects]

        async def op(r: Any) -> list[int]:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.zcount(name, now - IN_FLIGHT_MAX_AGE_S, "+inf")
            return [int(n) for n in await pipe.execute()]

        counts = await self._link.run(op, None)
        return counts if counts is not None else [0] * len(subjects)


def _or_none(value: int | None) -> int:
    return -1 if value is None else value


class Limiter:
    """The limits of keys and teams, over one ``LimitStore``."""

    def __init__(self, store: LimitStore, by_alias: dict[str, list[SubjectLimits]],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self._by_alias = by_alias
        self._clock = clock

    def limits_of(self, alias: str | None) -> list[SubjectLimits]:
        return self._by_alias.get(alias or "", [])

    async def admit(self, alias: str | None, request_id: str) -> Verdict:
        limits = self.limits_of(alias)
        if not limits:
            return ALLOWED
        return await self.store.admit(limits, request_id, self._clock())

    async def release(self, alias: str | None, request_id: str) -> None:
        limits = [lim for lim in self.limits_of(alias) if lim.max_parallel is not None]
        if limits:
            await self.store.release([lim.subject for lim in limits], request_id)

    async def charge_tokens(self, alias: str | None, tokens: int) -> None:
        limits = [lim for lim in self.limits_of(alias) if lim.tpm is not None]
        if limits and tokens > 0:
            await self.store.charge_tokens([lim.subject for lim in limits], tokens, self._clock())

    async def in_flight(self) -> dict[str, int]:
        """Requests holding a parallel slot now, per subject with a ``max_parallel``."""
        subjects = sorted({lim.subject for limits in self._by_alias.values() for lim in limits
                           if lim.max_parallel is not None})  # fmt: skip
        if not subjects:
            return {}
        return dict(zip(subjects, await self.store.in_flight(subjects, self._clock()),
                        strict=True))  # fmt: skip


def subject_limits(access: Access) -> dict[str, list[SubjectLimits]]:
    """Per key alias: its own limits and its team's (shared with the team's other keys)."""
    out: dict[str, list[SubjectLimits]] = {}
    for key in access.keys:
        found = []
        if any(v is not None for v in (key.rpm, key.tpm, key.max_parallel)):
            found.append(SubjectLimits(f"key:{key.alias}", key.rpm, key.tpm, key.max_parallel))
        team = access.teams.get(key.team) if key.team else None
        if team is not None and any(v is not None for v in (team.rpm, team.tpm, team.max_parallel)):
            found.append(SubjectLimits(f"team:{key.team}", team.rpm, team.tpm, team.max_parallel))
        if found:
            out[key.alias] = found
    return out
