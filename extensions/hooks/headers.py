"""Pure: which ``x-gateway-*`` headers describe who answered a request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HEADER_DEPLOYMENT = "x-gateway-deployment"
HEADER_PROVIDER = "x-gateway-provider"
HEADER_MODEL_GROUP = "x-gateway-model-group"


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What LiteLLM tells a hook about the deployment that served a call."""

    model_group: str | None
    deployment_id: str | None
    provider: str | None

    @classmethod
    def from_litellm(
        cls, data: Mapping[str, object], call_info: Mapping[str, object] | None
    ) -> CallInfo:
        info = call_info or {}
        model_info = info.get("model_info")
        deployment = info.get("model_id")
        if not deployment and isinstance(model_info, Mapping):
            deployment = model_info.get("id")
        metadata = data.get("metadata")
        group = metadata.get("model_group") if isinstance(metadata, Mapping) else None
        provider = info.get("custom_llm_provider")
        return cls(
            model_group=str(group) if group else None,
            deployment_id=str(deployment) if deployment else None,
            provider=str(provider) if provider else None,
        )


def deployment_headers(info: CallInfo) -> dict[str, str]:
    """Headers naming the model group, deployment and provider that answered."""
    out: dict[str, str] = {}
    if info.model_group:
        out[HEADER_MODEL_GROUP] = info.model_group
    if info.deployment_id:
        out[HEADER_DEPLOYMENT] = info.deployment_id
    if info.provider:
        out[HEADER_PROVIDER] = info.provider
    return out


def routing_headers(routed: Mapping[str, object]) -> dict[str, str]:
    """``x-gateway-router``, ``-intent``, ``-confidence``, ``-action`` from the router's record."""
    out = {"x-gateway-router": str(routed.get("router", "")),
           "x-gateway-action": str(routed.get("action", ""))}  # fmt: skip
    if routed.get("intent"):
        out["x-gateway-intent"] = str(routed["intent"])
    if routed.get("handoff_id"):
        out["x-gateway-handoff-id"] = str(routed["handoff_id"])
    confidence = routed.get("confidence")
    if isinstance(confidence, float | int):
        out["x-gateway-confidence"] = f"{float(confidence):.3f}"
    return out


HEADER_CACHE = "x-gateway-cache"


def cache_headers(record: object) -> dict[str, str]:
    """``x-gateway-cache`` (HIT_EXACT, HIT_SEMANTIC, SHADOW_HIT, MISS, BYPASS), the
    similarity of the best semantic candidate, and why the cache was bypassed."""
    if not isinstance(record, Mapping) or not record.get("outcome"):
        return {}
    out = {HEADER_CACHE: str(record["outcome"])}
    similarity = record.get("similarity")
    if isinstance(similarity, float | int):
        out["x-gateway-cache-similarity"] = f"{float(similarity):.4f}"
    reason = record.get("reason")
    if reason:
        out["x-gateway-cache-reason"] = str(reason).encode("ascii", "replace").decode()
    return out
