"""The LiteLLM callback: reports failed provider attempts to the request they belong to.

LiteLLM calls ``async_log_failure_event`` for every failed attempt of a call (a retry
or a fallback may still answer). The request is found by the id the upstream put in
the call's metadata; the attempt goes into its context (the request log's
``failed_attempts``) and the ``gateway_upstream_errors_total`` metric. Everything else
about a call the pipeline learns from the call's own result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from extensions.observe.observer import Observer
from extensions.pipeline.pipeline import Inflight
from extensions.proxy.upstream import META_KEY


class GatewayCallback(CustomLogger):  # type: ignore[misc]
    def __init__(self, inflight: Inflight, observer: Callable[[], Observer | None]) -> None:
        super().__init__()
        self.inflight = inflight
        self.observer = observer

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        record = kwargs.get("standard_logging_object") or {}
        group = record.get("model_group") or kwargs.get("model")
        exc = kwargs.get("exception")
        error = type(exc).__name__ if exc is not None else "unknown"
        ctx = self.inflight.get(metadata.get(META_KEY) if isinstance(metadata, dict) else None)
        if ctx is not None:
            ctx.failed_attempts.append((str(group) if group else None, error))
        observer = self.observer()
        if observer is not None:
            observer.upstream_error(str(group) if group else None, error)
