"""gateway.yaml loading: valid files load, invalid ones name the file, path and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from extensions.config.errors import ConfigError, yaml_path
from extensions.config.loader import load_gateway_config
from extensions.config.schema import GatewayConfig

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


def test_shipped_config_is_valid() -> None:
    config = load_gateway_config(REPO / "config" / "gateway.yaml")
    assert isinstance(config, GatewayConfig)
    assert config.response_headers.enabled is True


def test_minimal_file_gives_defaults(tmp_path: Path) -> None:
    assert load_gateway_config(write(tmp_path, "version: 1\n")) == GatewayConfig(version=1)


@pytest.mark.parametrize("text", ["", "\n", "# all commented out\n", "cache: {enabled: true}\n"])
def test_empty_or_versionless_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="version: required"):
        load_gateway_config(write(tmp_path, text))


def test_unknown_key_names_file_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nresponse_headers:\n  enabld: true\n")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "response_headers.enabld: unknown key" in msg


def test_wrong_type_names_path_and_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nresponse_headers:\n  enabled: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert "response_headers.enabled: Input should be a valid boolean" in str(info.value)
    assert "'maybe'" in str(info.value)


def test_bad_version_lists_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(write(tmp_path, "version: 7\n"))
    assert "version: Input should be 1" in str(info.value)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(write(tmp_path, "version: 1\nresponse_headers: [\n"))
    assert "not valid YAML" in str(info.value)
    assert "line " in str(info.value)


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping, got list"):
        load_gateway_config(write(tmp_path, "- a\n- b\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_gateway_config(tmp_path / "nope.yaml")


def test_yaml_path_rendering() -> None:
    assert yaml_path(("routers", 0, "intents", 2, "name")) == "routers[0].intents[2].name"
    assert yaml_path(()) == "(top level)"


def test_extends_merges_an_overlay_over_its_base(tmp_path: Path) -> None:
    from extensions.config.loader import config_chain, read_gateway_yaml

    (tmp_path / "base.yaml").write_text(
        "cache:\n  ttl_s: 60\n  memory: {max_entries: 10, eviction: lru}\n"
        "access:\n  keys: [{alias: a, owner: o, env: A_KEY}]\n"
    )
    (tmp_path / "prod").mkdir()
    overlay = tmp_path / "prod" / "gateway.yaml"
    overlay.write_text("extends: ../base.yaml\ncache:\n  memory: {eviction: lfu}\n"
                       "access:\n  keys: []\n")  # fmt: skip
    assert config_chain(overlay) == [(tmp_path / "base.yaml").resolve(), overlay]
    data = read_gateway_yaml(overlay)
    assert data["cache"] == {"ttl_s": 60, "memory": {"max_entries": 10, "eviction": "lfu"}}
    assert data["access"] == {"keys": []}, "lists replace, they do not merge"
    assert "extends" not in data


def test_the_production_overlay_is_valid() -> None:
    from extensions.config.loader import litellm_model_groups, load_gateway_config

    repo = Path(__file__).resolve().parents[2] / "config"
    config = load_gateway_config(repo / "gateway.production.yaml",
                                 litellm_model_groups(repo / "litellm.yaml"),
                                 {"GATEWAY_REDIS_URL": "redis://redis:6379/0"})  # fmt: skip
    assert config.redis.url == "redis://redis:6379/0"
    assert (config.cache.tier.value, config.access.limits.store.value) == ("shared", "redis")
    assert config.routers, "the routers of gateway.yaml come along"


def test_extends_cycle_and_bad_value_are_config_errors(tmp_path: Path) -> None:
    from extensions.config.loader import load_gateway_config

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: cycle"):
        load_gateway_config(a, None, {})
    a.write_text("extends: [b.yaml]\n")
    with pytest.raises(ConfigError, match="extends: expected a file path"):
        load_gateway_config(a, None, {})


ROUTER = """version: 1
routers:
  bot:
    description: a test router
    default: {model: gpt-sim}
    out_of_scope: {responses: [sorry]}
    intents:
      - {name: a, description: intent a, examples_file: examples/a.txt, action: route,
         route: {model: gpt-sim}}
      - {name: b, description: intent b, examples: [b one, b two], action: route,
         route: {model: gpt-sim}}
"""


def test_an_overlay_elsewhere_reads_the_base_s_example_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "a.txt").write_text("a one\na two\n")
    (tmp_path / "gateway.yaml").write_text(ROUTER)
    (tmp_path / "bench").mkdir()
    overlay = tmp_path / "bench" / "gateway.yaml"
    overlay.write_text("version: 1\nextends: ../gateway.yaml\n")
    monkeypatch.chdir(tmp_path)
    for given in (overlay, Path("bench/gateway.yaml")):  # absolute, and relative to the cwd
        examples_file = load_gateway_config(given).routers["bot"].intents[0].examples_file
        assert examples_file is not None
        assert (given.parent / examples_file).read_text() == "a one\na two\n"


def test_a_missing_examples_file_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTER)
    with pytest.raises(ConfigError, match=r"routers\.bot\.intents\[0\]\.examples_file: no such"):
        load_gateway_config(path)


def test_a_linked_base_s_example_files_are_read_next_to_the_file_linked_to(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    (shared / "examples").mkdir(parents=True)
    (shared / "examples" / "a.txt").write_text("a one\na two\n")
    (shared / "common.yaml").write_text(ROUTER)
    (shared / "base.yaml").write_text("version: 1\nextends: common.yaml\n")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "base.yaml").symlink_to(shared / "base.yaml")
    top = tmp_path / "cfg" / "gateway.yaml"
    top.write_text("version: 1\nextends: base.yaml\n")
    examples_file = load_gateway_config(top).routers["bot"].intents[0].examples_file
    assert examples_file is not None
    assert (top.parent / examples_file).read_text() == "a one\na two\n"
