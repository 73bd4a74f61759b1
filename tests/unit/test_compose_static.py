"""docker-compose.yml checked statically (no Docker engine here): its services run
the same `gateway` entry points as the tests, with flags the CLI accepts, mounted
files that exist, secrets that must be set, and healthchecks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from extensions.cli import build_parser

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
GATEWAY_SERVICES = {
    name: svc
    for name, svc in COMPOSE["services"].items()
    if svc.get("image", "").startswith("model-gateway")
}


def test_gateway_services_use_the_project_image() -> None:
    assert {"gateway", "sim-provider"} <= set(GATEWAY_SERVICES)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gateway"]' in dockerfile
    assert "scripts/bootstrap.sh" in dockerfile


@pytest.mark.parametrize("name", sorted(GATEWAY_SERVICES))
def test_commands_are_valid_gateway_cli_calls(name: str) -> None:
    command = GATEWAY_SERVICES[name]["command"]
    args = build_parser().parse_args(command)  # exits (fails the test) on a bad flag
    assert args.command in {"proxy", "sim-provider"}
    assert args.host == "0.0.0.0"


@pytest.mark.parametrize("name", sorted(GATEWAY_SERVICES))
def test_mounted_files_exist_and_are_read_only(name: str) -> None:
    for volume in GATEWAY_SERVICES[name].get("volumes", []):
        host, container, mode = volume.split(":")
        assert (REPO / host).exists(), f"{name}: {host} does not exist"
        assert container.startswith("/app/config/")
        assert mode == "ro"


def test_command_config_paths_are_mounted() -> None:
    for name, svc in GATEWAY_SERVICES.items():
        mounted = {v.split(":")[1] for v in svc.get("volumes", [])}
        cmd = svc["command"]
        for flag in ("--config", "--gateway-config"):
            if flag in cmd:
                assert cmd[cmd.index(flag) + 1] in mounted, f"{name}: {flag} not mounted"


def test_secrets_must_be_set_and_are_not_literal() -> None:
    env = COMPOSE["services"]["gateway"]["environment"]
    assert re.fullmatch(r"\$\{LITELLM_MASTER_KEY:\?[^}]+\}", env["LITELLM_MASTER_KEY"])
    for key, value in env.items():
        assert str(value).startswith("${"), f"{key} must come from the environment"


def test_healthchecks_and_dependencies() -> None:
    for name, svc in GATEWAY_SERVICES.items():
        assert "healthcheck" in svc, name
    deps = COMPOSE["services"]["gateway"]["depends_on"]
    assert all(d["condition"] == "service_healthy" for d in deps.values())
    assert COMPOSE["services"]["gateway"]["ports"] == ["4000:4000"]
