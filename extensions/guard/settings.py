"""``guardrails`` section of gateway.yaml: what the PII guardrail does on each route."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator

from extensions.config.base import StrictModel
from extensions.guard.detectors import ALL_KINDS, Kind

DEFAULT_ROUTE = "*"
ROUTE_NAME = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127})$"


class GuardAction(StrEnum):
    OFF = "off"  # do not scan
    DETECT = "detect"  # scan, log and count the kinds found; send the request unchanged
    REDACT = "redact"  # replace each finding by [KIND] before the request leaves; never restored
    BLOCK = "block"  # answer 400 naming the kinds found (never the data)


class RoutePolicy(StrictModel):
    """One route's guardrail: the action, and which kinds of data it looks for."""

    action: GuardAction = GuardAction.DETECT
    kinds: frozenset[Kind] = Field(default=ALL_KINDS, min_length=1)


class Guardrails(StrictModel):
    """Per route (a model group or router name as the client sent it; ``*`` for the rest).
    No routes: the guardrail is off (nothing is scanned, nothing costs)."""

    routes: dict[str, RoutePolicy] = {}

    @field_validator("routes")
    @classmethod
    def _route_names(cls, routes: dict[str, RoutePolicy]) -> dict[str, RoutePolicy]:
        bad = sorted(name for name in routes if not re.match(ROUTE_NAME, name))
        if bad:
            raise ValueError(f"not a model group, router name or '*': {bad}")
        return routes

    def policy_for(self, route: str | None) -> RoutePolicy:
        """The route's own policy, else ``*``'s, else off."""
        if route is not None and route in self.routes:
            return self.routes[route]
        return self.routes.get(DEFAULT_ROUTE, _OFF)


_OFF = RoutePolicy(action=GuardAction.OFF)
