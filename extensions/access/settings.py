"""``access`` section of gateway.yaml: teams and gateway keys (never the keys themselves).

A key is stored as ``hash: "sha256:<salt hex>:<digest hex>"`` of the whole key
(``gateway new-key`` prints one), or named by ``env: VAR`` when its value comes
from a secret store. Keys made by ``gateway new-key`` carry a public id
(``sk-gw-<id>.<secret>``), so verification looks at one entry, in constant time.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from extensions.config.base import StrictModel

HASH = re.compile(r"^sha256:[0-9a-f]{32}:[0-9a-f]{64}$")
ALIAS = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"
KEY_ID = r"^[0-9a-f]{8}$"


class Endpoint(StrEnum):
    """The client protocols a key may speak (the LLM endpoints of the gateway)."""

    CHAT = "chat"  # /v1/chat/completions
    RESPONSES = "responses"  # /v1/responses
    MESSAGES = "messages"  # /v1/messages (Anthropic)
    EMBEDDINGS = "embeddings"  # /v1/embeddings


DEGRADED_MESSAGE = (
    "This app has nearly used up its budget: until it resets, only answers the "
    "gateway already has are available. Please try again later."
)


class DegradeStep(StrictModel):
    """A rung of a budget's degradation ladder. From ``at`` (the share of the key's or its
    team's tightest budget already spent) on, model calls go to ``model`` instead, or, with
    ``cache_only``, no model is called: cache hits and the router's own answers are served,
    anything else gets ``message`` (a 200, zero cost). The highest rung reached applies."""

    at: float = Field(gt=0.0, lt=1.0)
    model: str | None = None
    cache_only: bool = False
    message: str = Field(DEGRADED_MESSAGE, min_length=1)

    @model_validator(mode="after")
    def _one_effect(self) -> DegradeStep:
        if (self.model is None) == (not self.cache_only):
            raise ValueError("give exactly one of 'model' (a cheaper model group) or "
                             "'cache_only: true'")  # fmt: skip
        return self


def ladder_problems(where: str, steps: list[DegradeStep]) -> list[str]:
    shares = [s.at for s in steps]
    if shares != sorted(set(shares)):
        return [f"{where}.degrade: the 'at' shares must increase from one step to the next"]
    return []


class Limits(StrictModel):
    """What a team or key may use, and how much.

    ``models`` and ``endpoints``: a key's own list overrides its team's (none: all).
    Limits: a team's hold for all its keys together, a key's for that key alone (both
    apply); budgets too.
    """

    models: list[str] | None = None  # model groups and routers; '*' wildcards allowed
    endpoints: list[Endpoint] | None = None  # default: every LLM endpoint
    rpm: int | None = Field(None, ge=1)  # requests per minute
    tpm: int | None = Field(None, ge=1)  # tokens per minute (prompt + completion, counted)
    max_parallel: int | None = Field(None, ge=1)  # requests in flight at once
    daily_budget_usd: float | None = Field(None, gt=0)  # UTC day
    monthly_budget_usd: float | None = Field(None, gt=0)  # UTC calendar month
    degrade: list[DegradeStep] = []  # a key's own ladder overrides its team's


class LimitStoreKind(StrEnum):
    MEMORY = "memory"  # this process only (one worker)
    REDIS = "redis"  # redis.url: exact across workers and replicas


class OnFailure(StrEnum):
    OPEN = "open"  # Redis down: admit (logged loudly)
    CLOSED = "closed"  # Redis down: refuse with 503 and Retry-After


class LimitSettings(StrictModel):
    store: LimitStoreKind = LimitStoreKind.MEMORY
    on_redis_failure: OnFailure = OnFailure.CLOSED


class Team(Limits):
    description: str = ""


class Key(Limits):
    alias: str = Field(pattern=ALIAS)
    owner: str = Field(min_length=1)
    team: str | None = None
    key_id: str | None = Field(None, pattern=KEY_ID)
    hash: str | None = None
    env: str | None = Field(None, pattern=r"^[A-Z_][A-Z0-9_]*$")

    @field_validator("hash")
    @classmethod
    def _hash_format(cls, v: str | None) -> str | None:
        if v is not None and not HASH.match(v):
            raise ValueError("must look like 'sha256:<32 hex salt>:<64 hex digest>' "
                             "(print one with `gateway new-key`)")  # fmt: skip
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> Key:
        if (self.hash is None) == (self.env is None):
            raise ValueError("give exactly one of 'hash' (with 'key_id') or 'env'")
        if self.hash is not None and self.key_id is None:
            raise ValueError("'hash' needs the key's public 'key_id' (printed by gateway new-key)")
        return self


class Savings(StrictModel):
    """How the cost of answers given without a model call is estimated (for savings)."""

    assumed_completion_tokens: int = Field(200, ge=0, le=100_000)


class Access(StrictModel):
    limits: LimitSettings = LimitSettings()
    savings: Savings = Savings()
    teams: dict[str, Team] = {}
    keys: list[Key] = []

    @model_validator(mode="after")
    def _references(self) -> Access:
        problems = []
        aliases = [k.alias for k in self.keys]
        if "master" in aliases:
            problems.append("the key alias 'master' is reserved for the master key")
        dupes = sorted({a for a in aliases if aliases.count(a) > 1})
        if dupes:
            problems.append(f"duplicate key aliases: {', '.join(dupes)}")
        ids = [k.key_id for k in self.keys if k.key_id]
        if len(ids) != len(set(ids)):
            problems.append("duplicate key_id values")
        for i, key in enumerate(self.keys):
            if key.team is not None and key.team not in self.teams:
                known = ", ".join(sorted(self.teams)) or "none"
                problems.append(f"keys[{i}].team: unknown team '{key.team}' (teams: {known})")
        if problems:
            raise ValueError("; ".join(problems))
        return self
