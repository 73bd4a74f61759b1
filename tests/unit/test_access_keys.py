"""Gateway keys and teams: verification, effective grants, and config errors with YAML paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from extensions.access.grants import effective
from extensions.access.keys import KeyVerifier, Role, new_key
from extensions.access.settings import Access, Key, Team
from extensions.config.errors import ConfigError
from extensions.config.loader import load_gateway_config

pytestmark = pytest.mark.unit


def test_hashed_env_and_master_keys_verify() -> None:
    made = new_key()
    access = Access(
        teams={"support": Team(models=["support-bot"])},
        keys=[Key(alias="app", owner="alice", team="support", key_id=made.key_id, hash=made.hash),
              Key(alias="batch", owner="bob", env="BATCH_KEY")],
    )  # fmt: skip
    verifier, problems = KeyVerifier.build("sk-master", access, {"BATCH_KEY": "sk-batch-1"})
    assert problems == []
    app = verifier.verify(made.key)
    assert app is not None and (app.alias, app.role, app.team) == ("app", Role.APP, "support")
    batch = verifier.verify("sk-batch-1")
    assert batch is not None and batch.alias == "batch" and batch.team is None
    master = verifier.verify("sk-master")
    assert master is not None and master.role is Role.OPERATOR
    assert verifier.verify(made.key[:-1] + ("A" if made.key[-1] != "A" else "B")) is None
    assert verifier.verify("sk-gw-00000000.nope") is None
    assert verifier.verify("") is None
    assert made.key not in made.hash


def test_env_key_problems() -> None:
    access = Access(keys=[Key(alias="a", owner="o", env="MISSING_KEY"),
                          Key(alias="b", owner="o", env="SAME_AS_MASTER")])  # fmt: skip
    _, problems = KeyVerifier.build("sk-m", access, {"SAME_AS_MASTER": "sk-m"})
    assert problems == [
        "access.keys[0].env: environment variable MISSING_KEY is not set",
        "access.keys[1].env: SAME_AS_MASTER holds the master key",
    ]


def test_key_settings_override_team_settings() -> None:
    team = Team(models=["gpt-*"])
    grant = effective(Key(alias="a", owner="o", team="t", env="K"), team)
    assert grant.allows("gpt-sim-mini") and not grant.allows("claude-sim")
    own = effective(Key(alias="a", owner="o", team="t", env="K", models=["claude-sim"]), team)
    assert own.allows("claude-sim") and not own.allows("gpt-sim")
    assert effective(Key(alias="b", owner="o", env="K"), None).allows("anything")


def write(tmp_path: Path, access_yaml: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text("version: 1\naccess:\n" + access_yaml)
    return path


@pytest.mark.parametrize(
    ("access_yaml", "message"),
    [
        ("  keys:\n    - {alias: a, owner: o, team: nope, env: K}\n",
         "access: keys[0].team: unknown team 'nope' (teams: none)"),
        ("  keys:\n    - {alias: a, owner: o, key_id: 0123abcd, hash: 'md5:xyz'}\n",
         "access.keys[0].hash: must look like 'sha256:<32 hex salt>:<64 hex digest>'"),
        ("  keys:\n    - {alias: a, owner: o}\n",
         "access.keys[0]: give exactly one of 'hash' (with 'key_id') or 'env'"),
        ("  keys:\n    - {alias: master, owner: o, env: K}\n",
         "the key alias 'master' is reserved"),
        ("  teams:\n    t: {weekly_budget_usd: 10}\n",
         "access.teams.t.weekly_budget_usd: unknown key"),
    ],
)  # fmt: skip
def test_bad_access_entries_name_the_path(tmp_path: Path, access_yaml: str, message: str) -> None:
    path = write(tmp_path, access_yaml)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path, environ={})
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_model_pattern_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "  teams:\n    t: {models: [gpt-sim, clade-*]}\n")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path, {"gpt-sim", "claude-sim"}, environ={})
    assert "access.teams.t.models: 'clade-*' matches no model group or router" in str(info.value)
