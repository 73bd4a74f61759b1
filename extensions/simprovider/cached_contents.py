"""Simulated Gemini explicit context caches (``cachedContents``) and their storage record.

Pure logic; the caller passes the (wall-clock) time. A cache lives from its creation until
its ``expireTime`` or its deletion, whichever comes first. Gemini bills storage per token
and hour, so every cache (live or ended) keeps what a bill needs: its token count and how
long it has been stored (``token_hours`` = tokens x stored hours).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

NAME_PREFIX = "cachedContents/"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class CachedContentError(ValueError):
    """A ``ttl`` / ``expireTime`` value Google would reject."""


def rfc3339(timestamp: float) -> str:
    """``2025-01-31T12:00:00.123456Z``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_duration(raw: Any) -> float:
    """A protobuf JSON duration (``"300s"``, ``"1.5s"``) in seconds."""
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise CachedContentError(f"ttl must be a duration such as '300s', got {raw!r}")
    return float(match.group(1))


def parse_timestamp(raw: Any) -> float:
    """An RFC 3339 timestamp (``2025-01-31T12:00:00Z``) as a POSIX time."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    raise CachedContentError(f"expireTime must be an RFC 3339 timestamp, got {raw!r}")


def expiry_from(fields: dict[str, Any], now: float, default_ttl_s: float | None) -> float | None:
    """Expiry time from ``ttl`` or ``expireTime`` (at most one), else ``now + default``.

    Returns ``None`` when neither is given and there is no default (an update that leaves
    the expiry alone)."""
    ttl, expire = fields.get("ttl"), fields.get("expireTime", fields.get("expire_time"))
    if ttl is not None and expire is not None:
        raise CachedContentError("set either ttl or expireTime, not both")
    if ttl is not None:
        seconds = parse_duration(ttl)
        if seconds <= 0:
            raise CachedContentError(f"ttl must be positive, got {ttl!r}")
        return now + seconds
    if expire is not None:
        when = parse_timestamp(expire)
        if when <= now:
            raise CachedContentError(f"expireTime must be in the future, got {expire!r}")
        return when
    return None if default_ttl_s is None else now + default_ttl_s


@dataclass(slots=True)
class CachedContent:
    """One cache: what it holds (as prompt text and tokens) and its lifetime."""

    name: str
    model: str
    display_name: str
    tokens: int
    prompt: str
    create_time: float
    update_time: float
    expire_time: float
    deleted_time: float | None = None
    tools: Any = None
    tool_config: Any = None

    @property
    def tool_fields(self) -> dict[str, Any]:
        """The cached ``tools`` / ``toolConfig`` as generateContent fields (if any)."""
        fields = {"tools": self.tools, "toolConfig": self.tool_config}
        return {k: v for k, v in fields.items() if v is not None}

    def live(self, now: float) -> bool:
        return self.deleted_time is None and self.expire_time > now

    def stored_s(self, now: float) -> float:
        """Seconds stored so far (until now, expiry or deletion)."""
        end = min(now, self.expire_time)
        if self.deleted_time is not None:
            end = min(end, self.deleted_time)
        return max(0.0, end - self.create_time)

    def resource(self) -> dict[str, Any]:
        """The ``CachedContent`` resource as the Gemini API returns it (no contents)."""
        data: dict[str, Any] = {
            "name": self.name,
            "model": f"models/{self.model}",
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(self.update_time),
            "expireTime": rfc3339(self.expire_time),
            "usageMetadata": {"totalTokenCount": self.tokens},
        }
        if self.display_name:
            data["displayName"] = self.display_name
        return data

    def storage(self, now: float) -> dict[str, Any]:
        """Storage record for ``GET /_sim/cached_contents``."""
        stored = self.stored_s(now)
        if self.deleted_time is not None:
            state = "deleted"
        else:
            state = "active" if self.expire_time > now else "expired"
        return {
            "name": self.name,
            "model": self.model,
            "display_name": self.display_name,
            "tokens": self.tokens,
            "state": state,
            "create_time": rfc3339(self.create_time),
            "expire_time": rfc3339(self.expire_time),
            "deleted_time": None if self.deleted_time is None else rfc3339(self.deleted_time),
            "stored_s": round(stored, 3),
            "token_hours": self.tokens * stored / 3600.0,
        }


class CachedContentStore:
    """Every cache created since the last reset (ended ones are kept for the storage
    record, oldest dropped beyond ``max_records``)."""

    def __init__(self, max_records: int = 10_000) -> None:
        self._caches: dict[str, CachedContent] = {}
        self._max_records = max_records

    def clear(self) -> None:
        self._caches.clear()

    def create(
        self,
        model: str,
        display_name: str,
        tokens: int,
        prompt: str,
        expire_time: float,
        now: float,
        tools: Any = None,
        tool_config: Any = None,
    ) -> CachedContent:
        name = NAME_PREFIX + uuid.uuid4().hex[:16]
        cache = CachedContent(
            name,
            model,
            display_name,
            tokens,
            prompt,
            now,
            now,
            expire_time,
            tools=tools,
            tool_config=tool_config,
        )
        self._caches[name] = cache
        if len(self._caches) > self._max_records:
            self._drop_oldest_ended(now)
        return cache

    def get(self, name: str, now: float) -> CachedContent | None:
        """A live cache by its name (``cachedContents/ID``), else ``None``."""
        cache = self._caches.get(name)
        return cache if cache is not None and cache.live(now) else None

    def live(self, now: float) -> list[CachedContent]:
        return [c for c in self._caches.values() if c.live(now)]

    def delete(self, name: str, now: float) -> bool:
        cache = self.get(name, now)
        if cache is None:
            return False
        cache.deleted_time = now
        return True

    def set_expiry(self, name: str, expire_time: float, now: float) -> CachedContent | None:
        cache = self.get(name, now)
        if cache is not None:
            cache.expire_time = expire_time
            cache.update_time = now
        return cache

    def storage(self, now: float) -> dict[str, Any]:
        """All caches with their storage, and the totals a storage fee is computed from."""
        records = [c.storage(now) for c in self._caches.values()]
        return {
            "caches": records,
            "active": sum(1 for r in records if r["state"] == "active"),
            "active_tokens": sum(r["tokens"] for r in records if r["state"] == "active"),
            "token_hours": sum(r["token_hours"] for r in records),
        }

    def _drop_oldest_ended(self, now: float) -> None:
        for name in [n for n, c in self._caches.items() if not c.live(now)]:
            if len(self._caches) <= self._max_records:
                return
            del self._caches[name]
