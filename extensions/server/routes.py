"""Pure: which kind of route a request is for. Deny by default.

Gateway keys reach exactly the LLM endpoints (each protocol's path, with and without
``/v1``) and the model list. The operators' endpoints need the master key. Public
without a key: the two health routes and the dashboard's static page (no data in
it). Everything else — LiteLLM's admin, info and pass-through routes, and paths that
do not exist — is for the master key only: no key gets 401, a gateway key 403, and
the master key is handed to LiteLLM's own app.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from extensions.pipeline.context import Protocol

LLM_PATHS = {
    "/v1/chat/completions": Protocol.CHAT,
    "/chat/completions": Protocol.CHAT,
    "/v1/responses": Protocol.RESPONSES,
    "/responses": Protocol.RESPONSES,
    "/v1/messages": Protocol.MESSAGES,
    "/v1/embeddings": Protocol.EMBEDDINGS,
    "/embeddings": Protocol.EMBEDDINGS,
}
MODELS_PATHS = ("/v1/models", "/models")
LIVE_PATH = "/gateway/health/live"
READY_PATH = "/gateway/health/ready"
USAGE_PATH = "/gateway/usage"
CONFIG_PATH = "/gateway/config"
RELOAD_PATH = "/gateway/reload"


class Kind(StrEnum):
    LLM = "llm"  # an LLM endpoint: the pipeline
    MODELS = "models"  # the model list (any valid key: what it may use)
    HEALTH = "health"  # public
    DASHBOARD = "dashboard"  # public static page
    OPERATOR = "operator"  # the master key: the gateway's own operator endpoints
    LITELLM = "litellm"  # the master key: handed to LiteLLM's app
    WRONG_METHOD = "wrong_method"  # a known route, another method


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    protocol: Protocol = Protocol.OTHER
    name: str = ""  # operator endpoint / health check / model id
    allowed: str = ""  # WRONG_METHOD: the method the route takes


@dataclass(frozen=True)
class RouteTable:
    """The routes of one generation (the metrics and dashboard paths come from its config)."""

    metrics_path: str | None = "/metrics"
    dashboard_path: str | None = "/gateway/dashboard"

    def operator_routes(self) -> dict[str, tuple[str, str]]:
        """canonical path -> (method, name)."""
        routes = {
            USAGE_PATH: ("GET", "usage"),
            CONFIG_PATH: ("GET", "config"),
            RELOAD_PATH: ("POST", "reload"),
        }
        if self.metrics_path:
            routes[self.metrics_path.lower().rstrip("/")] = ("GET", "metrics")
        if self.dashboard_path:
            routes[self.dashboard_path.lower().rstrip("/") + "/data"] = ("GET", "dashboard-data")
        return routes

    def classify(self, method: str, path: str) -> Route:
        """``path`` must be canonical (``http.canonical``)."""
        protocol = LLM_PATHS.get(path)
        if protocol is not None:
            return _by_method(method, "POST", Route(Kind.LLM, protocol))
        if path in MODELS_PATHS:
            return _by_method(method, "GET", Route(Kind.MODELS))
        for prefix in MODELS_PATHS:
            if path.startswith(prefix + "/"):
                return _by_method(method, "GET", Route(Kind.MODELS, name=path[len(prefix) + 1 :]))
        if path in (LIVE_PATH, READY_PATH):
            return _by_method(method, "GET", Route(Kind.HEALTH, name=path.rsplit("/", 1)[1]))
        if self.dashboard_path and path == self.dashboard_path.lower().rstrip("/"):
            return _by_method(method, "GET", Route(Kind.DASHBOARD))
        operator = self.operator_routes().get(path)
        if operator is not None:
            return _by_method(method, operator[0], Route(Kind.OPERATOR, name=operator[1]))
        return Route(Kind.LITELLM)


def _by_method(method: str, allowed: str, route: Route) -> Route:
    if method == allowed:
        return route
    return Route(Kind.WRONG_METHOD, route.protocol, route.name, allowed)
