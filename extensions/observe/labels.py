"""Bounded label values for the dashboard timeline and the Prometheus metrics.

Every breakdown (model group, deployment, provider, key, team, intent, error type)
takes its values from configured names only: litellm.yaml's model groups,
deployments and providers, gateway.yaml's routers and their intents, key aliases
and teams, and the fixed names the code itself uses. Anything else is ``other``
and a missing value ``none``, so no client can grow the timeline or a metric.
Rebuilt for every configuration generation (``Observer.configure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from extensions.guard.detectors import Kind as PiiKind

if TYPE_CHECKING:
    from extensions.config.catalog import Catalog
    from extensions.config.schema import GatewayConfig

OTHER = "other"  # a value outside the configured set
NONE = "none"  # no value (e.g. no model answered, no key)
GATEWAY = "gateway"  # provider of the gateway's own answers
OWN_DEPLOYMENTS = frozenset({"cache", "router", "budget"})  # the gateway's own answers
MASTER = "master"  # the alias of the operators' master key
ACTIONS = frozenset({"DIRECT", "ROUTE", "RESPOND", "CLARIFY", "HANDOFF", "REFUSE"})
CACHE_OUTCOMES = frozenset({"HIT_EXACT", "HIT_SEMANTIC", "SHADOW_HIT", "MISS", "BYPASS", "NONE"})
ROUTER_INTENTS = frozenset({"default", "out_of_scope"})  # intents every router has
# error.type of every GatewayError and of UpstreamFailed (proxy/upstream.py upstream_error)
ERROR_TYPES = frozenset(
    {
        "api_error",
        "invalid_request_error",
        "authentication_error",
        "permission_denied",
        "not_found_error",
        "rate_limit_error",
        "budget_exceeded",
        "service_unavailable",
        "upstream_error",
        "all_deployments_in_cooldown",
        "timeout",
    }
)
# exception class names LiteLLM reports for a failed attempt (proxy/callback.py)
ATTEMPT_ERRORS = frozenset(
    {
        "APIConnectionError",
        "APIError",
        "AuthenticationError",
        "BadGatewayError",
        "BadRequestError",
        "BudgetExceededError",
        "ContentPolicyViolationError",
        "ContextWindowExceededError",
        "InternalServerError",
        "MidStreamFallbackError",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "RouterRateLimitError",
        "ServiceUnavailableError",
        "Timeout",
        "UnprocessableEntityError",
    }
)
PII_ACTIONS = frozenset({"detected", "redacted", "blocked"})
PII_KINDS = frozenset(k.value for k in PiiKind)
SOURCES = frozenset({"gateway", "upstream"})


def pick(allowed: frozenset[str], value: object) -> str:
    """``value`` if it is one of ``allowed``; ``none`` when missing, else ``other``."""
    if value is None or value == "":
        return NONE
    return value if isinstance(value, str) and value in allowed else OTHER


@dataclass(frozen=True)
class Labels:
    """The configured names one generation may put in a label."""

    groups: frozenset[str] = frozenset()
    routers: frozenset[str] = frozenset()
    deployments: frozenset[str] = OWN_DEPLOYMENTS
    providers: frozenset[str] = frozenset({GATEWAY})
    keys: Mapping[str, str | None] = field(default_factory=dict)  # alias -> team
    teams: frozenset[str] = frozenset()
    intents: frozenset[str] = frozenset()  # "router/intent"

    routes: frozenset[str] = field(init=False)  # groups and routers
    aliases: frozenset[str] = field(init=False)  # key aliases and the master key's

    def __post_init__(self) -> None:
        object.__setattr__(self, "routes", self.groups | self.routers)
        object.__setattr__(self, "aliases", frozenset(self.keys) | {MASTER})

    def group(self, value: object) -> str:
        return pick(self.groups, value)

    def route(self, value: object) -> str:
        return pick(self.routes, value)

    def deployment(self, value: object) -> str:
        return pick(self.deployments, value)

    def provider(self, value: object) -> str:
        return pick(self.providers, value)

    def key(self, value: object) -> str:
        return pick(self.aliases, value)

    def team(self, value: object) -> str:
        return pick(self.teams, value)

    def router(self, value: object) -> str:
        return pick(self.routers, value)

    def intent(self, router: object, intent: object) -> str:
        """A configured intent of ``router`` (``default`` and ``out_of_scope`` included)."""
        if intent is None or intent == "":
            return NONE
        return str(intent) if f"{router}/{intent}" in self.intents else OTHER

    @classmethod
    def of(
        cls,
        groups: Iterable[str],
        deployments: Mapping[str, str],
        routers: Mapping[str, Iterable[str]],
        keys: Mapping[str, str | None],
        teams: Iterable[str],
    ) -> Labels:
        """From plain names: deployments are ``{id: provider}``, routers ``{name: intents}``,
        keys ``{alias: team}``."""
        return cls(
            groups=frozenset(groups),
            routers=frozenset(routers),
            deployments=frozenset(deployments) | OWN_DEPLOYMENTS,
            providers=frozenset(deployments.values()) | {GATEWAY},
            keys=dict(keys),
            teams=frozenset(teams) | {t for t in keys.values() if t},
            intents=frozenset(
                f"{router}/{intent}"
                for router, names in routers.items()
                for intent in (*names, *ROUTER_INTENTS)
            ),
        )

    @classmethod
    def from_config(cls, config: GatewayConfig, catalog: Catalog) -> Labels:
        """One generation's names: litellm.yaml's and gateway.yaml's."""
        return cls.of(
            catalog.groups,
            {d.id: d.provider for d in catalog.deployments.values()},
            {name: [i.name for i in spec.intents] for name, spec in config.routers.items()},
            {k.alias: k.team for k in config.access.keys},
            config.access.teams,
        )
