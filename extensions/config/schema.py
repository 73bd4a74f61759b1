"""The pydantic model of ``config/gateway.yaml``: one model per YAML section.

Every model forbids unknown keys, so a typo stops start-up instead of being
silently ignored. Each section lives next to the code it configures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from extensions.config.base import StrictModel
from extensions.embedding.settings import Embedding
from extensions.router.settings import HandoffSink, Router


class ResponseHeadersSettings(StrictModel):
    """``response_headers``: the ``x-gateway-*`` headers added to every response."""

    enabled: bool = True


class GatewayConfig(StrictModel):
    """The whole of ``config/gateway.yaml`` (cross-references: ``config/references.py``)."""

    version: Literal[1] = 1
    response_headers: ResponseHeadersSettings = ResponseHeadersSettings()
    embedding: Embedding = Embedding()
    handoff_sinks: dict[str, HandoffSink] = {}
    routers: dict[str, Router] = Field(default_factory=dict)
