"""``requests`` section of gateway.yaml: limits on what a client may send."""

from __future__ import annotations

from pydantic import Field

from extensions.config.base import StrictModel


class RequestSettings(StrictModel):
    """Bodies larger than ``max_body_bytes`` are refused with 413 before anything reads them."""

    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
