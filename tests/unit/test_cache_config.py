"""Cache settings that make no sense stop start-up with the YAML path and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from extensions.config.errors import ConfigError
from extensions.config.loader import load_gateway_config

pytestmark = pytest.mark.unit


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\n" + text)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path, environ=environ or {})
    assert str(path) in str(info.value)
    return str(info.value)


def test_negative_ttl(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  ttl_s: -5\n")
    assert "cache.ttl_s: Input should be greater than or equal to 1 (got -5)" in msg


def test_threshold_outside_unit_interval(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  semantic:\n    threshold: 1.5\n")
    assert "cache.semantic.threshold: Input should be less than or equal to 1 (got 1.5)" in msg


def test_unknown_eviction_policy_lists_allowed(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  memory:\n    eviction: random\n")
    assert "cache.memory.eviction: Input should be 'lru', 'lfu' or 'fifo' (got 'random')" in msg


def test_shared_tier_without_redis_url(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  enabled: true\n  tier: shared\n")
    assert "cache.tier is 'shared' but redis.url is not set" in msg


def test_unknown_scope_and_mode(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  scope: tenant\n  semantic:\n    mode: maybe\n")
    assert "cache.scope: Input should be 'global', 'team' or 'key' (got 'tenant')" in msg
    assert "cache.semantic.mode: Input should be 'serve' or 'shadow' (got 'maybe')" in msg


def test_intent_cache_threshold_checked(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "gateway.yaml").read_text()
    text = text.replace(
        "          ttl_s: 86400         # troubleshooting",
        "          threshold: -1\n          ttl_s: 86400         # troubleshooting",
    )
    msg = load(tmp_path, text)
    assert "routers.support-bot.intents[2].cache.threshold: Input should be greater" in msg


def test_redis_url_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "version: 1\nredis:\n  url: os.environ/MY_REDIS\ncache:\n  enabled: true\n  tier: shared\n"
    )
    config = load_gateway_config(path, environ={"MY_REDIS": "redis://localhost:1/0"})
    assert config.redis.url == "redis://localhost:1/0"
    msg = load(tmp_path, path.read_text(), environ={})
    assert "redis.url: environment variable MY_REDIS is not set" in msg


def test_cacheability_needs_both_classes(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  cacheability:\n    enabled: true\n    cacheable: [a, b]\n")
    assert "cache.cacheability: needs at least 2 'cacheable' and 2 'not_cacheable'" in msg


def test_verifier_kind_and_model_checked(tmp_path: Path) -> None:
    msg = load(tmp_path, "cache:\n  semantic:\n    verifier:\n      kind: magic\n")
    allowed = "Input should be 'rules', 'learned' or 'cross-encoder' (got 'magic')"
    assert f"cache.semantic.verifier.kind: {allowed}" in msg
    text = "cache:\n  semantic:\n    verifier:\n      kind: cross-encoder\n      model: /nope\n"
    assert (
        "cache.semantic.verifier: model '/nope': kind cross-encoder needs the folder "
        "written by gateway train-cache-verifier --kind cross-encoder"
    ) in load(tmp_path, text)
    text = "cache:\n  semantic:\n    verifier:\n      kind: learned\n      model: /nope.npz\n"
    assert "model '/nope.npz': no such file" in load(tmp_path, text)
    text = "cache:\n  semantic:\n    verifier:\n      min_probability: 1.5\n"
    assert "cache.semantic.verifier.min_probability: Input should be less" in load(tmp_path, text)
