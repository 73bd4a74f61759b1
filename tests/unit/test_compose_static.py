"""docker-compose.yml checked statically (no Docker engine here): a load balancer
(deploy/nginx/nginx.conf) in front of two gateway replicas that share Redis, with
Prometheus and Grafana. Its services run the same `gateway` entry points as the tests,
with flags the CLI accepts, configs that validate with the environment compose gives
them, mounted files that exist, pinned images, secrets that must be set, and
healthchecks that every dependency waits for."""

from __future__ import annotations

import inspect
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
import yaml

from extensions.cli import build_parser
from extensions.config.loader import config_chain, litellm_model_groups, load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.launcher import per_worker_state

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
EXPECTED_SERVICES = {"lb", "gateway-1", "gateway-2", "redis", "prometheus", "grafana",
                     "sim-provider"}  # fmt: skip
PROJECT = {  # services run from the project's image (Dockerfile)
    name: svc for name, svc in SERVICES.items() if svc.get("image", "").startswith("model-gateway:")
}
REPLICAS = {name: svc for name, svc in PROJECT.items() if svc["command"][0] == "proxy"}
NGINX_CONF = REPO / "deploy/nginx/nginx.conf"
PROMETHEUS: dict[str, Any] = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
# name:tag, the tag with a digit in it (a version), never a floating tag such as latest
PINNED_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*:(?!latest\b)(?=[\w.-]*\d)[\w][\w.-]*")
SECRET_NAME = re.compile(r"KEY|PASSWORD|TOKEN|SECRET")


def args_of(svc: dict[str, Any]) -> Any:
    return build_parser().parse_args(svc["command"])  # exits (fails the test) on a bad flag


def port_of(svc: dict[str, Any]) -> int:
    return int(args_of(svc).port)


def mounts(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, container path, mode) of each short-syntax volume entry."""
    out = []
    for volume in svc.get("volumes", []):
        assert isinstance(volume, str), f"use the short syntax: {volume}"
        source, container, *mode = volume.split(":")
        out.append((source, container, mode[0] if mode else "rw"))
    return out


def binds(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [m for m in mounts(svc) if m[0].startswith((".", "/"))]


def host_path(svc: dict[str, Any], container_path: Path | str) -> tuple[Path, str]:
    """Where a container path of ``svc`` comes from on this host, and the mount's mode."""
    target = PurePosixPath(container_path)
    for source, container, mode in binds(svc):
        if target == PurePosixPath(container) or PurePosixPath(container) in target.parents:
            return REPO / source / target.relative_to(container), mode
    raise AssertionError(f"{target} is not mounted")


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    assert isinstance(env, dict), "environment: use the mapping form"
    return env


def production_config(svc: dict[str, Any]) -> GatewayConfig:
    """A replica's gateway config, validated as at its start: against its litellm.yaml,
    with the environment compose gives it (GATEWAY_REDIS_URL)."""
    args = args_of(svc)
    gateway_yaml, _ = host_path(svc, args.gateway_config)
    litellm_yaml, _ = host_path(svc, args.config)
    environ = {"GATEWAY_REDIS_URL": env_of(svc)["GATEWAY_REDIS_URL"]}
    return load_gateway_config(gateway_yaml, litellm_model_groups(litellm_yaml), environ)


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", duration).groups()  # type: ignore[union-attr]
    return float(value) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def nginx() -> str:
    """nginx.conf without comments."""
    return re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())


def nginx_upstream() -> tuple[str, str]:
    """(name, body) of the only ``upstream`` block."""
    [(name, body)] = re.findall(r"\bupstream\s+([\w.-]+)\s*\{([^{}]*)\}", nginx())
    return name, body


def directive(text: str, name: str) -> list[str]:
    """The values of every ``name ...;`` in ``text``."""
    return [v.strip() for v in re.findall(rf"(?m)^\s*{name}\s+([^;]*);", text)]


def size_bytes(value: str) -> int:
    """nginx's and redis' sizes: 5m, 2g (1024-based)."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_the_services() -> None:
    assert set(SERVICES) == EXPECTED_SERVICES
    assert set(REPLICAS) == {"gateway-1", "gateway-2"}
    assert set(PROJECT) == {"gateway-1", "gateway-2", "sim-provider"}
    for name in PROJECT:
        assert SERVICES[name]["build"] == ".", name


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    assert PINNED_IMAGE.fullmatch(image), f"{name}: pin a version tag, not {image}"


def test_dockerfile() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for base in re.findall(r"(?m)^FROM\s+(\S+)", dockerfile):
        assert PINNED_IMAGE.fullmatch(base), f"Dockerfile: pin {base}"
    assert 'ENTRYPOINT ["gateway"]' in dockerfile
    assert "scripts/bootstrap.sh" in dockerfile
    user = re.search(r"(?m)^USER\s+(\S+)", dockerfile)
    assert user and user[1] not in {"root", "0"}, "the gateway must not run as root"
    before_user = dockerfile[: user.start()]
    # the request-log folder exists in the image, owned by the gateway user, so the named
    # volume mounted there starts writable for it
    assert re.search(r"mkdir -p [^\n]*/app/logs", before_user)
    assert re.search(rf"chown -R {user[1]} /app\b", before_user)


def test_replicas_share_one_definition() -> None:
    one, two = (dict(REPLICAS[n]) for n in ("gateway-1", "gateway-2"))
    volumes = one.pop("volumes"), two.pop("volumes")
    assert one == two, "gateway-1 and gateway-2 differ: edit the x-gateway anchor"
    assert volumes[0] != volumes[1]


@pytest.mark.parametrize("name", sorted(PROJECT))
def test_commands_are_valid_gateway_cli_calls(name: str) -> None:
    args = args_of(SERVICES[name])
    assert args.command in {"proxy", "sim-provider"}
    assert args.host == "0.0.0.0"
    if args.command == "proxy":
        assert args.workers >= 1
        sim = SERVICES["sim-provider"]
        assert args.sim_url == f"http://sim-provider:{port_of(sim)}"
        assert args.gateway_config.name == "gateway.production.yaml"


@pytest.mark.parametrize("name", sorted(PROJECT))
def test_config_files_come_from_the_read_only_config_folder(name: str) -> None:
    svc = SERVICES[name]
    args = args_of(svc)
    paths = [args.config] + ([args.gateway_config] if args.command == "proxy" else [])
    for path in paths:
        assert PurePosixPath(path).parent == PurePosixPath("/app/config"), path
        host, mode = host_path(svc, path)
        assert mode == "ro", f"{name}: {path} is mounted writable"
        assert host.is_file(), f"{name}: {path} is {host}, which does not exist"
    assert binds(svc) == [("./config", "/app/config", "ro")]


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_production_overlay_validates_with_the_compose_environment(name: str) -> None:
    svc = REPLICAS[name]
    gateway_yaml, _ = host_path(svc, args_of(svc).gateway_config)
    config = production_config(svc)
    redis_url = env_of(svc)["GATEWAY_REDIS_URL"]
    assert config.redis.url == redis_url
    url = urlsplit(redis_url)
    assert url.hostname in SERVICES and SERVICES[url.hostname]["image"].startswith("redis:")
    assert url.port == 6379 and "--port" not in SERVICES[url.hostname]["command"]
    # shared by the replicas, as gateway.production.yaml promises
    assert config.cache.tier == "shared"
    assert config.access.limits.store == "redis"
    assert config.observability.dashboard.store == "redis"
    assert per_worker_state(config) == []  # so several workers per replica would be exact
    # every file the overlay reads (what it extends, router examples) is in the mount
    config_dir, _ = host_path(svc, "/app/config")
    for file in config_chain(gateway_yaml.resolve()):
        assert config_dir.resolve() in file.parents, f"{file} is outside the mounted folder"
    for router in config.routers.values():
        for intent in router.intents:
            if intent.examples_file is not None:
                assert (gateway_yaml.parent / intent.examples_file).is_file()
    # request logs go to a writable volume of this replica's own
    log_dir = str(config.observability.request_log.dir)
    [(volume, mode)] = [(s, m) for s, c, m in mounts(svc) if c == log_dir]
    assert volume in COMPOSE["volumes"] and mode == "rw", f"{name}: {log_dir} not writable"
    others = {s for n, other in REPLICAS.items() if n != name for s, _, _ in mounts(other)}
    assert volume not in others, f"{name}: {volume} shared (requests-<pid>.jsonl would clash)"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_mounts_exist_and_config_is_read_only(name: str) -> None:
    for source, container, mode in mounts(SERVICES[name]):
        if source.startswith((".", "/")):
            assert (REPO / source).exists(), f"{name}: {source} does not exist"
            assert mode == "ro", f"{name}: {source} must be mounted read-only"
        else:
            assert source in COMPOSE["volumes"], f"{name}: volume {source} is not declared"
            assert mode == "rw", f"{name}: {container} holds data, it must be writable"


def test_every_declared_volume_is_used() -> None:
    used = {source for svc in SERVICES.values() for source, _, _ in mounts(svc)}
    assert set(COMPOSE["volumes"]) <= used


def test_load_balancer() -> None:
    lb = SERVICES["lb"]
    assert lb["image"].startswith("nginx:")
    conf, mode = host_path(lb, "/etc/nginx/nginx.conf")
    assert conf == REPO / "deploy/nginx/nginx.conf" and mode == "ro"
    assert lb["ports"] == ["4000:80"]
    text = nginx()
    name, upstream = nginx_upstream()
    servers = [v.split()[0] for v in directive(upstream, "server")]
    assert sorted(servers) == sorted(f"{n}:{port_of(svc)}" for n, svc in REPLICAS.items())
    assert directive(text, "listen") == ["80"]  # the container side of "4000:80"
    assert f"proxy_pass http://{name};" in text
    # only the load balancer is published
    for other, svc in SERVICES.items():
        if other not in {"lb", "prometheus", "grafana"}:
            assert "ports" not in svc, f"{other} must not publish a port"


def test_load_balancer_retries_and_streams() -> None:
    text = nginx()
    [next_upstream] = directive(text, "proxy_next_upstream")
    conditions = set(next_upstream.split())
    assert {"error", "timeout", "http_502", "http_503"} <= conditions
    assert "non_idempotent" not in conditions  # a sent POST is never run (and charged) twice
    assert directive(text, "proxy_next_upstream_tries") == ["2"]
    assert directive(text, "proxy_request_buffering") in ([], ["on"])  # retries need the body
    assert directive(text, "proxy_buffering") == ["off"]  # SSE chunks pass at once
    assert seconds(directive(text, "proxy_read_timeout")[0]) >= 120
    assert directive(text, "proxy_http_version") == ["1.1"]
    assert 'Connection ""' in directive(text, "proxy_set_header")
    headers = {h.split()[0] for h in directive(text, "proxy_set_header")}
    assert {"Authorization", "X-Forwarded-For"} <= headers
    _, upstream = nginx_upstream()
    for server in directive(upstream, "server"):
        # marking a replica down for fail_timeout makes a rolling restart fail: see nginx.conf
        assert re.search(r"\bmax_fails=0\b", server), server
    assert directive(upstream, "keepalive")
    # below uvicorn's idle keep-alive, so nginx never reuses a connection being closed
    uvicorn_keep_alive = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"]
    assert seconds(directive(upstream, "keepalive_timeout")[0]) < uvicorn_keep_alive.default
    # bodies the gateway refuses reach it, so clients get its own 413
    [body] = directive(text, "client_max_body_size")
    for replica in REPLICAS.values():
        assert size_bytes(body) > production_config(replica).requests.max_body_bytes


def test_load_balancer_healthcheck_is_served_by_nginx() -> None:
    test = SERVICES["lb"]["healthcheck"]["test"]
    url = urlsplit(test[-1])
    assert test[0] == "CMD" and url.hostname == "127.0.0.1" and url.port in (None, 80)
    location = re.search(rf"location\s*=\s*{re.escape(url.path)}\s*\{{([^}}]*)\}}", nginx())
    assert location, f"nginx.conf has no location = {url.path}"
    assert re.search(r"\breturn\s+200\b", location[1])


def test_prometheus_scrapes_every_replica() -> None:
    [job] = PROMETHEUS["scrape_configs"]
    [static] = job["static_configs"]
    assert sorted(static["targets"]) == sorted(f"{n}:{port_of(s)}" for n, s in REPLICAS.items())


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_healthchecks_and_dependencies(name: str) -> None:
    svc = SERVICES[name]
    assert svc["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, f"{name}: no healthcheck"
    assert svc["restart"] == "unless-stopped"
    deps = svc.get("depends_on", {})
    assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
    for dep, spec in deps.items():
        assert dep in SERVICES, f"{name}: depends on unknown {dep}"
        assert spec["condition"] == "service_healthy", f"{name} -> {dep}"
        # only a dependency that is in an optional profile may be missing
        assert spec.get("required", True) or "profiles" in SERVICES[dep], f"{name} -> {dep}"
    expected = {
        "lb": set(REPLICAS),
        "gateway-1": {"redis", "sim-provider"},
        "gateway-2": {"redis", "sim-provider"},
        "prometheus": set(REPLICAS),
        "grafana": set(REPLICAS) | {"prometheus"},
    }
    assert set(deps) == expected.get(name, set())


@pytest.mark.parametrize("name", sorted(PROJECT))
def test_project_healthchecks_probe_the_service_port(name: str) -> None:
    svc = SERVICES[name]
    probe = " ".join(svc["healthcheck"]["test"])
    path = "/gateway/health/ready" if name in REPLICAS else "/_sim/health"
    assert f"http://127.0.0.1:{port_of(svc)}{path}" in probe


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_replicas_drain_before_they_are_killed(name: str) -> None:
    svc = REPLICAS[name]
    drain = float(env_of(svc)["GRACEFUL_SHUTDOWN_TIMEOUT"])
    assert drain < seconds(svc["stop_grace_period"])
    assert svc["init"] is True  # SIGTERM reaches the server, workers are reaped


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_secrets_come_from_the_environment(name: str) -> None:
    for key, value in env_of(SERVICES[name]).items():
        if SECRET_NAME.search(key):
            assert re.fullmatch(r"\$\{\w+(:?[-?][^}]*)?\}", str(value)), (
                f"{name}: {key} must come from the environment"
            )
        assert "sk-" not in str(value), f"{name}: {key} holds a literal key"
        if "://" in str(value):
            assert urlsplit(str(value)).password is None, f"{name}: {key} holds a password"
    required = {"LITELLM_MASTER_KEY": "LITELLM_MASTER_KEY",
                "GF_SECURITY_ADMIN_PASSWORD": "GRAFANA_ADMIN_PASSWORD"}  # fmt: skip
    for key, var in required.items():
        if key in env_of(SERVICES[name]):
            value = env_of(SERVICES[name])[key]
            assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", value), f"{name}: {key} must be set"
    if name in REPLICAS:
        assert "LITELLM_MASTER_KEY" in env_of(SERVICES[name])
    if name == "grafana":
        assert "GF_SECURITY_ADMIN_PASSWORD" in env_of(SERVICES[name])


def test_redis() -> None:
    redis = SERVICES["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes"
    assert flags["--appendfsync"] == "everysec"
    assert flags["--save"] == ""  # no RDB snapshots besides the append-only file
    assert size_bytes(flags["--maxmemory"].removesuffix("b")) >= 1024**3
    # every key has a TTL: evict cold ones, never refuse writes (which noeviction would)
    assert flags["--maxmemory-policy"] == "volatile-lru"
    assert ("redis-data", "/data", "rw") in mounts(redis)
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
