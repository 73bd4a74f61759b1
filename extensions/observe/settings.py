"""``observability`` section of gateway.yaml: request log, metrics, dashboard."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator

from extensions.config.base import StrictModel


class Redaction(StrictModel):
    """A pattern replaced by ``[<name>]`` in logged message content."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class ContentLogging(StrictModel):
    """Message text in the request log: off unless a route (router or model) is listed."""

    routes: list[str] = []
    max_chars: int = Field(2000, ge=16, le=100_000)
    redact: list[Redaction] = []


class RequestLogSettings(StrictModel):
    """One JSON line per request, to stdout and/or rotating files (one per worker)."""

    enabled: bool = True
    stdout: bool = True
    dir: str | None = None  # requests-<pid>.jsonl in this folder (relative: to the working dir)
    max_bytes: int = Field(50_000_000, ge=10_000, le=10_000_000_000)
    backups: int = Field(5, ge=0, le=1000)
    content: ContentLogging = ContentLogging()


class MetricsSettings(StrictModel):
    """Prometheus metrics at ``path`` (all workers added up in multiprocess mode)."""

    enabled: bool = True
    path: str = Field("/metrics", pattern=r"^/[A-Za-z0-9/_.-]*$")
    require_master_key: bool = True


class TimelineStore(StrEnum):
    MEMORY = "memory"  # this worker's requests only
    REDIS = "redis"  # every worker and replica (needs redis.url)


class DashboardSettings(StrictModel):
    """The operators' page (charts of the last hour and day) and its data endpoint."""

    enabled: bool = True
    path: str = Field("/gateway/dashboard", pattern=r"^/[A-Za-z0-9/_.-]*$")
    store: TimelineStore = TimelineStore.MEMORY


class Observability(StrictModel):
    request_log: RequestLogSettings = RequestLogSettings()
    metrics: MetricsSettings = MetricsSettings()
    dashboard: DashboardSettings = DashboardSettings()
