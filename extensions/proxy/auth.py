"""LiteLLM ``custom_auth``: only the operators' master key reaches LiteLLM's own routes.

The gateway's front answers every route a gateway key may use itself; what it hands
to LiteLLM's app (admin, info and pass-through routes) is for the master key only.
This check repeats that decision inside LiteLLM (defence in depth): anything but the
master key is refused. Access control fails closed.
"""

from __future__ import annotations

from typing import Any

from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from extensions.access.keys import KeyVerifier, Role


def _refused(message: str, code: int) -> ProxyException:
    kind = "authentication_error" if code == 401 else "permission_denied"
    return ProxyException(message=message, type=kind, param="api_key", code=code)


class GatewayAuth:
    """Holds the verifier (swapped on reload); ``authenticate`` is the custom_auth hook."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, request: Any, api_key: str) -> UserAPIKeyAuth:
        principal = self.verifier.verify(api_key) if api_key else None
        if principal is None:
            raise _refused("Invalid or missing API key.", 401)
        if principal.role is not Role.OPERATOR:
            raise _refused("This route is for operators (the master key).", 403)
        return UserAPIKeyAuth(
            token="gateway:master",
            key_alias=principal.alias,
            user_role=LitellmUserRoles.PROXY_ADMIN,
        )
