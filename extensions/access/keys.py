"""Pure key verification. Keys are held only as digests and compared in constant time.

The master key (operators) is held as a SHA-256 digest. Gateway keys made by
``gateway new-key`` look like ``sk-gw-<key id>.<secret>``: the public id picks
the one entry to check against its salted digest. Keys from the environment
(``env: VAR``) are digested at start-up and found by digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from extensions.access.settings import Access

KEY_PREFIX = "sk-gw-"


class Role(StrEnum):
    OPERATOR = "operator"  # the master key: every model, every admin endpoint
    APP = "app"  # a gateway key from gateway.yaml: what its entry allows


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified key belongs to (never the key itself)."""

    alias: str
    role: Role
    team: str | None = None


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def salted_digest(salt: bytes, key: str) -> bytes:
    return hashlib.sha256(salt + key.encode("utf-8")).digest()


def bearer_key(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; None for any other form
    (``Basic …``, a bare key, ``Bearer Bearer <key>``, a key with spaces)."""
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or any(c.isspace() for c in key):
        return None
    return key


def key_id_of(key: str) -> str | None:
    """The public id of a ``sk-gw-<id>.<secret>`` key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    head, dot, _ = key[len(KEY_PREFIX) :].partition(".")
    return head if dot and len(head) == 8 else None


@dataclass(frozen=True, slots=True)
class NewKey:
    key: str  # shown once, never stored
    key_id: str
    hash: str  # what gateway.yaml stores


def new_key() -> NewKey:
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
    salt = secrets.token_bytes(16)
    return NewKey(key, key_id, f"sha256:{salt.hex()}:{salted_digest(salt, key).hex()}")


@dataclass(frozen=True, slots=True)
class StoredKey:
    salt: bytes
    digest: bytes
    principal: Principal

    @classmethod
    def parse(cls, stored_hash: str, principal: Principal) -> StoredKey:
        _, salt, hexdigest = stored_hash.split(":")
        return cls(bytes.fromhex(salt), bytes.fromhex(hexdigest), principal)


@dataclass(frozen=True)
class KeyVerifier:
    """Checks a presented key against the master key and the configured gateway keys."""

    master_digest: bytes
    by_id: Mapping[str, StoredKey] = field(default_factory=dict)
    by_digest: Mapping[bytes, Principal] = field(default_factory=dict)

    @classmethod
    def from_master_key(cls, master_key: str) -> KeyVerifier:
        if not master_key:
            raise ValueError("the master key must not be empty")
        return cls(digest(master_key))

    @classmethod
    def build(
        cls, master_key: str, access: Access, environ: Mapping[str, str]
    ) -> tuple[KeyVerifier, list[str]]:
        """The verifier for the master key and every configured key, and config problems."""
        if not master_key:
            raise ValueError("the master key must not be empty")
        by_id: dict[str, StoredKey] = {}
        by_digest: dict[bytes, Principal] = {}
        problems = []
        for i, key in enumerate(access.keys):
            principal = Principal(key.alias, Role.APP, key.team)
            if key.hash is not None and key.key_id is not None:
                by_id[key.key_id] = StoredKey.parse(key.hash, principal)
            elif key.env is not None:
                value = environ.get(key.env)
                if not value:
                    problems.append(f"access.keys[{i}].env: environment variable {key.env} "
                                    "is not set")  # fmt: skip
                    continue
                if hmac.compare_digest(digest(value), digest(master_key)):
                    problems.append(f"access.keys[{i}].env: {key.env} holds the master key")
                    continue
                by_digest[digest(value)] = principal
        return cls(digest(master_key), by_id, by_digest), problems

    def verify(self, key: str | None) -> Principal | None:
        """The principal of a key (as presented, without any ``Bearer`` scheme)."""
        if not key:
            return None
        candidate = digest(key)
        if hmac.compare_digest(candidate, self.master_digest):
            return Principal(alias="master", role=Role.OPERATOR)
        key_id = key_id_of(key)
        stored = self.by_id.get(key_id) if key_id else None
        if stored is not None:
            ok = hmac.compare_digest(salted_digest(stored.salt, key), stored.digest)
            return stored.principal if ok else None
        return self.by_digest.get(candidate)
