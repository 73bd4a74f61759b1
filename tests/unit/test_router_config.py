"""Bad router configuration stops start-up with a message naming the YAML path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from extensions.config.errors import ConfigError
from extensions.config.loader import litellm_model_groups, load_gateway_config

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SHIPPED: dict[str, Any] = yaml.safe_load((REPO / "config" / "gateway.yaml").read_text())
GROUPS = litellm_model_groups(REPO / "config" / "litellm.yaml")


def load_variant(tmp_path: Path, edit: Any) -> str:
    data = copy.deepcopy(SHIPPED)
    edit(data)
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path, GROUPS)
    assert str(path) in str(info.value)
    return str(info.value)


def intents(data: dict[str, Any]) -> list[dict[str, Any]]:
    return list(data["routers"]["support-bot"]["intents"])


def test_shipped_router_config_is_valid() -> None:
    config = load_gateway_config(REPO / "config" / "gateway.yaml", GROUPS)
    assert "support-bot" in config.routers


def test_unknown_model_group(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[2]["route"]["model"] = "gpt-17"

    msg = load_variant(tmp_path, edit)
    assert "routers.support-bot.intents[2].route.model: unknown model group 'gpt-17'" in msg
    assert "claude-sim" in msg  # lists what exists


def test_unknown_default_model(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["routers"]["support-bot"]["default"]["model"] = "nope"

    assert "routers.support-bot.default.model: unknown model group 'nope'" in load_variant(
        tmp_path, edit
    )


def test_threshold_out_of_range(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["routers"]["support-bot"]["thresholds"]["out_of_scope"] = 1.5

    msg = load_variant(tmp_path, edit)
    assert "routers.support-bot.thresholds.out_of_scope" in msg
    assert "'auto' or a number between 0 and 1" in msg


def test_target_rate_out_of_range(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["routers"]["support-bot"]["thresholds"]["target_false_refusal"] = -0.1

    assert "routers.support-bot.thresholds.target_false_refusal: Input should be greater" in (
        load_variant(tmp_path, edit)
    )


def test_intent_without_examples(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[0]["examples"] = []

    msg = load_variant(tmp_path, edit)
    assert "routers.support-bot.intents[0]: an intent needs 'examples' or an 'examples_file'" in msg


def test_duplicate_intent_names(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[1]["name"] = intents(d)[0]["name"]

    assert "routers.support-bot: duplicate intent names: reset_password" in load_variant(
        tmp_path, edit
    )


def test_unknown_action_lists_allowed_values(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[0]["action"] = "teleport"

    msg = load_variant(tmp_path, edit)
    assert "routers.support-bot.intents[0].action" in msg
    assert "'route', 'respond', 'handoff' or 'clarify'" in msg


def test_action_without_its_block(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[0]["action"] = "route"

    assert "action 'route' needs a 'route' block" in load_variant(tmp_path, edit)


def test_template_placeholder_without_variable(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[0]["respond"]["text"] = "Go to {portal_url}"

    msg = load_variant(tmp_path, edit)
    assert "routers.support-bot.intents[0].respond" in msg
    assert "placeholders without a value in 'variables': portal_url" in msg


def test_unknown_handoff_sink(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[1]["handoff"]["sink"] = "pager"

    assert "routers.support-bot.intents[1].handoff.sink: unknown sink 'pager'" in load_variant(
        tmp_path, edit
    )


def test_clarify_between_unknown_intent(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        intents(d)[-1]["clarify"]["between"] = ["freeze_account", "weather"]

    assert "clarifies between unknown intents: ['weather']" in load_variant(tmp_path, edit)


def test_router_name_clashing_with_model_group(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["routers"]["gpt-sim"] = d["routers"].pop("support-bot")

    assert "routers.gpt-sim: the name is already a model group" in load_variant(tmp_path, edit)


def test_unknown_sink_type(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["handoff_sinks"]["operators-log"] = {"type": "carrier-pigeon"}

    msg = load_variant(tmp_path, edit)
    assert "handoff_sinks.operators-log" in msg
    assert "'log', 'webhook', 'redis_stream'" in msg


def test_bad_embedding_backend(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["embedding"]["backend"] = "tpu"

    assert "embedding.backend: Input should be 'onnx' or 'torch'" in load_variant(tmp_path, edit)
