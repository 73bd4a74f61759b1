"""Composition root: the objects ``config/litellm.yaml`` names by dotted path.

LiteLLM imports this module while the proxy starts and needs ready instances:
``litellm_settings.callbacks: [extensions.proxy.entry.gateway_callback]`` and
``general_settings.custom_auth: extensions.proxy.entry.custom_auth``. So this is the
one place that reads the environment; ``app.assembly.build_gateway`` does the rest.
Importing it puts the gateway's front before LiteLLM's app. An invalid file raises
``ConfigError`` here, which stops the proxy's start-up; later edits are picked up by
the reloader (``app/reload.py``) without a restart.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path
from typing import Any

from extensions import logs
from extensions.app.assembly import Parts, build_gateway
from extensions.app.reload import ConfigReloader, Generations
from extensions.config.catalog import Catalog
from extensions.pipeline.pipeline import Inflight
from extensions.proxy.auth import GatewayAuth
from extensions.proxy.callback import GatewayCallback
from extensions.proxy.heap import freeze_after_start
from extensions.proxy.upstream import LiteLLMUpstream

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def _llm_router() -> Any:
    from litellm.proxy import proxy_server

    return proxy_server.llm_router


def _ready() -> bool:
    return _llm_router() is not None


def _start_background() -> None:
    """LiteLLM imports this module from its async start-up: start the gateway.yaml
    watcher and the observer's tasks in this worker now, before any traffic, and freeze
    the start-up heap once it has settled."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    reloader.start()
    freeze_after_start(loop)


def _install_front() -> None:
    from litellm.proxy.proxy_server import app

    from extensions.server.front import install

    install(app, generations, reloader, _ready)


logs.configure(os.environ.get("GATEWAY_LOG_LEVEL") or "INFO")
_litellm_yaml = Path(os.environ.get("GATEWAY_LITELLM_CONFIG") or REPO_CONFIG / "litellm.yaml")
_gateway_yaml = Path(os.environ.get("GATEWAY_CONFIG") or REPO_CONFIG / "gateway.yaml")
inflight = Inflight()
upstream = LiteLLMUpstream(_llm_router, Catalog.from_litellm_yaml(_litellm_yaml))
_build = partial(
    build_gateway,
    gateway_yaml=_gateway_yaml,
    litellm_yaml=_litellm_yaml,
    master_key=os.environ.get("LITELLM_MASTER_KEY", ""),
    environ=os.environ,
    upstream=upstream,
    inflight=inflight,
    metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),  # set by the launcher
)
generations = Generations(_build())
_auth = GatewayAuth(generations.parts.verifier)


def _swapped(parts: Parts) -> None:
    _auth.verifier = parts.verifier


reloader = ConfigReloader(
    _gateway_yaml, generations, lambda previous: _build(previous=previous), _swapped
)
gateway_callback = GatewayCallback(inflight, lambda: generations.parts.observer)
custom_auth = _auth.authenticate
_install_front()
_start_background()
