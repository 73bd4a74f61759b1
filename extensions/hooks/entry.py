"""Composition root: the objects ``config/litellm.yaml`` names by dotted path.

LiteLLM imports this module while the proxy starts and needs ready instances:
``litellm_settings.callbacks: [extensions.hooks.entry.gateway_callback]`` and
``general_settings.custom_auth: extensions.hooks.entry.custom_auth``. So this is
the one place that reads the environment; ``assembly.build_gateway`` does the
rest. An invalid file raises ``ConfigError`` here, which stops the proxy's start-up;
later edits are picked up by the reloader (``reload.py``) without a restart.
"""

from __future__ import annotations

import asyncio
import os
from functools import partial
from pathlib import Path

from extensions import logs
from extensions.hooks.assembly import build_gateway
from extensions.hooks.auth import GatewayAuth
from extensions.hooks.heap import freeze_after_start
from extensions.hooks.reload import ConfigReloader, Generations, ReloadingCallback

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"

logs.configure(os.environ.get("GATEWAY_LOG_LEVEL") or "INFO")
_build = partial(
    build_gateway,
    gateway_yaml=Path(os.environ.get("GATEWAY_CONFIG") or REPO_CONFIG / "gateway.yaml"),
    litellm_yaml=Path(os.environ.get("GATEWAY_LITELLM_CONFIG") or REPO_CONFIG / "litellm.yaml"),
    master_key=os.environ.get("LITELLM_MASTER_KEY", ""),
    environ=os.environ,
    metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),  # set by the launcher
)
generations = Generations(_build())
_auth = GatewayAuth(generations.parts.verifier)
reloader = ConfigReloader(_build.keywords["gateway_yaml"], generations, _auth,
                          lambda previous: _build(previous=previous))  # fmt: skip
gateway_callback = ReloadingCallback(generations, reloader.start)
custom_auth = _auth.authenticate


def _start_background() -> None:
    """LiteLLM imports this module from its async start-up: start the gateway.yaml
    watcher and the observer's tasks in this worker now, before any traffic (else the
    first request starts them), and freeze the start-up heap once it has settled."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    reloader.start()
    freeze_after_start(loop)


def _install_fast_lane() -> None:
    from litellm.proxy.proxy_server import app

    from extensions.hooks.fast_lane import install

    install(app, generations, _auth, reloader)


if os.environ.get("GATEWAY_FAST_LANE", "1") != "0":
    _install_fast_lane()
_start_background()
