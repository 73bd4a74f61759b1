"""``Upstream`` over LiteLLM's router: the engine for every model call.

Calls ``router.acompletion`` / ``router.aembedding`` of the proxy's own router (the
one built from config/litellm.yaml: load balancing, retries, fallbacks, cooldowns),
with the fallbacks this key may use and the request id in the metadata (so the
callback can find the request). LiteLLM's exceptions become ``UpstreamFailed`` with an
honest status: 400 for what the model refused as a bad request, 429 when every
deployment is cooling down, 504 for timeouts, 502 for every other provider failure
(including a provider rejecting the operator's key: the client's key was fine).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from extensions.config.catalog import Catalog
from extensions.pipeline.context import ChatRequest, EmbeddingRequest, Served, Usage
from extensions.pipeline.errors import UpstreamFailed
from extensions.pipeline.upstream import Call, Reply

URL = re.compile(r"https?://\S+")
META_KEY = "gateway_request_id"  # the only thing LiteLLM is told about a request


def usage_of(usage: object) -> Usage:
    """Tokens from an OpenAI-style usage (LiteLLM's, for every provider)."""
    u: Mapping[str, Any] = usage if isinstance(usage, Mapping) else {}
    details = u.get("prompt_tokens_details")
    cached = int((details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0)
    cached = int(u.get("cache_read_input_tokens") or cached)
    written = int(u.get("cache_creation_input_tokens") or 0)
    return Usage(
        int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0), cached, written
    )


def _short(exc: BaseException) -> str:
    message = str(getattr(exc, "message", None) or exc).strip().splitlines()
    text = URL.sub("[url]", message[0] if message else type(exc).__name__)
    return text[:300]


def upstream_error(exc: BaseException) -> UpstreamFailed:
    status = getattr(exc, "status_code", None)
    status = int(status) if isinstance(status, int) else 502
    name = type(exc).__name__
    if status == 429:
        cooldown = getattr(exc, "cooldown_time", None)
        retry = (
            {"retry-after": str(max(1, int(cooldown)))} if isinstance(cooldown, int | float) else {}
        )
        kind = (
            "all_deployments_in_cooldown"
            if "cooldown" in str(getattr(exc, "type", ""))
            else ("rate_limit_error")
        )
        return UpstreamFailed(
            429,
            f"The model is rate-limited or cooling down: {_short(exc)}",
            kind=kind,
            headers=retry,
        )
    if status in (400, 413, 422) or "ContextWindow" in name or "ContentPolicy" in name:
        return UpstreamFailed(
            400, f"The model refused the request: {_short(exc)}", kind="invalid_request_error"
        )
    if status == 408 or "Timeout" in name:
        return UpstreamFailed(504, "The model did not answer in time.", kind="timeout")
    return UpstreamFailed(502, f"The model call failed ({name}).", kind="upstream_error")


class LiteLLMStream:
    """LiteLLM's stream wrapper as neutral chunk dicts; usage and cost once it has ended."""

    def __init__(self, wrapper: Any, served: Served, cost: Callable[[Served], float]) -> None:
        self._wrapper = wrapper
        self.served = served
        self._cost = cost

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        try:
            async for chunk in self._wrapper:
                data = chunk.model_dump(exclude_none=True)
                if data.get("usage"):
                    self.served.usage = usage_of(data["usage"])
                yield data
        except UpstreamFailed:
            raise
        except Exception as exc:
            raise upstream_error(exc) from exc
        self.served.cost_usd = self._cost(self.served)

    async def aclose(self) -> None:
        close = getattr(self._wrapper, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # noqa: BLE001 - the stream is being abandoned anyway
                return


class LiteLLMUpstream:
    def __init__(self, router: Callable[[], Any], catalog: Catalog) -> None:
        self._router = router  # the proxy's router exists only once LiteLLM has started
        self.catalog = catalog

    def _kwargs(self, call: Call) -> dict[str, Any]:
        request = call.request
        kwargs: dict[str, Any] = {
            "model": call.model_group,
            "metadata": {META_KEY: call.request_id},
            "fallbacks": [{group: list(targets)} for group, targets in call.fallbacks.items()],
            **request.params,
        }
        if isinstance(request, ChatRequest):
            kwargs["messages"] = request.messages
        else:
            kwargs["input"] = request.input
        return kwargs

    def _served(self, call: Call, hidden: Mapping[str, Any]) -> Served:
        deployment = str(hidden.get("model_id") or "") or None
        known = self.catalog.deployments.get(deployment or "")
        headers = hidden.get("additional_headers") or {}
        return Served(
            model_group=known.group if known else call.model_group,
            deployment=deployment,
            provider=str(hidden.get("custom_llm_provider") or (known.provider if known else "")),
            fallbacks=int(headers.get("x-litellm-attempted-fallbacks") or 0),
            retries=int(headers.get("x-litellm-attempted-retries") or 0),
        )

    def _cost(self, served: Served, reported: object = None) -> float:
        """The configured price of the deployment that answered; LiteLLM's own cost when the
        deployment has no price in litellm.yaml."""
        known = self.catalog.deployments.get(served.deployment or "")
        if known is not None and known.price is not None:
            u = served.usage
            return known.price.cost(
                u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.cache_write_tokens
            )
        return float(reported) if isinstance(reported, int | float) else 0.0

    async def complete(self, call: Call) -> Reply:
        try:
            response = await self._router().acompletion(**self._kwargs(call))
        except Exception as exc:
            raise upstream_error(exc) from exc
        hidden = getattr(response, "_hidden_params", None) or {}
        body = response.model_dump()
        served = self._served(call, hidden)
        served.usage = usage_of(body.get("usage"))
        served.cost_usd = self._cost(served, hidden.get("response_cost"))
        return Reply(body, served)

    async def stream(self, call: Call) -> LiteLLMStream:
        kwargs = self._kwargs(call)
        kwargs.update(stream=True, stream_options={"include_usage": True})
        try:
            wrapper = await self._router().acompletion(**kwargs)
        except Exception as exc:
            raise upstream_error(exc) from exc
        served = self._served(call, getattr(wrapper, "_hidden_params", None) or {})
        return LiteLLMStream(wrapper, served, self._cost)

    async def embed(self, call: Call) -> Reply:
        assert isinstance(call.request, EmbeddingRequest)
        try:
            response = await self._router().aembedding(**self._kwargs(call))
        except Exception as exc:
            raise upstream_error(exc) from exc
        hidden = getattr(response, "_hidden_params", None) or {}
        body = response.model_dump()
        served = self._served(call, hidden)
        served.usage = usage_of(body.get("usage"))
        served.cost_usd = self._cost(served, hidden.get("response_cost"))
        return Reply(body, served)
