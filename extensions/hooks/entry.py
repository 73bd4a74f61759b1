"""Composition root: the objects ``config/litellm.yaml`` names by dotted path.

LiteLLM imports this module while the proxy starts and needs ready instances:
``litellm_settings.callbacks: [extensions.hooks.entry.gateway_callback]`` and
``general_settings.custom_auth: extensions.hooks.entry.custom_auth``. So this is
the one place that reads the environment; ``assembly.build_gateway`` does the
rest. An invalid file raises ``ConfigError`` here, which stops the proxy's start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from extensions import logs
from extensions.hooks.assembly import build_gateway

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"

logs.configure(os.environ.get("GATEWAY_LOG_LEVEL") or "INFO")
gateway_callback, _auth = build_gateway(
    gateway_yaml=Path(os.environ.get("GATEWAY_CONFIG") or REPO_CONFIG / "gateway.yaml"),
    litellm_yaml=Path(os.environ.get("GATEWAY_LITELLM_CONFIG") or REPO_CONFIG / "litellm.yaml"),
    master_key=os.environ.get("LITELLM_MASTER_KEY", ""),
    environ=os.environ,
    metrics_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR"),  # set by the launcher
)
custom_auth = _auth.authenticate


def _install_fast_lane() -> None:
    from litellm.proxy.proxy_server import app

    from extensions.hooks.fast_lane import install

    install(app, gateway_callback, _auth)


if os.environ.get("GATEWAY_FAST_LANE", "1") != "0":
    _install_fast_lane()
