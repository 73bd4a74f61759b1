"""The gateway's LiteLLM callback: adapts LiteLLM's hook calls to our pure functions.

LiteLLM only runs ``async_pre_call_hook``, ``async_post_call_response_headers_hook``
and ``async_post_call_streaming_iterator_hook`` when they are defined on the
registered instance's own class (not inherited), so each hook is defined here.
"""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from extensions.config.schema import GatewayConfig
from extensions.hooks.headers import CallInfo, deployment_headers, routing_headers
from extensions.hooks.routing import META_KEY, RoutingHook
from extensions.protocol.validation import (
    RequestProblem,
    check_chat_request,
    check_embedding_request,
)

_CHECKS = {
    "acompletion": check_chat_request,
    "completion": check_chat_request,
    "aembedding": check_embedding_request,
    "embeddings": check_embedding_request,
}


def _bad_request(problem: RequestProblem) -> ProxyException:
    return ProxyException(
        message=problem.message, type="invalid_request_error", param=problem.param, code=400
    )


class GatewayCallback(CustomLogger):  # type: ignore[misc]
    """One instance per proxy worker, holding the validated gateway config."""

    def __init__(self, config: GatewayConfig, routing: RoutingHook | None = None) -> None:
        super().__init__()
        self.config = config
        self.routing = routing

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        check = _CHECKS.get(call_type)
        problem = check(data) if check else None
        if problem:
            raise _bad_request(problem)
        if self.routing is not None and call_type == "acompletion" and self.routing.handles(data):
            return await self.routing.apply(data, getattr(user_api_key_dict, "key_alias", None))
        return data

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        if not self.config.response_headers.enabled:
            return None
        metadata = data.get("metadata") or {}
        routed = metadata.get(META_KEY) if isinstance(metadata, dict) else None
        headers = routing_headers(routed) if isinstance(routed, dict) else {}
        if headers.get("x-gateway-action", "ROUTE") == "ROUTE":
            headers.update(deployment_headers(CallInfo.from_litellm(data, litellm_call_info)))
        return headers or None
