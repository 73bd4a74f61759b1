"""``routers`` and ``handoff_sinks`` sections of gateway.yaml (pydantic, validated once)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from extensions.access.settings import DegradeStep
from extensions.backends.settings import check_redis_url
from extensions.cache.settings import IntentCache, RouterCache
from extensions.config.base import StrictModel
from extensions.guard.detectors import ALL_KINDS, Kind

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Action(StrEnum):
    """What the router does with a request; also the ``x-gateway-action`` header."""

    ROUTE = "ROUTE"
    RESPOND = "RESPOND"
    HANDOFF = "HANDOFF"
    CLARIFY = "CLARIFY"
    REFUSE = "REFUSE"


class Turns(StrEnum):
    LAST_USER = "last_user"
    LAST_N = "last_n"


class RouteTo(StrictModel):
    """``route``: a model group from litellm.yaml (its fallbacks apply)."""

    model: str = Field(min_length=1)
    system_prompt: str | None = None


class Respond(StrictModel):
    """``respond``: a fixed answer; ``{name}`` placeholders come from ``variables`` only."""

    text: str = Field(min_length=1)
    variables: dict[str, str] = {}

    @model_validator(mode="after")
    def _placeholders_defined(self) -> Respond:
        missing = sorted(set(PLACEHOLDER.findall(self.text)) - set(self.variables))
        if missing:
            raise ValueError(f"placeholders without a value in 'variables': {', '.join(missing)}")
        return self


class DefaultRoute(RouteTo):
    """``default``: where in-scope queries that no intent claims go.

    Its optional ``examples`` (generic on-topic queries) train a class of their own.
    """

    examples: list[str] = []


class Handoff(StrictModel):
    """``handoff``: tell the user, and deliver a record to a sink for a human operator."""

    queue: str = Field(pattern=NAME)
    message: str = Field(min_length=1)
    sink: str = Field(pattern=NAME)


class ClarifyBetween(StrictModel):
    """``clarify``: ask which of these intents is meant."""

    between: list[str] = Field(min_length=2)


class Intent(StrictModel):
    name: str = Field(pattern=NAME)
    description: str = Field(min_length=3, description="plain words, used in clarifying questions")
    examples: list[str] = []
    examples_file: Path | None = None
    action: Literal["route", "respond", "handoff", "clarify"]
    route: RouteTo | None = None
    respond: Respond | None = None
    handoff: Handoff | None = None
    clarify: ClarifyBetween | None = None
    cache: IntentCache = IntentCache()

    @model_validator(mode="after")
    def _action_block(self) -> Intent:
        blocks = {
            "route": self.route,
            "respond": self.respond,
            "handoff": self.handoff,
            "clarify": self.clarify,
        }
        if blocks[self.action] is None:
            raise ValueError(f"action '{self.action}' needs a '{self.action}' block")
        extra = sorted(k for k, v in blocks.items() if v is not None and k != self.action)
        if extra:
            raise ValueError(f"action is '{self.action}' but the intent also has: {extra}")
        if not self.examples and self.examples_file is None:
            raise ValueError("an intent needs 'examples' or an 'examples_file'")
        return self

    @property
    def outcome(self) -> Action:
        return Action(self.action.upper())


class Calibration(StrEnum):
    """What ``auto`` thresholds are fitted on, at start-up."""

    CROSS_VALIDATION = "cross_validation"  # out-of-fold probabilities over all examples
    HOLDOUT = "holdout"  # the share that ``gateway finetune-router`` kept unseen


class Thresholds(StrictModel):
    """Decision thresholds; ``auto`` fits them at start-up on probabilities of examples the
    head (and, with ``holdout``, a fine-tuned encoder) was not trained on."""

    out_of_scope: float | Literal["auto"] = "auto"
    clarify_margin: float | Literal["auto"] = "auto"
    target_false_refusal: float = Field(0.01, ge=0.0, le=0.5)
    target_clarify_rate: float = Field(0.03, ge=0.0, le=0.5)
    calibration: Calibration = Calibration.CROSS_VALIDATION
    cv_folds: int = Field(5, ge=2, le=20)

    @field_validator("out_of_scope", "clarify_margin")
    @classmethod
    def _unit_interval(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not 0.0 <= float(v) <= 1.0:
            raise ValueError("must be 'auto' or a number between 0 and 1")
        return v


class NeighbourVote(StrictModel):
    """``neighbours``: the router's examples kept beside the head. The ``k`` most similar
    vote for their label (weight ``exp(cosine / temperature)``), blended with the head's
    probabilities at a share fitted out of fold; the mean cosine of the ``k`` nearest
    in-scope examples feeds the ``min_similarity`` refusal rule. Only the examples of the
    head's ``candidates`` most probable intents, and the out-of-scope ones, are searched."""

    enabled: bool = True
    k: int = Field(10, ge=1, le=100)
    temperature: float = Field(0.05, gt=0.0, le=1.0)
    candidates: int = Field(10, ge=1, le=1000)  # the head's top intents whose examples count


class Classify(StrictModel):
    """Which turns of the conversation are classified."""

    turns: Turns = Turns.LAST_USER
    last_n: int = Field(3, ge=1, le=20)


class BackgroundCorpus(StrictModel):
    """``out_of_scope.background``: the shipped generic off-topic requests as extra
    ``oos`` examples; lines closer than ``max_similarity`` (cosine) to an in-scope
    example are left out."""

    enabled: bool = True
    max_similarity: float = Field(0.6, ge=0.0, le=1.0)


class OutOfScope(StrictModel):
    responses: list[str] = Field(min_length=1)
    examples: list[str] = []
    background: BackgroundCorpus = BackgroundCorpus()


class ClarifyText(StrictModel):
    question: str = "Just to be sure I help with the right thing: do you want to {options}?"

    @field_validator("question")
    @classmethod
    def _has_options(cls, v: str) -> str:
        if "{options}" not in v:
            raise ValueError("must contain the placeholder {options}")
        return v


class LlmClassifier(StrictModel):
    """Optional second opinion from a general model for low-confidence queries."""

    enabled: bool = False
    model: str = "gpt-sim-mini"
    below_confidence: float = Field(0.6, ge=0.0, le=1.0)
    timeout_ms: int = Field(1500, ge=50, le=30000)


class Router(StrictModel):
    description: str = ""
    classify: Classify = Classify()
    thresholds: Thresholds = Thresholds()
    neighbours: NeighbourVote = NeighbourVote()
    default: DefaultRoute
    out_of_scope: OutOfScope
    clarify: ClarifyText = ClarifyText()
    llm_classifier: LlmClassifier = LlmClassifier()
    cache: RouterCache = RouterCache()
    degrade: list[DegradeStep] = []  # by the calling key's budget share (access.keys[].degrade)
    intents: list[Intent] = Field(min_length=2)

    @model_validator(mode="after")
    def _names(self) -> Router:
        names = [i.name for i in self.intents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate intent names: {', '.join(dupes)}")
        known = set(names)
        for intent in self.intents:
            if intent.clarify is not None:
                unknown = [n for n in intent.clarify.between if n not in known]
                if unknown:
                    raise ValueError(
                        f"intent '{intent.name}' clarifies between unknown intents: {unknown}"
                    )
        return self


class SinkDelivery(StrictModel):
    """What every handoff sink shares: records are bounded, redacted and queued."""

    max_record_bytes: int = Field(65_536, ge=1_024, le=10_000_000)
    queue_size: int = Field(1_000, ge=1, le=100_000)
    # kinds replaced by [KIND] before a record leaves (every kind unless listed; [] keeps all)
    redact: frozenset[Kind] = ALL_KINDS
    # undeliverable records: one JSON line each, appended here (default: the
    # gateway.handoff.dead_letter logger)
    dead_letter_file: Path | None = None


class RetryingDelivery(SinkDelivery):
    """Sinks that can fail: retried with exponential backoff, then dead-lettered."""

    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    workers: int = Field(1, ge=1, le=16)  # records delivered at the same time


class LogSink(SinkDelivery):
    type: Literal["log"]


class WebhookSink(RetryingDelivery):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(5.0, gt=0, le=60)


class RedisStreamSink(RetryingDelivery):
    type: Literal["redis_stream"]
    url: str  # a single Redis or a cluster, as redis.url (docs/redis.md)
    stream: str = Field("gateway:handoffs", min_length=1)
    max_len: int = Field(100_000, ge=100)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        return check_redis_url(url)


HandoffSink = Annotated[LogSink | WebhookSink | RedisStreamSink, Field(discriminator="type")]
