"""Pure: a key's effective access (its own settings, else its team's) and model checks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from extensions.access.settings import Access, Endpoint, Key, Team


@dataclass(frozen=True, slots=True)
class Grant:
    """What one key may do; None = not limited."""

    models: tuple[str, ...] | None = None  # patterns ('*' wildcards)
    endpoints: frozenset[Endpoint] | None = None

    def allows(self, model: str) -> bool:
        return self.models is None or any(fnmatchcase(model, p) for p in self.models)

    def speaks(self, endpoint: str) -> bool:
        return self.endpoints is None or endpoint in self.endpoints


UNLIMITED = Grant()
DENY_ALL = Grant(models=(), endpoints=frozenset())


def effective(key: Key, team: Team | None) -> Grant:
    """Key settings override team settings."""
    models = key.models if key.models is not None else (team.models if team else None)
    endpoints = key.endpoints if key.endpoints is not None else (team.endpoints if team else None)
    return Grant(
        models=tuple(models) if models is not None else None,
        endpoints=frozenset(endpoints) if endpoints is not None else None,
    )


def grants(access: Access) -> dict[str, Grant]:
    """Effective settings per key alias."""
    return {k.alias: effective(k, access.teams.get(k.team) if k.team else None)
            for k in access.keys}  # fmt: skip


def model_problems(where: str, patterns: Sequence[str] | None, names: Collection[str]) -> list[str]:
    """Patterns that match no model group or router (a typo would silently deny)."""
    if patterns is None:
        return []
    known = ", ".join(sorted(names))
    return [f"{where}.models: '{p}' matches no model group or router (have: {known})"
            for p in patterns if not any(fnmatchcase(n, p) for n in names)]  # fmt: skip
