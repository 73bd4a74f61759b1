"""``cache`` section of gateway.yaml (and the per-router / per-intent ``cache`` blocks)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator

from extensions.config.base import StrictModel
from extensions.embedding.settings import Quantize


class Scope(StrEnum):
    """Who may be served an entry: everyone, the same team, or the same key."""

    GLOBAL = "global"
    TEAM = "team"
    KEY = "key"


class Eviction(StrEnum):
    LRU = "lru"
    LFU = "lfu"
    FIFO = "fifo"


class Tier(StrEnum):
    MEMORY = "memory"  # this process only
    SHARED = "shared"  # this process in front of Redis (read through, written to both)


class SemanticMode(StrEnum):
    SERVE = "serve"
    SHADOW = "shadow"  # look up and record, but always answer from the model


class MemoryTier(StrictModel):
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    eviction: Eviction = Eviction.LRU


class ExactCache(StrictModel):
    enabled: bool = True


class Verification(StrictModel):
    """Checks a candidate must pass besides similarity (they keep templated near-misses out)."""

    enabled: bool = True
    numbers: bool = True  # "2 weeks" vs "3 weeks"
    negation: bool = True  # "with" vs "without", "can" vs "can't"
    entities: bool = True  # capitalised names: "capital of Vietnam" vs "capital of Laos"
    question_word: bool = False  # "why" vs "how" (off: QQP paraphrases swap them freely)
    word_order: bool = True  # "Messi better than Ronaldo" vs "Ronaldo better than Messi"


class Audit(StrictModel):
    """Re-check a sample of served semantic hits off the request path: the model answers
    the query afresh (a model call, charged to no key) and an entry whose answer differs
    from the fresh one (cosine of the two answers below ``answer_threshold``) is evicted.
    The share of audited hits that passed estimates the precision of served hits."""

    enabled: bool = False
    sample_rate: float = Field(0.05, ge=0.0, le=1.0)
    answer_threshold: float = Field(0.5, ge=0.0, le=1.0)
    queue_size: int = Field(100, ge=1, le=100_000)  # audits waiting; more are skipped
    window: int = Field(200, ge=1, le=100_000)  # precision over the last N audits


class VerifierKind(StrEnum):
    RULES = "rules"  # the ``verification`` checks alone
    LEARNED = "learned"  # a small pair classifier (``model``), plus the enabled checks
    # a fine-tuned BERT reading both questions together (``model``: the folder written by
    # ``gateway train-cache-verifier --kind cross-encoder``), plus the enabled checks
    CROSS_ENCODER = "cross-encoder"


class Verifier(StrictModel):
    """What decides whether a candidate above the threshold really asks the same question."""

    # learned, at min_probability 0.84 and threshold 0.94: 5-fold on qqp_dev, precision
    # 0.952 at duplicate recall 0.327 (rules at 0.95: 0.952 at 0.316); docs/caching.md
    kind: VerifierKind = VerifierKind.LEARNED
    # learned: a builtin name or a .npz path; cross-encoder: a folder
    model: str = "builtin:qqp-pair-mlp"
    min_probability: float = Field(0.84, ge=0.0, le=1.0)  # P(same question) needed
    # cross-encoder: how many of the most similar candidates that pass the checks it reads
    # per lookup (one batched pass; the others are not served)
    top: int = Field(1, ge=1, le=50)
    quantize: Quantize = Quantize.NONE  # cross-encoder: int8 is faster, calibrate it again

    @model_validator(mode="after")
    def _model_exists(self) -> Verifier:
        path = Path(self.model).expanduser()
        if self.kind is VerifierKind.CROSS_ENCODER and not (path / "pair_head.json").is_file():
            raise ValueError(
                f"model {self.model!r}: kind cross-encoder needs the folder written by "
                "gateway train-cache-verifier --kind cross-encoder (no pair_head.json there)"
            )
        on_disk = self.kind is VerifierKind.LEARNED and not self.model.startswith("builtin:")
        if on_disk and not path.is_file():
            raise ValueError(f"model {self.model!r}: no such file")
        return self


class SemanticCache(StrictModel):
    enabled: bool = True
    audit: Audit = Audit()
    mode: SemanticMode = SemanticMode.SERVE
    threshold: float = Field(0.94, ge=0.0, le=1.0)
    candidates: int = Field(4, ge=1, le=50)
    verification: Verification = Verification()
    verifier: Verifier = Verifier()


class EmbeddingsCache(StrictModel):
    """Exact cache of ``/v1/embeddings`` results (same tier and size as ``exact``)."""

    enabled: bool = True
    ttl_s: int = Field(86400, ge=1, le=30 * 86400)


class CacheabilityExamples(StrictModel):
    """A small classifier on the request embedding: is this query safe to share?"""

    enabled: bool = False
    cacheable: list[str] = []
    not_cacheable: list[str] = []
    not_cacheable_above: float = Field(0.5, ge=0.0, le=1.0)  # p(not cacheable) above: bypass

    @model_validator(mode="after")
    def _both_classes(self) -> CacheabilityExamples:
        if self.enabled and (len(self.cacheable) < 2 or len(self.not_cacheable) < 2):
            raise ValueError("needs at least 2 'cacheable' and 2 'not_cacheable' examples")
        return self


class Rules(StrictModel):
    """Requests that are never cached (looked up nor stored)."""

    max_temperature: float = Field(1.0, ge=0.0, le=2.0)  # above this: answers are meant to vary
    tools: bool = False  # requests that offer tools: not cached unless true
    max_user_turns: int = Field(4, ge=1, le=100)  # longer conversations are not cached
    max_tokens_cached: int = Field(4096, ge=1)  # larger answers are not stored


class CacheSettings(StrictModel):
    """One payload store serves both caches; the semantic index points into it."""

    enabled: bool = False
    scope: Scope = Scope.TEAM
    tier: Tier = Tier.MEMORY
    memory: MemoryTier = MemoryTier()
    ttl_s: int = Field(3600, ge=1, le=30 * 86400)
    exact: ExactCache = ExactCache()
    semantic: SemanticCache = SemanticCache()
    embeddings: EmbeddingsCache = EmbeddingsCache()
    rules: Rules = Rules()
    cacheability: CacheabilityExamples = CacheabilityExamples()


class RouterCache(StrictModel):
    """``routers.<name>.cache``: overrides for one router."""

    enabled: bool = True
    threshold: float | None = Field(None, ge=0.0, le=1.0)


class IntentCache(StrictModel):
    """``intents[].cache``: overrides for one intent (``enabled: false`` = never cached)."""

    enabled: bool = True
    ttl_s: int | None = Field(None, ge=1, le=30 * 86400)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
