"""The one error type of the request path: what the client is told, in any protocol.

Every refusal and failure a request can meet is a ``GatewayError``: an HTTP status,
an OpenAI-style ``type`` / ``code`` / ``param``, a message meant for the client and
the headers that go with it (``Retry-After``). The protocol adapters render it in
their wire format (OpenAI ``{"error": {...}}``, Anthropic ``{"type": "error", ...}``);
the request log records ``type`` and ``message``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


class GatewayError(Exception):
    """A request that ends with an error answer (never a traceback)."""

    status: int = 500
    type: str = "api_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: Mapping[str, str] = MappingProxyType(dict(headers or {}))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequest(GatewayError):
    """400: the request itself is wrong (its body, a parameter, a model it names)."""

    status = 400
    type = "invalid_request_error"


class Unauthenticated(GatewayError):
    """401: no key, or a key the gateway does not know."""

    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class Forbidden(GatewayError):
    """403: a known key asking for something it was not granted."""

    status = 403
    type = "permission_denied"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"


class TooLarge(GatewayError):
    """413: a body over ``requests.max_body_bytes``."""

    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(GatewayError):
    """429: a key's or team's rpm, tpm or parallel-request limit."""

    status = 429
    type = "rate_limit_error"


class BudgetExceeded(GatewayError):
    """429: a key's or team's daily or monthly budget is spent."""

    status = 429
    type = "budget_exceeded"


class Unavailable(GatewayError):
    """503: the gateway cannot decide right now (e.g. the limit store is down, fail-closed)."""

    status = 503
    type = "service_unavailable"


class UpstreamFailed(GatewayError):
    """The model call failed after LiteLLM's retries and fallbacks (status as it ended)."""

    type = "upstream_error"

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "upstream_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.type = kind


class ClientGone(Exception):
    """The client closed the connection before the answer was complete (not an error answer:
    nobody is left to tell). Recorded with status 499."""


CLIENT_CLOSED = 499
