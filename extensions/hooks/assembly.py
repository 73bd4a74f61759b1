"""Build the gateway's hook objects from validated settings (no environment reads here)."""

from __future__ import annotations

from pathlib import Path

from extensions.access.keys import KeyVerifier
from extensions.config.errors import ConfigError
from extensions.config.loader import litellm_model_groups, load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.hooks.auth import GatewayAuth
from extensions.hooks.gateway_callback import GatewayCallback
from extensions.hooks.routing import RoutingHook


def build_routing(config: GatewayConfig, base_dir: Path) -> RoutingHook | None:
    """Load the shared encoder and train (or load cached) classifiers; None without routers."""
    if not config.routers:
        return None
    from extensions.embedding.encoder import sentence_encoder
    from extensions.router.engine import RouterEngine, compile_routers
    from extensions.router.handoff import HandoffDispatcher, build_sink
    from extensions.router.llm_classifier import LlmIntentClassifier, router_completion

    encoder = sentence_encoder(config.embedding)
    routers = compile_routers(config.routers, encoder, base_dir, config.embedding.cache_dir)
    sinks = {name: build_sink(s) for name, s in config.handoff_sinks.items()}
    llm = {
        name: LlmIntentClassifier(spec.llm_classifier, spec.description, spec.intents,
                                  router_completion)
        for name, spec in config.routers.items() if spec.llm_classifier.enabled
    }  # fmt: skip
    return RoutingHook(RouterEngine(routers, encoder, llm), HandoffDispatcher(sinks))


def build_gateway(
    gateway_yaml: Path, litellm_yaml: Path, master_key: str
) -> tuple[GatewayCallback, GatewayAuth]:
    """The callback and the auth check for one proxy worker; raises ``ConfigError``."""
    config = load_gateway_config(gateway_yaml, litellm_model_groups(litellm_yaml))
    if not master_key:
        raise ConfigError("environment", ["LITELLM_MASTER_KEY must be set (the operators' key)"])
    callback = GatewayCallback(config, build_routing(config, gateway_yaml.parent))
    return callback, GatewayAuth(KeyVerifier.from_master_key(master_key))
