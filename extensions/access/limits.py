"""Request-rate, token-rate and parallel-request limits, shared through Redis or in process.

Subjects are a key (``key:<alias>``) and its team (``team:<name>``): a team limit is
shared by all its keys. Windows are calendar minutes. ``admit`` checks every
subject's limits and, only if all pass, counts the request for all of them, in one
atomic step (a Lua script in Redis), so N workers and replicas together admit
exactly the limit. Tokens are counted after the answer (``charge_tokens``): a
subject over its tokens-per-minute is refused until the window ends.
Parallel requests are a sorted set of in-flight request ids with a safety expiry,
so a request that never reports its end cannot hold a slot for ever.

In Redis, a key's counters and its team's share one hash tag (the team's, or the key's
when it has none): the script touches one hash slot, so it runs on a Redis Cluster too.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import Any, Protocol

from redis.exceptions import NoScriptError

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
    group: str = ""  # counted together with: "team:<name>" for a team and its keys

    @property
    def tag(self) -> str:
        """The subjects counted in one atomic step share it (a Redis hash tag)."""
        return self.group or self.subject


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

    async def release(self, limits: Sequence[SubjectLimits], request_id: str) -> None: ...

    async def charge_tokens(
        self, limits: Sequence[SubjectLimits], tokens: int, now: float
    ) -> None: ...

    async def in_flight(self, lim: SubjectLimits, now: float) -> int: ...


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

    async def release(self, limits: Sequence[SubjectLimits], request_id: str) -> None:
        for lim in limits:
            self._in_flight[lim.subject].pop(request_id, None)

    async def charge_tokens(self, limits: Sequence[SubjectLimits], tokens: int, now: float) -> None:
        minute, _ = _window(now)
        for lim in limits:
            self._tokens[(lim.subject, minute)] += tokens

    async def in_flight(self, lim: SubjectLimits, now: float) -> int:
        flying = self._in_flight[lim.subject].values()
        return sum(1 for t in flying if now - t <= IN_FLIGHT_MAX_AGE_S)


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
ADMIT_SHA = sha1(ADMIT_LUA.encode()).hexdigest()
LIMIT_CODES = {1: "rpm", 2: "tpm", 3: "max_parallel"}


class RedisLimits:
    """Counters in Redis, shared by every worker and replica.

    Keys: ``<prefix>{rl:<tag>}:<subject>:r:<minute>`` (requests), ``...:t:<minute>``
    (tokens) and ``...:p`` (in flight); ``<tag>`` is ``SubjectLimits.tag``. If the
    shard holding a tag is unreachable, ``fail_open`` decides: admit (logged by the
    link) or refuse with 503-style retry advice (``Verdict.limit == "unavailable"``).
    """

    def __init__(self, link: RedisLink, fail_open: bool) -> None:
        self._link = link
        self._fail_open = fail_open
        self._prefix = link.prefix

    def _key(self, lim: SubjectLimits, kind: str) -> str:
        return f"{self._prefix}{{rl:{lim.tag}}}:{lim.subject}:{kind}"

    def _keys(self, lim: SubjectLimits, minute: int) -> list[str]:
        return [self._key(lim, f"r:{minute}"), self._key(lim, f"t:{minute}"), self._key(lim, "p")]

    async def admit(self, limits: Sequence[SubjectLimits], request_id: str, now: float) -> Verdict:
        minute, retry = _window(now)
        keys: list[str] = []
        args: list[Any] = [now, request_id, IN_FLIGHT_MAX_AGE_S, retry]
        for lim in limits:
            keys += self._keys(lim, minute)
            args += [_or_none(lim.rpm), _or_none(lim.tpm), _or_none(lim.max_parallel)]

        async def op(r: Any) -> Any:
            try:
                return await r.evalsha(ADMIT_SHA, len(keys), *keys, *args)
            except NoScriptError:  # first use on this shard, or it restarted: send the script
                return await r.eval(ADMIT_LUA, len(keys), *keys, *args)

        result = await self._link.run(op, None, route=keys[0])
        if result is None:
            return ALLOWED if self._fail_open else Verdict(False, None, "unavailable", 5)
        if int(result[0]) == 0:
            return ALLOWED
        index, code = int(result[0]) - 1, int(result[1])
        limit = LIMIT_CODES[code]
        return Verdict(False, limits[index].subject, limit, 1 if limit == "max_parallel" else retry)

    async def release(self, limits: Sequence[SubjectLimits], request_id: str) -> None:
        names = [self._key(lim, "p") for lim in limits]

        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.zrem(name, request_id)
            await pipe.execute()

        if names:
            await self._link.run(op, None, route=names[0])

    async def charge_tokens(self, limits: Sequence[SubjectLimits], tokens: int, now: float) -> None:
        minute, retry = _window(now)
        names = [self._key(lim, f"t:{minute}") for lim in limits]

        async def op(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for name in names:
                pipe.incrby(name, tokens)
                pipe.expire(name, retry + 1)
            await pipe.execute()

        if names:
            await self._link.run(op, None, route=names[0])

    async def in_flight(self, lim: SubjectLimits, now: float) -> int:
        name = self._key(lim, "p")
        count = await self._link.run(
            lambda r: r.zcount(name, now - IN_FLIGHT_MAX_AGE_S, "+inf"), None, route=name
        )
        return int(count or 0)


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
            await self.store.release(limits, request_id)

    async def charge_tokens(self, alias: str | None, tokens: int) -> None:
        limits = [lim for lim in self.limits_of(alias) if lim.tpm is not None]
        if limits and tokens > 0:
            await self.store.charge_tokens(limits, tokens, self._clock())

    async def in_flight(self) -> dict[str, int]:
        """Requests holding a parallel slot now, per subject with a ``max_parallel``."""
        subjects = {lim.subject: lim for limits in self._by_alias.values() for lim in limits
                    if lim.max_parallel is not None}  # fmt: skip
        now = self._clock()
        return {name: await self.store.in_flight(lim, now) for name, lim in sorted(subjects.items())}


def subject_limits(access: Access) -> dict[str, list[SubjectLimits]]:
    """Per key alias: its own limits and its team's (shared with the team's other keys).

    Both are grouped by the team (by the key when it has none): see ``SubjectLimits.tag``.
    """
    out: dict[str, list[SubjectLimits]] = {}
    for key in access.keys:
        found = []
        group = f"team:{key.team}" if key.team else f"key:{key.alias}"
        if any(v is not None for v in (key.rpm, key.tpm, key.max_parallel)):
            found.append(
                SubjectLimits(f"key:{key.alias}", key.rpm, key.tpm, key.max_parallel, group)
            )
        team = access.teams.get(key.team) if key.team else None
        if team is not None and any(v is not None for v in (team.rpm, team.tpm, team.max_parallel)):
            found.append(
                SubjectLimits(f"team:{key.team}", team.rpm, team.tpm, team.max_parallel, group)
            )
        if found:
            out[key.alias] = found
    return out
