"""The pydantic model of ``config/gateway.yaml``: one model per YAML section.

Every model forbids unknown keys, so a typo stops start-up instead of being
silently ignored. Sections are added here as the gateway grows (router, cache,
access control, logging); each lives in its own module and is imported here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseHeadersSettings(StrictModel):
    """``response_headers``: the ``x-gateway-*`` headers added to every response."""

    enabled: bool = True


class GatewayConfig(StrictModel):
    """The whole of ``config/gateway.yaml``."""

    version: Literal[1] = 1
    response_headers: ResponseHeadersSettings = ResponseHeadersSettings()
