"""Composition root: the objects ``config/litellm.yaml`` names by dotted path.

LiteLLM imports this module while the proxy starts and needs ready instances:
``litellm_settings.callbacks: [extensions.hooks.entry.gateway_callback]`` and
``general_settings.custom_auth: extensions.hooks.entry.custom_auth``. So this is
the one place that reads the environment and loads ``gateway.yaml``; everything
else gets its settings passed in. An invalid file raises ``ConfigError`` here,
which stops the proxy's start-up with the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from extensions.access.keys import KeyVerifier
from extensions.config import ConfigError, load_gateway_config
from extensions.hooks.auth import GatewayAuth
from extensions.hooks.gateway_callback import GatewayCallback

GATEWAY_CONFIG_ENV = "GATEWAY_CONFIG"
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
DEFAULT_GATEWAY_CONFIG = Path(__file__).resolve().parents[2] / "config" / "gateway.yaml"


def _build() -> tuple[GatewayCallback, GatewayAuth]:
    path = Path(os.environ.get(GATEWAY_CONFIG_ENV) or DEFAULT_GATEWAY_CONFIG)
    config = load_gateway_config(path)
    master_key = os.environ.get(MASTER_KEY_ENV, "")
    if not master_key:
        raise ConfigError("environment", [f"{MASTER_KEY_ENV} must be set (the operators' key)"])
    return GatewayCallback(config), GatewayAuth(KeyVerifier.from_master_key(master_key))


gateway_callback, _auth = _build()
custom_auth = _auth.authenticate
