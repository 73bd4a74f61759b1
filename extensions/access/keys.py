"""Pure key verification. Keys are held only as SHA-256 digests and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"  # the master key: every model, every admin endpoint


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified key belongs to (never the key itself)."""

    alias: str
    role: Role


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def strip_bearer(presented: str) -> str:
    """Accept ``Bearer <key>`` as well as the bare key, as clients send both."""
    value = presented.strip()
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value


@dataclass(frozen=True, slots=True)
class KeyVerifier:
    """Checks a presented key against the master key's digest."""

    master_digest: bytes

    @classmethod
    def from_master_key(cls, master_key: str) -> KeyVerifier:
        if not master_key:
            raise ValueError("the master key must not be empty")
        return cls(digest(master_key))

    def verify(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        candidate = digest(strip_bearer(presented))
        if hmac.compare_digest(candidate, self.master_digest):
            return Principal(alias="master", role=Role.OPERATOR)
        return None
