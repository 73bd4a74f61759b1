"""Loading and validating ``config/gateway.yaml`` (one pydantic model per section)."""

from extensions.config.errors import ConfigError
from extensions.config.loader import load_gateway_config
from extensions.config.schema import GatewayConfig

__all__ = ["ConfigError", "GatewayConfig", "load_gateway_config"]
