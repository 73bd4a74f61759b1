"""LiteLLM ``custom_auth`` adapter: verifies the presented key, answers 401 otherwise.

Access control fails closed: anything but a verified key is refused.
"""

from __future__ import annotations

from typing import Any

from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

from extensions.access.keys import KeyVerifier, Principal, Role


def _unauthorized(message: str) -> ProxyException:
    return ProxyException(
        message=message, type="authentication_error", param="api_key", code=401,
        openai_code="invalid_api_key",
    )  # fmt: skip


def to_litellm_auth(principal: Principal) -> UserAPIKeyAuth:
    role = LitellmUserRoles.PROXY_ADMIN if principal.role is Role.OPERATOR else None
    return UserAPIKeyAuth(
        token=f"gateway:{principal.alias}", key_alias=principal.alias, user_role=role,
        team_id=principal.team,
    )  # fmt: skip


class GatewayAuth:
    """Holds the verifier; ``authenticate`` is what ``general_settings.custom_auth`` names."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self.verifier = verifier

    async def authenticate(self, request: Any, api_key: str) -> UserAPIKeyAuth:
        if not api_key:
            raise _unauthorized("No API key provided. Send it as 'Authorization: Bearer <key>'.")
        principal = self.verifier.verify(api_key)
        if principal is None:
            raise _unauthorized("Invalid API key.")
        return to_litellm_auth(principal)
