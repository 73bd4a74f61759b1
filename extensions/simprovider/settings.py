"""Typed settings of the simulated provider (the schema of ``config/simprovider.yaml``).

A model's effective behaviour is ``defaults`` with the fields its ``models.<name>`` entry sets
explicitly laid over it (fields an entry leaves out come from ``defaults``). Runtime overrides
(``PUT /_sim/models/{model}``) use the same schema and replace the YAML entry.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SimSettingsError(ValueError):
    """Invalid or unreadable simulator settings; the message names the file and YAML path."""


class FaultKind(StrEnum):
    """What a fault rule does to a request."""

    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    TIMEOUT = "timeout"
    DROP = "drop"


class WireFormat(StrEnum):
    """Which wire format a model may be called through (``any``: all of them)."""

    ANY = "any"
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


class FaultRule(BaseModel):
    """One fault rule; rules of a model are tried in order and the first that fires wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    first_n: int | None = Field(default=None, ge=1)
    retry_after_s: float = Field(default=1.0, ge=0.0, le=3600.0)
    hang_s: float = Field(default=600.0, ge=0.0, le=86400.0)
    after_chunks: int = Field(default=0, ge=0, le=100000)


class WordRange(BaseModel):
    """Bounds on the number of vocabulary words in a generated answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int = Field(default=20, ge=1, le=5000)
    max: int = Field(default=60, ge=1, le=5000)

    @model_validator(mode="after")
    def _ordered(self) -> WordRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class ModelBehaviour(BaseModel):
    """Behaviour of one simulated model (also the schema of a ``models`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: WireFormat = WireFormat.ANY
    ttft_ms: float = Field(default=20.0, ge=0.0, le=600_000.0)
    tokens_per_second: float = Field(default=200.0, gt=0.0, le=1_000_000.0)
    answer_words: WordRange = WordRange()
    embedding_dim: int = Field(default=256, ge=1, le=8192)
    # prompt caching (see docs/simulator.md): the minimum cacheable prefix for every provider
    cache_min_tokens: int = Field(default=1024, ge=0, le=1_000_000)
    # Anthropic default TTL; retention of OpenAI automatic and Gemini implicit prefixes
    cache_ttl_s: float = Field(default=300.0, gt=0.0, le=86400.0)
    # OpenAI automatic / Gemini implicit caching on or off, and its prefix step
    cache_automatic: bool = True
    cache_increment_tokens: int = Field(default=128, ge=1, le=1_000_000)
    # Gemini cachedContents created without ttl / expireTime live this long
    cached_content_ttl_s: float = Field(default=3600.0, gt=0.0, le=31_536_000.0)
    faults: tuple[FaultRule, ...] = ()


class SimSettings(BaseModel):
    """The whole ``simprovider.yaml`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    request_log_size: int = Field(default=50, ge=0, le=10_000)
    accepted_api_keys: tuple[str, ...] = ()
    defaults: ModelBehaviour = ModelBehaviour()
    models: dict[str, ModelBehaviour] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _model_names(self) -> SimSettings:
        for name in self.models:
            if not name.strip() or "/" in name or ":" in name:
                raise ValueError(f"model name {name!r} must be non-empty without '/' or ':'")
        return self

    def behaviour_for(self, model: str, entry: ModelBehaviour | None = None) -> ModelBehaviour:
        """Effective behaviour: ``defaults`` overlaid with the entry's explicitly set fields.

        ``entry`` defaults to the YAML entry of ``model`` (a model without one uses defaults).
        """
        chosen = entry if entry is not None else self.models.get(model)
        return merge_behaviour(self.defaults, chosen)


def merge_behaviour(base: ModelBehaviour, entry: ModelBehaviour | None) -> ModelBehaviour:
    """``base`` with the fields ``entry`` set explicitly replaced by the entry's values."""
    if entry is None:
        return base
    return base.model_copy(update={name: getattr(entry, name) for name in entry.model_fields_set})


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``("models", "sim-a", "faults", 0, "rate")`` -> ``models.sim-a.faults[0].rate``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<root>"


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``<yaml path>: <what was expected> (got <value>)``."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc = format_loc(tuple(item["loc"]))
        if prefix:
            loc = prefix if loc == "<root>" else f"{prefix}.{loc}"
        got = item.get("input")
        got_text = "" if item["type"] in ("missing", "model_type") else f" (got {got!r})"
        lines.append(f"{loc}: {item['msg']}{got_text}")
    return "\n".join(f"  - {line}" for line in lines)


def parse_sim_settings(data: Any, source: str) -> SimSettings:
    """Validate already-parsed YAML/JSON data; errors name ``source`` and each YAML path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SimSettingsError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        return SimSettings.model_validate(data)
    except ValidationError as exc:
        raise SimSettingsError(
            f"{source}: invalid simulator settings:\n{describe_validation_error(exc)}"
        ) from exc


def load_sim_settings(path: str | Path) -> SimSettings:
    """Read and validate a simulator settings YAML file.

    Raises ``SimSettingsError`` (a ``ValueError``) naming the file, the YAML path of each
    problem (e.g. ``models.sim-gpt-a.faults[0].rate``) and what was expected.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimSettingsError(f"{file}: cannot read simulator settings: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimSettingsError(f"{file}: not valid YAML: {exc}") from exc
    return parse_sim_settings(data, str(file))
